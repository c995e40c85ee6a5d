"""What a cache entry is: its key, the schema an imported entry must meet, the check on every read."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from ..records import canonical_json, sha256_text

SCHEMA = 1  # of the keys
CLAIM = "claim:"  # + a request's key: a process is asking the model for it (Cache.claim)
# Keys gasus writes for itself (memos of file hashes and chat templates, claims): local, never exported or imported.
INTERNAL_PREFIXES = ("filehash:", "chat-template:", CLAIM)
_KEY = re.compile(r"[0-9a-f]{64}")


def request_key(backend: str, model: str, messages: Any, params: dict[str, Any]) -> str:
    """The cache key of one model call."""
    return sha256_text(canonical_json(
        {"schema": SCHEMA, "backend": backend, "model": model, "messages": messages, "params": params}
    ))


@dataclass
class ImportReport:
    """What `Cache.import_` did with the lines of an export file."""

    read: int = 0
    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    conflicts: list[str] = field(default_factory=list)  # keys whose cached value differs, kept as they were


@dataclass
class VerifyReport:
    """What `Cache.verify` found: entries read, and (key, problem) for each broken one."""

    checked: int = 0
    broken: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class MigrateReport:
    converted: int = 0
    memos: int = 0  # internal memos dropped: recomputed on use
    broken: list[str] = field(default_factory=list)  # entries that are not data or not gasus entries: dropped


@functools.cache
def _entry_schema() -> Any:
    """The pydantic model of one cache entry (pydantic is imported only to check imports)."""
    from pydantic import BaseModel, ConfigDict

    class Completion(BaseModel):
        # A backend may measure more; every field gasus reads back is typed here (and in value_problem).
        model_config = ConfigDict(extra="allow", strict=True)
        text: str
        finish_reason: str | None = None
        usage: dict[str, int | None] | None = None
        logprobs: dict[str, float] | None = None
        completion_tokens: int | None = None
        reasoning: str | None = None
        served_model: str | None = None
        system_fingerprint: str | None = None

    class Entry(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        value: Completion
        backend: str = ""
        model: str = ""
        created: float = 0.0

    return Entry


def entry_problem(key: Any, entry: Any) -> str | None:
    """Why (key, entry) cannot be a cache entry from elsewhere, or None when it can."""
    from pydantic import ValidationError

    if not isinstance(key, str) or key.startswith(INTERNAL_PREFIXES):
        return f"'{key}' is an internal key (file hashes, chat templates) and is never imported"
    if not _KEY.fullmatch(key):
        return f"'{key}' is not a gasus cache key (64 hex digits)"
    try:
        _entry_schema().model_validate(entry)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return f"not a gasus cache entry: {where}: {error['msg']}"
    return None


_TEXTS = ("finish_reason", "reasoning", "served_model", "system_fingerprint")


def value_problem(entry: Any) -> str | None:
    """Why a stored entry's model-call value cannot be read back, or None: the fields gasus reads
    (text, its thinking, how it ended, token counts, score logprobs, what served it) checked for
    type on every read. Cheaper than the import schema (a cached rerun reads a million values; JSON
    gives exact types), and never stricter: what the schema takes passes here.

    >>> value_problem({"value": {"text": "4", "usage": {"completion_tokens": 1}}}) is None
    True
    >>> value_problem({"value": {"text": "4", "reasoning": 5}})
    'has a reasoning that is not a string'
    """
    value = entry.get("value") if type(entry) is dict else None
    if type(value) is not dict:
        return "is not a model call's entry"
    if type(value.get("text")) is not str:
        return "has a text that is not a string"
    for name in _TEXTS:
        text = value.get(name)
        if text is not None and type(text) is not str:
            return f"has a {name} that is not a string"
    usage = value.get("usage")
    if usage is not None:
        if type(usage) is not dict:
            return "has a usage that is not token counts"
        for count in usage.values():
            if count is not None and type(count) is not int:  # True is an int too, and no count
                return "has a usage that is not token counts"
    tokens = value.get("completion_tokens")
    if tokens is not None and type(tokens) is not int:
        return "has a completion_tokens that is not a count"
    logprobs = value.get("logprobs")
    if logprobs is not None and (type(logprobs) is not dict or any(
            type(p) is not float and type(p) is not int for p in logprobs.values())):
        return "has logprobs that are not numbers"
    return None
