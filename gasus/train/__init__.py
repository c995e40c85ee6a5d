"""Fine-tuning on the kept examples: Stanford Alpaca's recipe on TRL's SFTTrainer.

Each example becomes a prompt-completion pair: the prompt is Stanford Alpaca's template
(`prompts.alpaca_prompt`, the exact text `gasus generate` sends), the completion is the
response followed by EOS, and the loss covers the completion tokens only. The presets hold
the paper's settings (Alpaca's: 3 epochs at lr 2e-5 for 7B, 5 at 1e-5 for 13B, global batch
128, max length 512, no weight decay, 3% warmup, cosine, bf16); the same code runs a tiny
model on a laptop CPU and, under `accelerate launch` with `configs/fsdp.yaml`, many GPUs.

The modules, each importing only those before it:
`config` (settings, presets, batch plan, precision), `base` (the base model), `data` (rows and
features), `outputs` (the output directory and the saved weights; uses `config`), and
`trainer` (the trainer and `train`; uses all four). Every name callers use is re-exported here.

torch, transformers, trl, datasets and peft are imported inside the functions that use them.
"""

from .base import (
    BaseModel,
    check_base_available,
    convert_gguf,
    converted_gguf_dir,
    load_base,
    resolve_base,
)
from .config import (
    CONFIGS_DIR,
    LR_SCHEDULERS,
    PRECISIONS,
    PRESETS,
    SAVE_DTYPES,
    BatchPlan,
    TrainConfig,
    detect_hardware,
    fsdp_config_path,
    plan_batches,
    resolve_precision,
    resolve_save_dtype,
)
from .data import check_prompt_lengths, data_fingerprint, training_features, training_rows
from .outputs import (
    CHECKPOINTS,
    MANIFEST,
    OWNER_MARKER,
    cast_saved_weights,
    check_output_dir,
    prepare_output_dir,
)
from .trainer import Progress, TrainResult, build_trainer, library_versions, train

__all__ = [
    "CHECKPOINTS", "CONFIGS_DIR", "LR_SCHEDULERS", "MANIFEST", "OWNER_MARKER", "PRECISIONS", "PRESETS",
    "SAVE_DTYPES", "BaseModel", "BatchPlan", "Progress", "TrainConfig", "TrainResult", "build_trainer",
    "cast_saved_weights", "check_base_available", "check_output_dir", "check_prompt_lengths", "convert_gguf", "converted_gguf_dir",
    "data_fingerprint", "detect_hardware", "fsdp_config_path", "library_versions", "load_base",
    "plan_batches", "prepare_output_dir", "resolve_base", "resolve_precision", "resolve_save_dtype", "train",
    "training_features", "training_rows",
]
