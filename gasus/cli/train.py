"""gasus train: fine-tune a base model on the kept examples with the paper's settings."""

from __future__ import annotations

import os

import click

from ..wording import counted
from .common import (
    INTERRUPTED,
    GasusCommand,
    check_paths,
    console,
    dataset_options,
    library_deprecations_hidden,
    load_dataset_arg,
    summary_option,
    working_bar,
)

PRESET_NAMES = ("alpagasus-7b", "alpagasus-13b", "cpu-smoke")  # gasus.train.PRESETS, without importing it


def _show_fsdp_config(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ..train import fsdp_config_path

    click.echo(str(fsdp_config_path()))
    ctx.exit(0)


@click.command(cls=GasusCommand)
@click.argument("dataset")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the model, tokenizer (safetensors) and manifest.json; must be new or empty.")
@click.option("--base", default=None,
              help="Model to fine-tune: a hub id, a local model directory, or a .gguf file (dequantized). "
                   "[default: the embedded SmolLM2-135M-Instruct]")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="alpagasus-7b", show_default=True,
              help="The paper's settings (Stanford Alpaca's). alpagasus-7b, the default: bf16 (fp32 where no GPU "
                   "has bf16), global batch 128, 3 epochs, lr 2e-5, max length 512; alpagasus-13b: the same "
                   "with 5 epochs at lr 1e-5; cpu-smoke: 4 steps of batch 4, max length 128, lr 1e-4, for a "
                   "quick check on a CPU.")
@click.option("--epochs", type=float, default=None, help="Passes over the data (7B: 3, 13B: 5).")
@click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate (7B: 2e-5, 13B: 1e-5).")
@click.option("--batch-size", type=int, default=None,
              help="Global batch: per-device batch x gradient accumulation x devices (paper: 128).")
@click.option("--per-device-batch-size", "micro_batch_size", type=int, default=None,
              help="Examples per device per forward pass; accumulation makes up the rest of the global batch.")
@click.option("--max-length", type=int, default=None, help="Tokens per sequence, prompt included (paper: 512).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps.")
@click.option("--seed", type=int, default=None, help="Random seed.  [default: 42]")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default=None,
              help="bf16 (+tf32) needs a GPU that has it; auto picks it where available.  [default: the preset's]")
@click.option("--save-dtype", type=click.Choice(["auto", "bf16", "fp32"]), default=None,
              help="Precision of the saved weights; auto: the one it trained in (bf16 after a bf16 run).  "
                   "[default: auto]")
@click.option("--no-fp32-fallback", is_flag=True,
              help="Fail instead of training in fp32 when bf16 is asked for and no GPU has it.")
@click.option("--lora", is_flag=True, help="Train LoRA adapters with peft (merged into the saved model).")
@click.option("--lora-rank", type=int, default=None, help="LoRA rank.  [default: 16]")
@click.option("--packing", is_flag=True, help="Pack examples into max-length rows without padding (fastest with flash attention).")
@click.option("--activation-checkpointing", is_flag=True, help="Trade about 20% speed for much less activation memory.")
@click.option("--save-steps", type=int, default=None, help="Write a resumable checkpoint every N steps.  [default: 500]")
@click.option("--keep-checkpoints", is_flag=True, help="Keep DIR/checkpoints after the run finishes.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from the last checkpoint in DIR.")
@click.option("--show-fsdp-config", is_flag=True, is_eager=True, expose_value=False, callback=_show_fsdp_config,
              help="Print the path of the shipped accelerate FSDP config and exit.")
