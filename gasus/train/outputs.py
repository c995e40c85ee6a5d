"""The output directory and what is saved in it: checking and claiming the directory (only a
directory gasus made may be replaced), saving model and tokenizer, and casting the saved weights.

torch and safetensors are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from .. import distributed
from ..errors import BadInputError
from ..io import atomic_write, write_json
from .config import TrainConfig

MANIFEST = "manifest.json"
# Left in an output directory the moment training claims it: only a directory holding it may be replaced.
OWNER_MARKER = ".gasus-train"
CHECKPOINTS = "checkpoints"


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
