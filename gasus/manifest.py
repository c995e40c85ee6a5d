"""The run manifest: `manifest.json` in a run dir says what ran, with what, and how far it got.

It holds the gasus and library versions, the resolved config, the identity of every model
(its spec and the sha256 of its file, or the remote name), the sha256 and row count of every
input and output file, and one entry per finished stage. It is rewritten atomically after each
stage, so a killed run's manifest shows the stage it stopped in (`status` "running",
`current_stage`). Two runs that made the same files show the same hashes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import BadInputError
from .io import compression, count_lines, count_rows, file_kind, read_json, sha256_file, write_json

MANIFEST = "manifest.json"
STAGES = ("grade", "select", "check", "train", "generate", "judge", "report")
# Libraries whose version can change a result, recorded beside gasus's own.
LIBRARIES = ("llama_cpp_python", "torch", "transformers", "trl", "accelerate", "peft", "datasets",
             "safetensors", "tokenizers", "numpy", "matplotlib", "diskcache")


@dataclass(frozen=True)
class StageRecord:
    """What one stage did: items made, model calls and cache hits, failed items, wall time."""

    items: int
    model_calls: int
    cache_hits: int
    failures: int
    seconds: float


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Python's, gasus's and each installed library's version (None when it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "gasus": __version__}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_record(path: str | Path) -> dict[str, Any]:
    """sha256 and row count of a data file (lines of JSON Lines, items of a JSON array), or of every
    file in a directory (a trained model) as one sha256 over their names and hashes."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file() and "checkpoints" not in p.parts):
            h.update(f"{child.relative_to(path).as_posix()}\0{sha256_file(child)}\n".encode())
        return {"sha256": h.hexdigest()}
    record: dict[str, Any] = {"sha256": sha256_file(path)}
    kind = file_kind(path)
    if kind == "jsonl":  # counted as the lines come (a compressed file decompressed as it is read)
        record["rows"] = count_lines(path)
    elif compression(path) and kind == "json":
        record["rows"] = count_rows(path, max_rows=0)
    elif kind == "json":
        value = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(value, list):
            record["rows"] = len(value)
    return record


def model_record(spec: str | None, cache: Any = None) -> dict[str, Any]:
    """A model's identity: its spec, and the sha256 of its local file (a remote model is its name)."""
    from .backends import embedded_model_path, is_embedded, parse_spec, spec_file
    from .backends.base import file_sha256

    name, target = parse_spec(spec)
    local = spec_file(spec) if not is_embedded(spec) else str(embedded_model_path())
    record: dict[str, Any] = {"spec": spec or "embedded", "backend": name}
    if local and Path(local).is_file():
        record.update(file=str(local), sha256=file_sha256(local, cache))
    elif local and Path(local).is_dir():
        record.update(file=str(local), **file_record(local))
    else:
        record["remote_name"] = target
    return record


class RunManifest:
    """The manifest of one run dir, written whole (atomically) at every change."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any]):
        self.path = Path(run_dir) / MANIFEST
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.data: dict[str, Any] = {
            "gasus": __version__, "libraries": library_versions(), "started_at": now, "updated_at": now,
            "status": "running", "current_stage": None, "config": config, "models": {},
            "inputs": {}, "outputs": {}, "stages": {},
        }

    def model(self, role: str, record: dict[str, Any]) -> None:
        self.data["models"][role] = record

    def file(self, kind: str, name: str, path: str | Path) -> None:
        """Record an input or output file (`kind` "inputs" or "outputs") under the name the run knows it by."""
        self.data[kind][name] = {"path": str(path), **file_record(path)}

    def begin(self, stage: str) -> None:
        self.data["current_stage"] = stage
        self.write()

    def stage(self, stage: str, record: StageRecord) -> None:
        self.data["stages"][stage] = asdict(record)
        self.data["current_stage"] = None
        self.write()

    def finish(self) -> None:
        self.data["status"] = "finished"
        self.write()

    def write(self) -> None:
        self.data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(self.path, self.data)


@functools.cache
def _manifest_schema() -> Any:
    """The pydantic model of what a report reads from a manifest (pydantic is imported only to check
    one read back); other keys a run writes, or a newer gasus adds, are let through."""
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    class Part(BaseModel):
        model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    class Stage(Part):
        items: int = 0
        model_calls: int = 0
        cache_hits: int = 0
        failures: int = 0
        seconds: float = 0.0

    class Check(Part):
        rows: int
        contaminated_rows: int
        exact_hits: int
        near_hits: int
        duplicate_rows: int
        kept: int | None = None

    class Model(Part):
        spec: str | None = None
        sha256: str | None = None
        remote_name: str | None = None
        weights_sha256: dict[str, str] | None = None
        manifest_sha256: str | None = None

    class Data(Part):
        path: str | None = None
        format: Literal["alpaca", "dolly"] = "alpaca"
        max_rows: int = Field(default=0, ge=0)

    class Select(Part):
        threshold: float | None = None
        top_k: int | None = Field(default=None, ge=1)

    class Judge(Part):
        order: Literal["both", "ab", "ba"] = "both"
        rule: Literal["paper", "strict"] = "paper"

    class Config(Part):
        data: Data = Data()
        select: Select = Select()
        judge: Judge = Judge()

    class Manifest(Part):
        stages: dict[str, Stage]
        config: Config = Config()
        check: Check | None = None
        models: dict[str, Model] = {}
        status: str = "?"
        current_stage: str | None = None
        gasus: str | None = None
        started_at: str | None = None
        updated_at: str | None = None

    return Manifest


@functools.cache
def _model_manifest_schema() -> Any:
    """What a report reads from a trained model's manifest.json: its loss curve (a diverged run's loss
    may be NaN)."""
    from pydantic import BaseModel, ConfigDict

    class Part(BaseModel):
        model_config = ConfigDict(extra="allow", strict=True)

    class Point(Part):
        step: int | None = None
        loss: float | None = None

    class Train(Part):
        loss_history: list[Point] | None = None

    class ModelManifest(Part):
        train: Train = Train()

    return ModelManifest


def manifest_problem(manifest: Any, *, model: bool = False) -> str | None:
    """Why a parsed manifest.json (a run's, or with `model` a trained model's) cannot be reported on,
    naming the entry and field at fault; None when it can."""
    from pydantic import ValidationError

    if not isinstance(manifest, dict):
        return f"a JSON object was expected, not {type(manifest).__name__}"
    try:
        (_model_manifest_schema() if model else _manifest_schema()).model_validate(manifest)
    except ValidationError as exc:
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """A run dir's manifest, its shape checked: the run dir may come from anyone, or be edited by hand."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise BadInputError(f"{run_dir}: no {MANIFEST} here; is it the out_dir of a gasus run?")
    manifest = read_json(path)
    problem = manifest_problem(manifest)
    if problem is not None:
        raise BadInputError(f"{path}: not a run manifest: {problem}")
    return manifest
