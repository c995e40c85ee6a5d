"""Fine-tuning on the kept examples: Stanford Alpaca's recipe on TRL's SFTTrainer.

Each example becomes a prompt-completion pair: the prompt is Stanford Alpaca's template
(`prompts.alpaca_prompt`, the exact text `gasus generate` sends), the completion is the
response followed by EOS, and the loss covers the completion tokens only. The presets hold
the paper's settings (Alpaca's: 3 epochs at lr 2e-5 for 7B, 5 at 1e-5 for 13B, global batch
128, max length 512, no weight decay, 3% warmup, cosine, bf16); the same code runs a tiny
model on a laptop CPU and, under `accelerate launch` with `configs/fsdp.yaml`, many GPUs.

torch, transformers, trl, datasets and peft are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__, distributed
from .distributed import world_size
from .errors import BadInputError, GasusError, MissingDependencyError
from .io import atomic_write, current_umask, sha256_file, write_json
from .prompts import alpaca_prompt
from .records import Example, canonical_json, sha256_text

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Left in an output directory the moment training claims it: only a directory holding it may be replaced.
OWNER_MARKER = ".gasus-train"
CHECKPOINTS = "checkpoints"
CONFIGS_DIR = Path(__file__).with_name("configs")

PRECISIONS = ("auto", "bf16", "fp32")
SAVE_DTYPES = ("auto", "bf16", "fp32")
_TORCH_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
LR_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")

# The paper trains with Stanford Alpaca's settings (DESIGN.md, "Training").
PRESETS: dict[str, dict[str, Any]] = {
    "alpagasus-7b": {
        "epochs": 3.0, "learning_rate": 2e-5, "batch_size": 128, "max_length": 512,
        "weight_decay": 0.0, "warmup_ratio": 0.03, "lr_scheduler": "cosine", "precision": "bf16",
    },
    "alpagasus-13b": {
        "epochs": 5.0, "learning_rate": 1e-5, "batch_size": 128, "max_length": 512,
        "weight_decay": 0.0, "warmup_ratio": 0.03, "lr_scheduler": "cosine", "precision": "bf16",
    },
    # A few short steps that finish in seconds on a CPU: checks the whole path, learns little.
    "cpu-smoke": {
        "epochs": 1.0, "learning_rate": 1e-4, "batch_size": 4, "max_length": 128, "max_steps": 4,
        "weight_decay": 0.0, "warmup_ratio": 0.0, "lr_scheduler": "cosine", "precision": "auto",
    },
}

# Libraries whose versions change what training does; recorded in the manifest.
_LIBRARIES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "safetensors", "gguf", "tokenizers")


@dataclass
class TrainConfig:
    """Every setting of a training run. Build one with `TrainConfig.from_preset(name, **overrides)`."""

    preset: str = field(default="alpagasus-7b", metadata={"help": f"Named settings: {', '.join(PRESETS)}."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the training data."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate of AdamW."})
    batch_size: int = field(default=128, metadata={
        "help": "Global batch: examples per optimizer step, = per-device batch x gradient accumulation x devices."})
    micro_batch_size: int | None = field(default=None, metadata={
        "help": "Examples per device per forward pass; default: the largest of 4, 2, 1 that divides the per-device share."})
    max_length: int = field(default=512, metadata={"help": "Tokens per training sequence (prompt + response + EOS); longer ones are cut."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps (overrides epochs)."})
    seed: int = field(default=42, metadata={"help": "Seed for weight init of adapters, data order and dropout."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.03, metadata={"help": "Fraction of the steps spent warming the learning rate up linearly."})
    lr_scheduler: str = field(default="cosine", metadata={"help": f"Learning-rate schedule after warmup: {', '.join(LR_SCHEDULERS)}."})
    precision: str = field(default="bf16", metadata={
        "help": "bf16 (mixed precision, plus tf32 matmuls, on GPUs that have them), fp32, or auto (bf16 where available)."})
    save_dtype: str = field(default="auto", metadata={
        "help": "Precision of the saved weights: auto (the one it trained in: bf16 after a bf16 run), bf16 or fp32."})
    fp32_fallback: bool = field(default=True, metadata={
        "help": "When bf16 is asked for and there is no bf16 GPU, train in fp32 and say so; false makes it an error."})
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of every weight; merged into the saved model."})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    packing: bool = field(default=False, metadata={
        "help": "Pack several examples into each max-length row, no padding; position ids keep them apart."})
    activation_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass: less memory, about 20% slower."})
    save_steps: int = field(default=500, metadata={"help": "Write a resumable checkpoint every this many steps."})
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep the checkpoints after a run that finished."})

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset '{self.preset}': choose one of {', '.join(PRESETS)}")
        if not self.epochs > 0:
            raise ValueError(f"epochs must be above 0, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ValueError(f"the learning rate must be above 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.micro_batch_size is not None:
            if self.micro_batch_size < 1:
                raise ValueError(f"the per-device batch size must be at least 1, got {self.micro_batch_size}")
            if self.batch_size % self.micro_batch_size:
                raise ValueError(f"the batch size {self.batch_size} is not a multiple of the per-device "
                                 f"batch size {self.micro_batch_size}")
        if self.max_length < 8:
            raise ValueError(f"the max length must be at least 8 tokens, got {self.max_length}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max steps must be at least 1, got {self.max_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be 0 or more, got {self.weight_decay}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"the warmup ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"unknown learning-rate schedule '{self.lr_scheduler}': choose one of {', '.join(LR_SCHEDULERS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{self.precision}': choose one of {', '.join(PRECISIONS)}")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"unknown save dtype '{self.save_dtype}': choose one of {', '.join(SAVE_DTYPES)}")
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ValueError(f"LoRA rank and alpha must be at least 1, got {self.lora_rank} and {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.lora_dropout}")
        if self.save_steps < 1:
            raise ValueError(f"save steps must be at least 1, got {self.save_steps}")

    @classmethod
    def from_preset(cls, name: str = "alpagasus-7b", **overrides: Any) -> TrainConfig:
        """A preset's settings with the given overrides; overrides that are None are ignored."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        settings = {"max_steps": None, **PRESETS[name]}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=name, **settings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fsdp_config_path() -> Path:
    """The accelerate config shipped with gasus: FSDP full_shard, auto-wrap of LlamaDecoderLayer, bf16."""
    return CONFIGS_DIR / "fsdp.yaml"


