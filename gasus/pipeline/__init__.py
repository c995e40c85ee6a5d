"""The whole recipe from one TOML file: grade, select (and a random baseline of equal size),
fine-tune both subsets, answer the test sets with both models, judge filtered vs baseline.

Every stage writes plain files under `out_dir` and can be rerun: model calls come from the
cache, and a trained model whose manifest matches the data and settings is reused.

`config` reads and checks the TOML file; `stages` runs the stages (it imports `config`, never
the other way).
"""

from .config import (
    DEMO_CONFIG,
    DEMO_RUN_DIR,
    BackendSettings,
    CheckConfig,
    DataConfig,
    GenerateConfig,
    GradeConfig,
    JudgeConfig,
    RunConfig,
    SelectConfig,
    TrainStageConfig,
    config_from_dict,
    load_run_config,
    read_toml,
    with_overrides,
)
from .stages import OUTPUT_FILES, StageProgress, StageReport, run_paths, run_pipeline

__all__ = [
    "DEMO_CONFIG", "DEMO_RUN_DIR", "OUTPUT_FILES", "BackendSettings", "CheckConfig", "DataConfig", "GenerateConfig",
    "GradeConfig", "JudgeConfig", "RunConfig", "SelectConfig", "StageProgress", "StageReport", "TrainStageConfig",
    "config_from_dict", "load_run_config", "read_toml", "run_paths", "run_pipeline", "with_overrides",
]
