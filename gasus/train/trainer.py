"""The trainer and a run: TRL's SFTTrainer with Alpaca's settings and completion-only loss, and
`train`, which checks, loads, trains, saves and writes the manifest.

torch, transformers, trl, datasets and peft are imported inside the functions that use them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__, distributed
from ..distributed import world_size
from ..errors import BadInputError, GasusError, MissingDependencyError
from ..io import write_json
from ..records import Example
from .base import _first_line, _gguf_sha256, load_base, resolve_base
from .config import (
    BatchPlan,
    TrainConfig,
    detect_hardware,
    plan_batches,
    resolve_precision,
    resolve_save_dtype,
)
from .data import check_prompt_lengths, data_fingerprint, training_features
from .outputs import (
    CHECKPOINTS,
    MANIFEST,
    _claim_output_dir,
    _save_model,
    cast_saved_weights,
    check_output_dir,
)

logger = logging.getLogger(__package__)  # "gasus.train": the name that logging settings for training use

# Libraries whose versions change what training does; recorded in the manifest.
_LIBRARIES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "safetensors", "gguf", "tokenizers")


@dataclass
class TrainResult:
    """What a run produced: the manifest written beside the model, and where."""

    output_dir: Path
    manifest: dict[str, Any]
    is_main_process: bool = True

    @property
    def losses(self) -> list[float]:
        return [entry["loss"] for entry in self.manifest["train"]["loss_history"]]


Progress = Callable[[int, int, "float | None"], None]


def _import_training_stack():
    try:
        import datasets  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "trl", "Training", "trl transformers datasets") from None


def build_trainer(examples: Sequence[Example], config: TrainConfig, model: Any, tokenizer: Any,
                  output_dir: str | Path, *, plan: BatchPlan | None = None, bf16: bool = False,
                  tf32: bool = False, callbacks: Sequence[Any] = ()) -> Any:
    """TRL's SFTTrainer for these examples, with Alpaca's settings and completion-only loss.

    Its `train_dataset` is the tokenized data as trained on (`training_features`): `input_ids`
    and `labels`, with -100 on every prompt token.
    """
    _import_training_stack()
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise BadInputError("the training data has no examples")
    plan = plan or plan_batches(config, world_size())
    peft_config = None
    if config.lora:
        try:
            from peft import LoraConfig
        except ImportError:
            raise MissingDependencyError("peft", "--lora", "'gasus[lora]'") from None
        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(Path(output_dir) / CHECKPOINTS),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=plan.micro_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        weight_decay=config.weight_decay,
        # From transformers 5.0 (the declared floor) a float below 1 is a ratio of the total steps;
        # 4.x read it as a step count, 0.03 of a step: no warmup at all.
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler,
        seed=config.seed,
        bf16=bf16,
        fp16=False,
        tf32=tf32 if _cuda_available() else None,  # explicit on GPUs: fp32 means no tf32 either
        use_cpu=not _cuda_available(),
        activation_checkpointing=config.activation_checkpointing,
        max_length=config.max_length,
        packing=config.packing,
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=_cuda_available(),
        # Every trainable weight takes part in each forward pass: DDP need not search for unused ones.
        ddp_find_unused_parameters=False,
    )
    if args.world_size != plan.world_size:  # the global batch must come out as asked
        raise GasusError(f"the trainer sees {args.world_size} processes, but WORLD_SIZE says {plan.world_size}")
    dataset = Dataset.from_list(training_features(examples, tokenizer))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)  # it prints every log line; gasus shows its own progress
    return trainer


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _make_callback(progress: Progress | None, clock: dict[str, float]):
    from transformers import TrainerCallback

    class _GasusCallback(TrainerCallback):
        """Reports steps and losses, and times the training loop for tokens per second."""

        def on_train_begin(self, args, state, control, **kwargs):
            clock["start"] = time.perf_counter()
            clock["tokens_start"] = state.num_input_tokens_seen
            clock["step_start"] = state.global_step
            if progress is not None and state.is_world_process_zero:
                progress(state.global_step, state.max_steps, None)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress is not None and state.is_world_process_zero and logs and "loss" in logs:
                progress(state.global_step, state.max_steps, float(logs["loss"]))

        def on_train_end(self, args, state, control, **kwargs):
            clock["end"] = time.perf_counter()
            clock["tokens_end"] = state.num_input_tokens_seen

    return _GasusCallback()


def library_versions() -> dict[str, str | None]:
    from ..manifest import library_versions as versions

    return versions(_LIBRARIES)


def train(examples: Sequence[Example], config: TrainConfig, output_dir: str | Path, *,
          base: str | None = None, data_source: str | Path | None = None, resume: bool = False,
          replace: bool = False, progress: Progress | None = None, notify: Callable[[str], None] | None = None,
          announce: Callable[[str], None] | None = None, status: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune `base` on the examples and write model, tokenizer and manifest.json to output_dir.

    The model and tokenizer are saved as safetensors (LoRA adapters merged in), loadable with
    `AutoModelForCausalLM.from_pretrained(output_dir)`. The manifest is written last and
    atomically: a directory with a manifest holds a finished run. `replace` lets a directory an
    earlier `train` made be deleted, after every check before loading the model has passed.

    Under torchrun (or `accelerate launch` on GPUs) every process runs this: rank 0 alone claims
    the directory, saves the model and writes the manifest, and passes the notes to `notify` (without
    one, they are logged as warnings of the "gasus.train" logger) and what it is doing before the first
    step (converting, loading, tokenizing) to `status`; each process passes one line saying which rank
    it is to `announce`.
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not examples:
        raise BadInputError("the training data has no examples")
    _import_training_stack()

    plan = plan_batches(config, world_size())
    hardware = detect_hardware()
    bf16, tf32, notes = resolve_precision(config, hardware)
    if distributed.lone_accelerate_cpu_process():
        notes.append("accelerate launch started one CPU process: it starts several only through MPI; for N "
                     "processes on CPUs use torchrun --standalone --nproc_per_node N -m gasus train ...")
    base_model = resolve_base(base)
    check_output_dir(output_dir, resume, replace)  # before the slow loading; claimed below
    is_main = distributed.is_main_process()
    # One way out for each note: with no handler configured, a logged warning reaches stderr too.
    for note in notes:
        if notify is None:
            logger.warning(note)
        elif is_main:
            notify(note)

    def say(text: str) -> None:
        if status is not None and is_main:
            status(text)

    if base_model.kind == "gguf":
        say(f"reading {Path(base_model.location).name}")
        base_model = dataclasses.replace(base_model, sha256=_gguf_sha256(base_model.location))
    model, tokenizer, loaded_from = load_base(base_model, status=say)
    say(f"tokenizing {len(examples)} examples")
    lengths = check_prompt_lengths(examples, tokenizer, config.max_length)
    resume_from = _claim_output_dir(output_dir, resume, replace)

    clock: dict[str, float] = {}
    trainer = build_trainer(examples, config, model, tokenizer, output_dir, plan=plan, bf16=bf16, tf32=tf32,
                            callbacks=[_make_callback(progress, clock)])
    backend = distributed.backend()
    if plan.world_size > 1:
        line = (f"rank {distributed.process_rank()} of {plan.world_size} ({backend}, {trainer.args.device.type}): "
                f"per-device batch {plan.micro_batch_size} x accumulation {plan.gradient_accumulation_steps} x "
                f"{plan.world_size} processes = global batch {plan.global_batch_size}")
        logger.info(line)
        if announce is not None:
            announce(line)
    data_tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    cut = 0 if config.packing else sum(1 for ids in trainer.train_dataset["input_ids"]
                                       if len(ids) >= config.max_length)
    if cut:
        notes.append(f"{cut} of {len(examples)} examples were cut at the max length of {config.max_length} tokens")
    say("starting the first step" if resume_from is None else f"resuming from {Path(resume_from).name}")

    try:
        output = trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        raise
    except (RuntimeError, ValueError) as exc:
        if "out of memory" in str(exc).lower():
            raise GasusError(f"training ran out of memory: lower the per-device batch size or --max-length "
                             f"({_first_line(exc)})") from None
        raise

    out = Path(output_dir)
    saved_dtype = resolve_save_dtype(config, bf16)
    _save_model(trainer, config, tokenizer, out)
    if is_main:
        cast_saved_weights(out, saved_dtype)
    elapsed = clock.get("end", time.perf_counter()) - clock.get("start", started)
    tokens = int(clock.get("tokens_end", 0) - clock.get("tokens_start", 0))
    history = [{"step": entry["step"], "loss": entry["loss"], "learning_rate": entry.get("learning_rate")}
               for entry in trainer.state.log_history if "loss" in entry]
    manifest = {
        "gasus": __version__,
        "command": "train",
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {**data_fingerprint(examples, data_source), "tokens_per_epoch": data_tokens,
                 "prompt_tokens": lengths["prompt_tokens"], "longest_prompt_tokens": lengths["longest_prompt_tokens"],
                 "template": "alpaca", "loss_on": "response tokens and EOS"},
        "base": {**base_model.to_dict(), "loaded_from": loaded_from, "model_class": type(model).__name__},
        "settings": config.to_dict(),
        "run": {"world_size": plan.world_size, "distributed_backend": backend, "per_device_batch_size": plan.micro_batch_size,
                "gradient_accumulation_steps": plan.gradient_accumulation_steps,
                "global_batch_size": plan.global_batch_size, "bf16": bf16, "tf32": tf32,
                "precision": "bf16" if bf16 else "fp32", "saved_dtype": saved_dtype, "hardware": hardware,
                "resumed_from": Path(resume_from).name if resume_from else None},
        "libraries": library_versions(),
        "train": {
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "train_loss": output.training_loss,
            "loss_history": history,
            "tokens": tokens,
            "train_seconds": round(elapsed, 3),
            "tokens_per_second": round(tokens / elapsed, 2) if elapsed > 0 else None,
            "wall_seconds": round(time.perf_counter() - started, 3),
        },
        "notes": notes,
    }
    if is_main:
        write_json(out / MANIFEST, manifest)
    return TrainResult(out, manifest, is_main)