# ---------------------------------------------------------------- batch plan and hardware


@dataclass(frozen=True)
class BatchPlan:
    """How the global batch splits over devices and gradient accumulation."""

    world_size: int
    micro_batch_size: int
    gradient_accumulation_steps: int

    @property
    def global_batch_size(self) -> int:
        return self.world_size * self.micro_batch_size * self.gradient_accumulation_steps


def plan_batches(config: TrainConfig, world_size: int = 1) -> BatchPlan:
    """Per-device batch x accumulation x devices = the global batch, exactly (Alpaca: 4 x 8 x 4 = 128)."""
    if config.batch_size % world_size:
        raise BadInputError(f"the global batch size {config.batch_size} does not divide by {world_size} processes: "
                            f"use a multiple of {world_size} for --batch-size")
    per_device = config.batch_size // world_size
    micro = config.micro_batch_size or next(m for m in (4, 2, 1) if per_device % m == 0)
    if per_device % micro:
        raise BadInputError(f"the global batch size {config.batch_size} does not divide by {world_size} processes "
                            f"x per-device batch size {micro} = {world_size * micro}: use a multiple of "
                            f"{world_size * micro} for --batch-size")
    return BatchPlan(world_size, micro, per_device // micro)


def detect_hardware() -> dict[str, Any]:
    """The accelerator this process trains on, and whether it has bf16 and tf32."""
    import torch

    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        return {"device": "cuda", "name": torch.cuda.get_device_name(), "count": torch.cuda.device_count(),
                "bf16": bool(torch.cuda.is_bf16_supported()), "tf32": major >= 8}
    return {"device": "cpu", "name": platform.processor() or platform.machine(), "count": os.cpu_count() or 1,
            "bf16": False, "tf32": False}


def resolve_precision(config: TrainConfig, hardware: dict[str, Any]) -> tuple[bool, bool, list[str]]:
    """(bf16, tf32, notes): bf16 and tf32 where the hardware has them, fp32 elsewhere.

    A bf16 preset on a machine without a bf16 GPU falls back to fp32 with a note, or, with
    `fp32_fallback` off, is an error: the paper's runs are bf16.
    """
    notes: list[str] = []
    if config.precision == "fp32":
        return False, False, notes
    if hardware["bf16"]:
        return True, bool(hardware["tf32"]), notes
    if config.precision == "bf16":
        what = f"the {config.preset} preset" if PRESETS[config.preset].get("precision") == "bf16" else "--precision bf16"
        found = f"found {hardware['name']}" if hardware["device"] == "cuda" else "found no GPU"
        if not config.fp32_fallback:
            raise BadInputError(f"{what} trains in bf16, which needs a GPU with bf16 ({found}); "
                                "train on a GPU that has it, or use --precision fp32")
        notes.append(f"{what} trains in bf16, which needs a GPU with bf16 ({found}): training in fp32 instead")
    return False, False, notes


# ---------------------------------------------------------------- the base model


@dataclass(frozen=True)
class BaseModel:
    """Where the weights to fine-tune come from: a GGUF file, a local directory or a hub id."""

    spec: str
    kind: str  # "gguf" | "dir" | "hub"
    location: str  # the GGUF file, the directory, or the hub id
    sha256: str | None = None  # of the GGUF file's bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_base(spec: str | None) -> BaseModel:
    """The base model a `--base` value names: None for the embedded SmolLM2-135M-Instruct GGUF,
    a `.gguf` path (optionally `llamacpp:`), a directory with config.json, or a hub id
    (optionally `hf:`). Nothing is loaded here."""
    if spec is None or spec in ("", "default", "embedded"):
        from .backends import embedded_model_path

        path = embedded_model_path()
        return BaseModel("embedded", "gguf", str(path))
    target = spec
    for prefix in ("hf:", "llamacpp:"):
        if target.startswith(prefix):
            target = target[len(prefix):]
            break
    path = Path(target).expanduser()
    if target.lower().endswith(".gguf"):
        if not path.is_file():
            raise BadInputError(f"base model {spec}: no such GGUF file")
        return BaseModel(spec, "gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BadInputError(f"base model {spec}: the directory has no config.json (not a transformers model)")
        return BaseModel(spec, "dir", str(path))
    if path.exists():
        raise BadInputError(f"base model {spec}: not a .gguf file or a model directory")
    if target.startswith((".", "/", "~")) or target.count("/") > 1 or not target:
        raise BadInputError(f"base model {spec}: no such file or directory")
    return BaseModel(spec, "hub", target)


def _gguf_sha256(path: str | Path) -> str:
    from .backends.base import file_sha256

    return file_sha256(path)


def converted_gguf_dir(gguf: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A GGUF dequantized to a safetensors model directory (with its tokenizer), memoised in the
    gasus cache dir under the GGUF's sha256, so the slow conversion happens once per file."""
    from .cache import MODELS, prepare_cache_dir

    target = prepare_cache_dir(cache_dir) / MODELS / f"gguf-{_gguf_sha256(gguf)}"
    if (target / "config.json").is_file():
        return target
    with distributed.main_process_first():  # one GGUF conversion, not one per process
        if not (target / "config.json").is_file():
            convert_gguf(gguf, target)
    return target


def convert_gguf(gguf: str | Path, target: str | Path) -> Path:
    """Dequantize a GGUF file with transformers and save model + tokenizer as safetensors in
    `target`, which appears whole or not at all."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, target = Path(gguf), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        try:
            with _quiet_gguf_reader():
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                             dtype=torch.float32)
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "gguf", "Loading a GGUF base model") from None
        except (ValueError, OSError, KeyError, RuntimeError) as exc:
            raise BadInputError(f"{gguf}: transformers cannot load this GGUF as a trainable model: "
                                f"{_first_line(exc)}") from None
        # The loaded model still carries the GGUF quantizer and its config entry; without them the
        # safetensors copy loads and trains like any other model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _quiet_gguf_reader() -> Iterator[None]:
    """Silence transformers' GGUF tensor bar: it is a plain tqdm that neither its logging
    settings nor disable_progress_bar() reach, and in a log it prints line after line."""
    import functools
    from unittest import mock

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    with mock.patch.object(gguf_utils, "tqdm", functools.partial(bar, disable=True)):
        yield


def load_base(base: BaseModel) -> tuple[Any, Any, str]:
    """(model in fp32, tokenizer, the path or id loaded) for a resolved base model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = str(converted_gguf_dir(base.location)) if base.kind == "gguf" else base.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    except OSError as exc:
        if base.kind == "hub":
            raise BadInputError(f"base model {base.spec}: cannot be found: not a local file or directory, and "
                                f"not loadable from the Hugging Face hub (offline, gated, or no such model?): "
                                f"{_first_line(exc)}") from None
        raise BadInputError(f"base model {base.spec}: cannot load: {_first_line(exc)}") from None
    except ValueError as exc:
        raise BadInputError(f"base model {base.spec}: not a causal language model transformers can "
                            f"train: {_first_line(exc)}") from None
    return model, tokenizer, location


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- the data


def training_rows(examples: Sequence[Example]) -> list[dict[str, str]]:
    """Prompt-completion rows: Alpaca's prompt, and the response the loss is taken on.

    As in Stanford Alpaca, the response follows "### Response:" directly; TRL appends EOS.

    >>> training_rows([Example(0, "Say hi.", "", "Hi.")])[0]["completion"]
    'Hi.'
    """
    return [{"prompt": alpaca_prompt(e.instruction, e.input), "completion": e.output} for e in examples]


def training_features(examples: Sequence[Example], tokenizer: Any) -> list[dict[str, list[int]]]:
    """The rows as trained on: `input_ids` (prompt, response, EOS) and `completion_mask` (1 on the
    response and EOS), as TRL would tokenize them, except that data is always text.

    TRL appends the EOS *text* and tokenizes with special tokens parsed, so a response holding
    "</s>" or "<|im_end|>" would put a real EOS (or turn marker) inside the loss. Here the data
    is tokenized with special tokens split into plain text, and the one EOS is appended by id.
    """
    features = []
    for row in training_rows(examples):
        prompt_ids = tokenizer(row["prompt"], split_special_tokens=True)["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"], split_special_tokens=True)["input_ids"]
        ids = ids + [tokenizer.eos_token_id]
        # The response starts where the two tokenizations part (a token may merge across the boundary).
        n = next((i for i, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))
        features.append({"input_ids": ids, "completion_mask": [0] * n + [1] * (len(ids) - n)})
    return features


def check_prompt_lengths(examples: Sequence[Example], tokenizer: Any, max_length: int) -> dict[str, int]:
    """Token counts of the prompts; an error when any prompt leaves no room for its response
    within max_length (TRL would drop such an example without a word)."""
    prompts = [row["prompt"] for row in training_rows(examples)]
    lengths = [len(ids) for ids in tokenizer(prompts, split_special_tokens=True)["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    too_long = sum(1 for n in lengths if n >= max_length)
    if too_long:
        raise BadInputError(
            f"the max length {max_length} is below the prompt length of {too_long} of {len(lengths)} examples "
            f"(longest prompt: {lengths[longest]} tokens, row {examples[longest].index}), leaving no room for "
            f"the response: use a max length of at least {lengths[longest] + 1}")
    return {"longest_prompt_tokens": lengths[longest], "prompt_tokens": sum(lengths)}


def data_fingerprint(examples: Sequence[Example], source: str | Path | None = None) -> dict[str, Any]:
    """Row count and sha256 of the training data: of the file's bytes when it is a local file,
    and always of the examples as trained on (their content ids, in order)."""
    info: dict[str, Any] = {"source": str(source) if source is not None else None, "rows": len(examples)}
    if source is not None and Path(source).is_file():
        info["sha256"] = sha256_file(source)
    else:
        info["sha256"] = None
    info["examples_sha256"] = sha256_text(canonical_json([e.id for e in examples]))
    return info


# ---------------------------------------------------------------- training


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


def check_output_dir(output_dir: str | Path, resume: bool, replace: bool = False) -> str | None:
    """Check the output dir without touching it; the checkpoint to resume from when `resume`,
    else None. With `replace`, only a directory gasus made (it holds OWNER_MARKER, and is not a
    symlink) may hold files; any other non-empty directory is refused."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    if resume:
        ckpts = sorted((out / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: _step_of(p.name))
        if not ckpts:
            raise BadInputError(f"{out}: no checkpoint to resume from in {out / CHECKPOINTS}")
        return str(ckpts[-1])
    held = [p for p in out.iterdir() if p.name != OWNER_MARKER] if out.is_dir() else []
    if held and replace:
        if out.is_symlink() or not (out / OWNER_MARKER).is_file():
            why = "it is a symlink" if out.is_symlink() else f"gasus did not make it (no {OWNER_MARKER} in it)"
            raise BadInputError(f"{out}: not replacing this directory: {why}; move it away or delete it yourself")
    elif held:
        what = "a finished run" if (out / MANIFEST).exists() else "files"
        raise BadInputError(f"{out}: the output directory already holds {what}; choose an empty one "
                            "(or pass --resume to continue an interrupted run)")
    return None


def prepare_output_dir(output_dir: str | Path, resume: bool, replace: bool = False) -> str | None:
    """`check_output_dir`, then claim the directory with OWNER_MARKER (a directory gasus made is
    deleted first when `replace`). `train` calls it once every other check has passed, so a
    refused run leaves nothing behind."""
    resume_from = check_output_dir(output_dir, resume, replace)
    if resume:
        return resume_from
    out = Path(output_dir)
    if replace and out.is_dir() and any(p.name != OWNER_MARKER for p in out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / OWNER_MARKER) as handle:
        handle.write("gasus train wrote this directory; gasus may replace it.\n")
    return None


def _claim_output_dir(output_dir: str | Path, resume: bool, replace: bool) -> str | None:
    """`prepare_output_dir` in rank 0 only, once every rank has checked the directory; the
    other ranks wait for the claim and then read the same checkpoint to resume from."""
    if distributed.world_size() == 1:
        return prepare_output_dir(output_dir, resume, replace)
    distributed.barrier()
    if distributed.is_main_process():
        resume_from = prepare_output_dir(output_dir, resume, replace)
    distributed.barrier()
    if not distributed.is_main_process():
        resume_from = check_output_dir(output_dir, resume)
    return resume_from


def _step_of(name: str) -> int:
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def library_versions() -> dict[str, str | None]:
    from .manifest import library_versions as versions

    return versions(_LIBRARIES)


def train(examples: Sequence[Example], config: TrainConfig, output_dir: str | Path, *,
          base: str | None = None, data_source: str | Path | None = None, resume: bool = False,
          replace: bool = False, progress: Progress | None = None, notify: Callable[[str], None] | None = None,
          announce: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune `base` on the examples and write model, tokenizer and manifest.json to output_dir.

    The model and tokenizer are saved as safetensors (LoRA adapters merged in), loadable with
    `AutoModelForCausalLM.from_pretrained(output_dir)`. The manifest is written last and
    atomically: a directory with a manifest holds a finished run. `replace` lets a directory an
    earlier `train` made be deleted, after every check before loading the model has passed.

    Under torchrun (or `accelerate launch` on GPUs) every process runs this: rank 0 alone claims
    the directory, saves the model and writes the manifest, and passes the notes to `notify`;
    each process passes one line saying which rank it is to `announce`.
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
    for note in notes:
        logger.warning(note)
        if notify is not None and is_main:
            notify(note)

    if base_model.kind == "gguf":
        base_model = dataclasses.replace(base_model, sha256=_gguf_sha256(base_model.location))
    model, tokenizer, loaded_from = load_base(base_model)
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


def resolve_save_dtype(config: TrainConfig, bf16: bool) -> str:
    """The torch dtype name the weights are saved in: the training precision unless save_dtype says.

    >>> resolve_save_dtype(TrainConfig.from_preset("alpagasus-7b"), bf16=True)
    'bfloat16'
    >>> resolve_save_dtype(TrainConfig.from_preset("alpagasus-7b", save_dtype="fp32"), bf16=True)
    'float32'
    """
    if config.save_dtype == "auto":
        return "bfloat16" if bf16 else "float32"
    return _TORCH_DTYPES[config.save_dtype]


def cast_saved_weights(out: Path, dtype: str) -> None:
    """Rewrite the saved safetensors so that every floating-point tensor is `dtype`, and say so in
    config.json. Mixed-precision training keeps fp32 master weights, which the Trainer saves
    as they are (twice the size of a bf16 model); casting the files also covers FSDP's gathered
    state dict and merged LoRA weights alike. Each file is replaced whole."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    total = 0
    for path in sorted(out.glob("*.safetensors")):
        tensors = load_file(path)
        if any(t.is_floating_point() and t.dtype != target for t in tensors.values()):
            tensors = {k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}
            tmp = path.with_name(f".{path.name}.tmp")
            save_file(tensors, tmp, metadata={"format": "pt"})
            os.replace(tmp, path)
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    index = out / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data.setdefault("metadata", {})["total_size"] = total
        write_json(index, data)
    config_path = out / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        config["dtype"] = dtype
        if "torch_dtype" in config:  # the name before transformers 4.56
            config["torch_dtype"] = dtype
        write_json(config_path, config)


def _save_model(trainer: Any, config: TrainConfig, tokenizer: Any, out: Path) -> None:
    """Model and tokenizer as safetensors in `out`; LoRA adapters are merged so that
    transformers loads the directory as a plain model."""
    if config.lora:
        if trainer.is_fsdp_enabled:
            raise BadInputError("--lora with FSDP cannot merge the adapters on save; train LoRA on one process")
        merged = trainer.model.merge_and_unload()
        if trainer.is_world_process_zero():
            merged.save_pretrained(out)
            tokenizer.save_pretrained(out)
    else:
        trainer.save_model(str(out))  # gathers the full state dict under FSDP
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(out)
    trainer.accelerator.wait_for_everyone()  # every rank has written its part of the last checkpoint
    if trainer.is_world_process_zero():
        # The Trainer pickles its arguments here; every setting is in manifest.json instead.
        with contextlib.suppress(FileNotFoundError):
            (out / "training_args.bin").unlink()
        if not config.keep_checkpoints:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
