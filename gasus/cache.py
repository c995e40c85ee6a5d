"""The content-addressed cache: every model call gasus makes is stored here, keyed by what was asked.

Key: sha256 of canonical JSON of {"schema", "backend", "model", "messages", "params"} (DESIGN.md).
Value: the raw completion and what the backend measured; parsing happens on read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import BadInputError, CacheError
from .records import canonical_json, sha256_text

SCHEMA = 1
MARKER = "gasus-cache.json"
MODELS = "models"  # base models `gasus train` dequantized, beside the store (train.converted_gguf_dir)


def default_cache_dir() -> Path:
    """$GASUS_CACHE_DIR, else $XDG_CACHE_HOME/gasus, else ~/.cache/gasus."""
    if os.environ.get("GASUS_CACHE_DIR"):
        return Path(os.environ["GASUS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gasus"


def request_key(backend: str, model: str, messages: Any, params: dict[str, Any]) -> str:
    """The cache key of one model call."""
    return sha256_text(canonical_json(
        {"schema": SCHEMA, "backend": backend, "model": model, "messages": messages, "params": params}
    ))


def prepare_cache_dir(directory: str | Path | None = None) -> Path:
    """The cache dir, created and marked as gasus's own: whatever gasus writes there goes
    through here first, so the directory stays one every command opens.

    A directory that holds anything else and no marker is refused, except one holding only
    the converted models of an older `gasus train`, which wrote them without the marker.
    """
    d = Path(directory).expanduser() if directory else default_cache_dir()
    marker = d / MARKER
    if d.exists() and not d.is_dir():
        raise CacheError(f"{d}: the cache location exists and is not a directory")
    if d.is_dir() and not marker.exists() and not _only_converted_models(d):
        raise CacheError(
            f"{d}: not a gasus cache (no {MARKER}); point GASUS_CACHE_DIR at an empty or gasus directory"
        )
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text(json.dumps({"gasus_cache": SCHEMA}) + "\n")
        probe = d / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CacheError(f"{d}: the cache directory is not writable: {exc.strerror}") from None
    try:
        schema = json.loads(marker.read_text()).get("gasus_cache")
    except (OSError, ValueError, AttributeError):
        schema = None
    if schema != SCHEMA:
        raise CacheError(f"{d}: {MARKER} is not a gasus cache marker of schema {SCHEMA}")
    return d


def _only_converted_models(d: Path) -> bool:
    """Whether a directory is empty or holds nothing but MODELS/gguf-* (and their temporary dirs)."""
    entries = list(d.iterdir())
    if not entries:
        return True
    if [p.name for p in entries] != [MODELS] or not entries[0].is_dir():
        return False
    return all(p.is_dir() and p.name.lstrip(".").startswith("gguf-") for p in entries[0].iterdir())


class Cache:
    """A diskcache-backed store of completions, safe to share between processes.

    Each entry holds {"value": ..., "backend", "model", "created"}; `get` returns the value.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = prepare_cache_dir(directory)
        import diskcache

        try:
            self._store = diskcache.Cache(str(self.directory), eviction_policy="none", size_limit=2**62)
        except Exception as exc:  # sqlite3.OperationalError, PermissionError
            raise CacheError(f"{self.directory}: cannot open the cache: {exc}") from None

    # -------------------------------------------------------------- entries

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._store.get(key)
        return None if entry is None else entry["value"]

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def put(self, key: str, value: dict[str, Any], *, backend: str = "", model: str = "") -> None:
        self._store.set(key, {"value": value, "backend": backend, "model": model, "created": time.time()})

    def __len__(self) -> int:
        return len(self._store)

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self._store.iterkeys():
            entry = self._store.get(key)
            if entry is not None:
                yield key, entry

    # -------------------------------------------------------------- management

    def stats(self) -> dict[str, Any]:
        by_backend: dict[str, int] = {}
        for _, entry in self.entries():
            by_backend[entry.get("backend") or "?"] = by_backend.get(entry.get("backend") or "?", 0) + 1
        return {"directory": str(self.directory), "entries": len(self._store),
                "bytes": self._store.volume(), "by_backend": dict(sorted(by_backend.items()))}

    def export(self, path: str | Path) -> int:
        """Write every entry as JSON Lines {"key", "entry"}; returns how many."""
        from .io import write_jsonl

        return write_jsonl(path, ({"key": k, "entry": e} for k, e in self.entries()))

    def import_(self, path: str | Path) -> int:
        """Merge entries exported by `export`; returns how many were read."""
        from .io import iter_jsonl

        rows = []
        for lineno, row in iter_jsonl(path):
            if not (isinstance(row, dict) and isinstance(row.get("key"), str)
                    and isinstance(row.get("entry"), dict) and "value" in row["entry"]):
                raise BadInputError(f"{path}: line {lineno}: not a gasus cache export line")
            rows.append(row)
        with self._store.transact():
            for row in rows:
                self._store.set(row["key"], row["entry"])
        return len(rows)

    def clear(self) -> int:
        n = len(self._store)
        self._store.clear()
        return n

    def close(self) -> None:
        self._store.close()
