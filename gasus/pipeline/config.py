"""The run's TOML config: one dataclass per stage, read and checked before any model is loaded."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError, GasusError
from ..parsing import SCORE_SCALE


@dataclass(frozen=True)
class DataConfig:
    path: str = field(metadata={"help": "The instruction dataset to filter (any format gasus reads)."})
    format: str = field(default="alpaca", metadata={"help": "alpaca or dolly field layout."})
    max_rows: int = field(default=1_000_000, metadata={"help": "Refuse a dataset with more rows (0: no limit)."})
    max_expansion: int = field(default=200, metadata={
        "help": "Refuse a compressed input that decompresses to more than this many times its size (0: no limit)."})

    def __post_init__(self):
        from ..io import FORMATS

        if self.format not in FORMATS:
            raise ValueError(f"[data] format must be {' or '.join(FORMATS)}, got '{self.format}'")
        if self.max_rows < 0:
            raise ValueError(f"[data] max_rows must be 0 (no limit) or more, got {self.max_rows}")
        if self.max_expansion < 0:
            raise ValueError(f"[data] max_expansion must be at least 0, got {self.max_expansion}")


@dataclass(frozen=True)
class BackendSettings:
    """The backend options the commands take (`--base-url`, `--api-key-env`, ...), for one stage's model."""

    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server URL."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the API key."})
    concurrency: int = field(default=4, metadata={"help": "Requests in flight at once (openai)."})
    max_attempts: int = field(default=6, metadata={"help": "Tries per request before it is an error."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads (llamacpp); default all cores."})
    require_snapshot: str | None = field(default=None, metadata={
        "help": "Take only replies this snapshot served (model, fingerprint or MODEL|FINGERPRINT; openai)."})

    def backend_options(self):
        from ..backends import BackendOptions

        return BackendOptions(base_url=self.base_url, api_key_env=self.api_key_env, concurrency=self.concurrency,
                              max_attempts=self.max_attempts, n_threads=self.threads,
                              require_snapshot=self.require_snapshot)

    def _check_backend(self, table: str) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"[{table}] threads must be at least 1")
        try:
            self.backend_options()
        except ValueError as exc:
            raise ValueError(f"[{table}] {exc}") from None


def _check_batch(table: str, batch: Any, spec: str | None) -> None:
    if not isinstance(batch, bool):
        raise ValueError(f"[{table}] batch must be true or false, got {batch!r}")
    if batch and not (spec or "").startswith("openai:"):
        raise ValueError(f"[{table}] batch = true needs an openai: model (the Batch API), not {spec or 'the embedded model'}")


@dataclass(frozen=True)
class GradeConfig(BackendSettings):
    grader: str | None = field(default=None, metadata={"help": "Grader model spec; none: the embedded model."})
    mode: str = field(default="generate", metadata={"help": "generate (the paper's), score or expected."})
    dimension: str = field(default="accuracy", metadata={"help": "accuracy or helpfulness."})
    batch: bool = field(default=False, metadata={"help": "Ask the cache misses through the OpenAI Batch API "
                                                         "(openai: graders): half the price, resumable."})

    def __post_init__(self):
        if self.mode not in ("generate", "score", "expected"):
            raise ValueError(f"[grade] mode must be generate, score or expected, got '{self.mode}'")
        if self.dimension not in ("accuracy", "helpfulness"):
            raise ValueError(f"[grade] dimension must be accuracy or helpfulness, got '{self.dimension}'")
        self._check_backend("grade")
        _check_batch("grade", self.batch, self.grader)


@dataclass(frozen=True)
class SelectConfig:
    threshold: float | None = field(default=None, metadata={"help": "Keep score >= threshold (4.5 if top_k is unset)."})
    top_k: int | None = field(default=None, metadata={"help": "Keep the k best-scored examples instead."})
    seed: int = field(default=0, metadata={"help": "Seed of the random baseline of equal size."})

    def __post_init__(self):
        if self.threshold is not None and self.top_k is not None:
            raise ValueError("[select] give threshold or top_k, not both")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"[select] threshold must be a finite number, got {self.threshold}")
        low, high = SCORE_SCALE
        if self.threshold is not None and not low <= self.threshold <= high:
            # no grade lies outside the scale: 9 would keep nothing after an hour of grading
            raise ValueError(f"[select] threshold must be within the score scale {low:g}-{high:g}, got {self.threshold:g}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("[select] top_k must be at least 1")


@dataclass(frozen=True)
class CheckConfig:
    """The optional audit between select and train (`gasus check`, then `select --exclude`)."""

    enabled: bool = field(default=False, metadata={"help": "Run the check stage."})
    against: str | None = field(default=None, metadata={
        "help": "Test-set names or a dataset file; none: the test sets [generate] answers."})
    duplicates: bool = field(default=True, metadata={"help": "Also keep only the best of near-duplicate groups."})
    ngram: int = field(default=13, metadata={"help": "Words in a shared n-gram that makes an exact hit."})
    threshold: float = field(default=0.6, metadata={"help": "Jaccard at or above which two texts are near."})
    shingle: int = field(default=2, metadata={"help": "Words per shingle of the near check."})

    def audit_config(self):
        from ..audit import AuditConfig

        return AuditConfig(ngram=self.ngram, threshold=self.threshold, shingle=self.shingle)

    def __post_init__(self):
        try:
            self.audit_config()
        except BadInputError as exc:
            raise ValueError(f"[check] {str(exc).removeprefix('--')}") from None


@dataclass(frozen=True)
class TrainStageConfig:
    base: str | None = field(default=None, metadata={"help": "Base model; none: the embedded SmolLM2-135M."})
    preset: str = field(default="alpagasus-7b", metadata={"help": "alpagasus-7b, alpagasus-13b or cpu-smoke."})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Any TrainConfig setting (epochs, learning_rate, batch_size, max_length, max_steps, seed, ...)."})


@dataclass(frozen=True)
class GenerateConfig(BackendSettings):
    testsets: tuple[str, ...] = field(default=("all",), metadata={"help": "Test sets to answer."})
    limit: int | None = field(default=None, metadata={"help": "First N questions of each test set."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Most tokens per answer (the paper: 1024)."})
    testsets_dir: str | None = field(default=None, metadata={"help": "Where the test set files are."})

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ValueError("[generate] limit must be at least 1")
        if self.max_new_tokens < 1:
            raise ValueError("[generate] max_new_tokens must be at least 1")
        self._check_backend("generate")


@dataclass(frozen=True)
class JudgeConfig(BackendSettings):
    judge: str | None = field(default=None, metadata={"help": "Judge model spec; none: the embedded model."})
    mode: str = field(default="generate", metadata={"help": "generate (the paper's) or score (pair line only)."})
    order: str = field(default="both", metadata={"help": "both, ab or ba."})
    rule: str = field(default="paper", metadata={"help": "paper or strict."})
    batch: bool = field(default=False, metadata={"help": "Ask the cache misses through the OpenAI Batch API "
                                                         "(openai: judges): half the price, resumable."})

    def __post_init__(self):
        if self.mode not in ("generate", "score"):
            raise ValueError(f"[judge] mode must be generate or score, got '{self.mode}'")
        if self.order not in ("both", "ab", "ba"):
            raise ValueError(f"[judge] order must be both, ab or ba, got '{self.order}'")
        if self.rule not in ("paper", "strict"):
            raise ValueError(f"[judge] rule must be paper or strict, got '{self.rule}'")
        self._check_backend("judge")
        _check_batch("judge", self.batch, self.judge)


@dataclass(frozen=True)
class RunConfig:
    """One run of the recipe; each table of the TOML file fills one stage's settings."""

    out_dir: Path
    data: DataConfig
    grade: GradeConfig = GradeConfig()
    select: SelectConfig = SelectConfig()
    check: CheckConfig = CheckConfig()
    train: TrainStageConfig = TrainStageConfig()
    generate: GenerateConfig = GenerateConfig()
    judge: JudgeConfig = JudgeConfig()

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as the run manifest records it."""
        return {"out_dir": str(self.out_dir), **{name: dataclasses.asdict(getattr(self, name)) for name in _SECTIONS}}


_SECTIONS = {"data": DataConfig, "grade": GradeConfig, "select": SelectConfig, "check": CheckConfig,
             "train": TrainStageConfig,
             "generate": GenerateConfig, "judge": JudgeConfig}
# What each annotation accepts from TOML, and how a problem is named.
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "str": ((str,), "a string"), "int": ((int,), "a whole number"), "float": ((int, float), "a number"),
    "Path": ((str,), "a string (a directory)"),
}


def _type_problem(table: str | None, name: str, annotation: str, value: Any) -> str | None:
    """A message when a TOML value cannot fill a field of this annotation ("int | None", "float",
    "tuple[str, ...]", ...); `table` None for a top-level key."""
    where = f"[{table}] {name}" if table else name
    base = annotation.replace(" | None", "")
    if value is None and base != annotation:
        return None
    if base == "bool":
        return None if isinstance(value, bool) else f"{where} must be true or false, got {value!r}"
    if base == "tuple[str, ...]":  # a list of names; one name alone was made a tuple of one already
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            return _nul_problem(where, value)
        return f"{where} must be a string or a list of strings, got {list(value) if isinstance(value, tuple) else value!r}"
    if base not in _TYPES:
        return None
    kinds, what = _TYPES[base]
    if not isinstance(value, kinds) or isinstance(value, bool):
        return f"{where} must be {what}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} must be a finite number, got {value!r}"
    return _nul_problem(where, value)


def _nul_problem(where: str, value: Any) -> str | None:
    """A NUL byte in a string names no file (and no model, test set or variable): refused by name."""
    if any(isinstance(v, str) and "\0" in v for v in (value if isinstance(value, tuple) else (value,))):
        return f"{where} holds a NUL byte, which no file or name can hold: {value!r}"
    return None


def read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise BadInputError(f"{path}: invalid TOML: nested too deeply") from None


DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.toml"
# Where `gasus run --demo` writes unless --run-dir says otherwise; `make demo` writes there too, and
# .gitignore holds out/.
DEMO_RUN_DIR = "out/demo-run"


def with_overrides(config: RunConfig, *, out_dir: str | Path | None = None, threshold: float | None = None) -> RunConfig:
    """The config with the command line's --run-dir (taken from the working directory) and
    --threshold (which replaces [select] threshold or top_k) applied."""
    if out_dir is not None:
        config = dataclasses.replace(config, out_dir=Path(os.path.abspath(out_dir)))
    if threshold is not None:
        config = dataclasses.replace(config, select=SelectConfig(threshold=threshold, seed=config.select.seed))
    return config


def load_run_config(path: str | Path) -> RunConfig:
    """A RunConfig from TOML; relative paths are taken from the file's directory.

    Every key, value, preset, test set name, model spec and path is checked here, before any
    model is loaded, and every problem found is listed in one error.
    """
    path = Path(path)
    return config_from_dict(read_toml(path), path.resolve().parent, str(path))


def config_from_dict(raw: dict[str, Any], here: Path, where: str) -> RunConfig:
    """A checked RunConfig from a parsed TOML table; `where` names it in the error."""
    unknown = sorted(set(raw) - set(_SECTIONS) - {"out_dir"})
    if unknown:
        raise BadInputError(f"{where}: unknown setting(s) {', '.join(unknown)}; tables: {', '.join(_SECTIONS)}")
    if not isinstance(raw.get("data"), dict) or "path" not in raw["data"]:
        raise BadInputError(f"{where}: [data] path is required")
    problems: list[str] = []
    if "out_dir" in raw:
        problems += [p for p in [_type_problem(None, "out_dir", "Path", raw["out_dir"])] if p]

    def resolve(p: str | None) -> str | None:
        return None if p is None else os.path.normpath(here / p)

    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            problems.append(f"[{name}] must be a table")
            values = {}
        values = dict(values)
        if name == "train":
            known = {"base", "preset"}
            values = {"base": values.get("base"), "preset": values.get("preset", "alpagasus-7b"),
                      "overrides": {k: v for k, v in values.items() if k not in known}}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        extra = sorted(set(values) - set(fields))
        if extra:
            problems.append(f"unknown setting(s) in [{name}]: {', '.join(extra)}")
        if name == "generate" and "testsets" in values:
            ts = values["testsets"]
            values["testsets"] = (ts,) if isinstance(ts, str) else tuple(ts) if isinstance(ts, list) else ts
        bad = [p for k, v in values.items() if k in fields
               for p in [_type_problem(name, k, str(fields[k].type), v)] if p]
        problems.extend(bad)
        if extra or bad:
            continue
        if name == "train":
            train_fields = _train_fields()
            bad = [p for k, v in values["overrides"].items() if k in train_fields
                   for p in [_type_problem(name, k, train_fields[k], v)] if p]
            problems.extend(bad)
            if bad:
                continue
        try:
            sections[name] = cls(**values)
        except (ValueError, TypeError) as exc:
            problems.append(str(exc) if str(exc).startswith("[") else f"[{name}] {exc}")
    problems.extend(_check_sections(sections, resolve))  # a section with a value of the wrong type is left out
    if problems:
        if len(problems) == 1:
            raise BadInputError(f"{where}: {problems[0]}")
        # one per line under a header: seven problems on one line read as one
        raise BadInputError(f"{where}: {len(problems)} problems in the config:"
                            + "".join(f"\n  {problem}" for problem in problems))

    sections["data"] = dataclasses.replace(sections["data"], path=resolve(sections["data"].path))
    from ..io import file_kind

    against = sections["check"].against
    if against and (Path(here / against).exists() or file_kind(against) is not None):
        sections["check"] = dataclasses.replace(sections["check"], against=resolve(against))
    if sections["generate"].testsets_dir:
        sections["generate"] = dataclasses.replace(sections["generate"],
                                                   testsets_dir=resolve(sections["generate"].testsets_dir))
    return RunConfig(out_dir=Path(resolve(raw.get("out_dir", "gasus-run"))), **sections)


def _train_fields() -> dict[str, str]:
    """TrainConfig's settings and their annotations, which [train] may override."""
    from ..train import TrainConfig

    return {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def _check_sections(sections: dict[str, Any], resolve: Callable[[str | None], str | None]) -> list[str]:
    """What the dataclasses cannot see alone: files, presets and training keys, test sets, model specs."""
    from ..backends import parse_spec, spec_file
    from ..io import file_kind
    from ..testsets import resolve_names
    from ..train import PRESETS, TrainConfig, resolve_base

    problems = []
    data = sections.get("data")
    if data is not None and not Path(resolve(data.path)).is_file():
        problems.append(f"[data] path {resolve(data.path)}: no such file")
    train = sections.get("train")
    if train is not None:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(train.overrides) - names)
        if unknown:
            problems.append(f"[train] unknown training setting(s): {', '.join(unknown)}")
        if train.preset not in PRESETS:
            problems.append(f"[train] unknown preset '{train.preset}': choose one of {', '.join(PRESETS)}")
        if not unknown and train.preset in PRESETS:
            try:
                TrainConfig.from_preset(train.preset, **train.overrides)
            except (ValueError, TypeError) as exc:
                problems.append(f"[train] {exc}")
        try:
            resolve_base(train.base)
        except GasusError as exc:
            problems.append(f"[train] {exc}")
    check = sections.get("check")
    if check is not None and check.against:
        if Path(resolve(check.against)).exists() or file_kind(check.against) is not None:
            if not Path(resolve(check.against)).is_file():
                problems.append(f"[check] against {resolve(check.against)}: no such file")
        else:
            try:
                resolve_names(check.against)
            except GasusError as exc:
                problems.append(f"[check] {exc}")
    generate = sections.get("generate")
    if generate is not None:
        try:
            resolve_names(list(generate.testsets))
        except (GasusError, AttributeError) as exc:
            problems.append(f"[generate] {exc}")
        if generate.testsets_dir and not Path(resolve(generate.testsets_dir)).is_dir():
            problems.append(f"[generate] testsets_dir {resolve(generate.testsets_dir)}: no such directory")
    for table, key in (("grade", "grader"), ("judge", "judge")):
        stage = sections.get(table)
        if stage is None:
            continue
        spec = getattr(stage, key)
        try:
            name, _ = parse_spec(spec)
        except GasusError as exc:
            problems.append(f"[{table}] {exc}")
            continue
        local = spec_file(spec)
        if local and not Path(local).exists():
            problems.append(f"[{table}] {key} {local}: no such file")
        if name == "openai" and not os.environ.get(stage.api_key_env):
            problems.append(f"[{table}] the {key} {spec} needs an API key: set {stage.api_key_env} "
                            "(or name another variable with api_key_env)")
    return problems
