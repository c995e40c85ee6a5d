"""A training run's settings: `TrainConfig`, the paper's presets (Stanford Alpaca's settings),
how the global batch splits over devices, and the precision the hardware allows.

torch is imported only inside `detect_hardware`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError

CONFIGS_DIR = Path(__file__).parent.parent / "configs"  # gasus/configs

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