@dataset_options
@summary_option
def train(dataset, output_dir, base, preset, epochs, learning_rate, batch_size, micro_batch_size, max_length,
          max_steps, seed, precision, save_dtype, no_fp32_fallback, lora, lora_rank, packing, activation_checkpointing,
          save_steps, keep_checkpoints, resume, fmt, instruction_field, input_field, output_field, split, max_rows,
          summary):
    """Fine-tune a model on instruction data with the AlpaGasus (Stanford Alpaca) recipe.

    Each example is rendered with Alpaca's prompt template, the same text `gasus generate`
    sends, and the loss is taken on the response tokens only. DIR receives the model and
    tokenizer as safetensors (load them with transformers or `gasus generate hf:DIR`) and
    manifest.json: the data's sha256 and row count, every setting, library versions, wall
    time and tokens per second. Without --preset it trains with the paper's 7B settings
    (alpagasus-7b: bf16, global batch 128, 3 epochs); on a CPU try --preset cpu-smoke. On
    many GPUs, launch it with accelerate and the shipped FSDP config (see --show-fsdp-config).

    \b
    Example:
      gasus train kept.json -o runs/smoke --preset cpu-smoke
      gasus train kept.json -o runs/7b --base huggyllama/llama-7b --preset alpagasus-7b
      accelerate launch --config_file "$(gasus train --show-fsdp-config)" \\
          -m gasus train kept.json -o runs/7b --base huggyllama/llama-7b
    """
    from .. import train as training

    check_paths(summary, inputs={"DATASET": dataset, "--base": base}, outputs={"-o/--output": output_dir})
    config = training.TrainConfig.from_preset(
        preset, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, micro_batch_size=micro_batch_size,
        max_length=max_length, max_steps=max_steps, seed=seed, precision=precision, save_dtype=save_dtype,
        fp32_fallback=False if no_fp32_fallback else None, lora=lora or None, lora_rank=lora_rank,
        packing=packing or None, activation_checkpointing=activation_checkpointing or None,
        save_steps=save_steps, keep_checkpoints=keep_checkpoints or None)
    training.check_base_available(training.resolve_base(base))  # before torch and transformers load
    examples = load_dataset_arg(dataset, fmt, instruction_field, input_field, output_field, split,
                                max_rows)
    summary.items = len(examples)
    err = console(stderr=True)
    from ..distributed import is_main_process

    # Shown from the start: loading the libraries, converting and tokenizing take a while before step 1.
    bar = working_bar(err, disable=not (err.is_terminal and is_main_process()))  # not in logs and pipes; one per run
    task = bar.add_task("training", total=None, note="loading the training libraries")

    def on_status(text: str) -> None:
        bar.update(task, note=f"{text} ...", refresh=True)

    def on_progress(step: int, total: int, loss: float | None) -> None:
        bar.update(task, completed=step, total=total, note="" if loss is None else f"loss {loss:.4f}")

    def on_note(text: str) -> None:
        err.print(f"Note: {text}", soft_wrap=True)

    def on_rank(text: str) -> None:  # under torchrun: one line from each process
        err.print(text, soft_wrap=True)

    click.get_current_context().meta[INTERRUPTED] = (
        f"Interrupted: the checkpoints written so far are in {os.path.join(output_dir, training.CHECKPOINTS)}; "
        "rerun with --resume to continue from the last one.")
    with bar, library_deprecations_hidden():
        on_status("loading the training libraries")
        quiet_libraries()
        result = training.train(examples, config, output_dir, base=base, data_source=dataset, resume=resume,
                                progress=on_progress, notify=on_note, announce=on_rank, status=on_status)
    if not result.is_main_process:
        return
    run = result.manifest["train"]
    summary.extra.update({"output": str(result.output_dir), "steps": run["steps"], "tokens": run["tokens"],
                          "tokens_per_second": run["tokens_per_second"], "train_loss": run["train_loss"]})
    # The mean over the run's steps, as the manifest and --summary-json have it (train_loss): the
    # last step's loss alone swings from batch to batch.
    console().print(f"trained {counted(run['steps'], 'step')} on {counted(len(examples), 'example')} in "
                    f"{run['train_seconds']:.1f} s ({run['tokens_per_second']} tokens/s, mean loss "
                    f"{run['train_loss']:.4f}) -> {result.output_dir}", soft_wrap=True)


def quiet_libraries() -> None:
    """Keep the libraries' own progress bars and info lines out of the display."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
