"""The content-addressed cache: every model call gasus makes is stored here, keyed by what was asked.

Key: sha256 of canonical JSON of {"schema", "backend", "model", "messages", "params"} (DESIGN.md).
Value: the raw completion and what the backend measured; parsing happens on read.

`entries` holds the key and the schema of one entry (and what import, verify and migrate report);
`disk` stores values as JSON in diskcache and never unpickles; `store` is the cache directory (its
marker, its location) and `Cache` over it, with claims. Each imports only the ones listed before it.
"""

from .disk import BrokenEntry, JsonDisk, PickledKey, PickledValue
from .entries import (
    CLAIM,
    INTERNAL_PREFIXES,
    SCHEMA,
    ImportReport,
    MigrateReport,
    VerifyReport,
    entry_problem,
    request_key,
    value_problem,
)
from .store import (
    CLAIM_SECONDS,
    GET_MANY_BLOCK,
    MARKER,
    MODELS,
    STORAGE,
    Cache,
    default_cache_dir,
    marker_storage,
    prepare_cache_dir,
    write_marker,
)

__all__ = [
    "BrokenEntry",
    "CLAIM",
    "CLAIM_SECONDS",
    "Cache",
    "GET_MANY_BLOCK",
    "INTERNAL_PREFIXES",
    "ImportReport",
    "JsonDisk",
    "MARKER",
    "MODELS",
    "MigrateReport",
    "PickledKey",
    "PickledValue",
    "SCHEMA",
    "STORAGE",
    "VerifyReport",
    "default_cache_dir",
    "entry_problem",
    "marker_storage",
    "prepare_cache_dir",
    "request_key",
    "value_problem",
    "write_marker",
]
