"""Batch journals in the cache dir: their schema check, reading, writing, and whose server they are on."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import BadInputError, GasusWarning

JOURNAL_DIR = "batches"  # inside the cache dir


def journal_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / JOURNAL_DIR


_JOURNAL_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,99}")  # what _record writes: a file name and nothing more
_STATES = ("preparing", "submitted", "collected")


def journal_problem(record: Any, name: str) -> str | None:
    """What makes a journal read from the file `name` (its stem) unusable, or None: every field
    a batch command or a run reads has its type, and its id is the file's own name."""
    if not isinstance(record, dict):
        return "not a JSON object"
    ident = record.get("id")
    if not isinstance(ident, str) or not _JOURNAL_ID.fullmatch(ident):
        return "no valid id"
    if ident != name:
        return f"its id {ident!r} is not its file name"
    if record.get("journal", 1) != 1:
        return "an unknown journal version"
    if not _number(record.get("created")) or ("collected" in record and not _number(record["collected"])):
        return "a time that is not a number"
    if record.get("state") not in _STATES:
        return "an unknown state"
    for attr in ("base_url", "api_key_env", "model", "label", "endpoint", "mode"):
        if not _text(record.get(attr)):
            return f"no valid {attr}"
    for attr in ("input_file_id", "batch_id", "status"):
        if record.get(attr) is not None and not _text(record.get(attr)):
            return f"no valid {attr}"
    if not isinstance(record.get("raw"), bool):
        return "no valid raw"
    keys = record.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return "keys that are not a list of strings"
    counts = record.get("counts")
    if not isinstance(counts, dict) or not all(_count(v) for v in counts.values()):
        return "counts that are not numbers"
    failed = record.get("failed")
    if not isinstance(failed, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v) for v in failed.values()):
        return "failed requests that are not [kind, message] pairs"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    # Shown in tables and warnings: no control character may reach a terminal.
    return isinstance(value, str) and 0 < len(value) <= 2048 and value.isprintable()


def load_journals(cache_dir: Path) -> list[dict[str, Any]]:
    """Every batch journal in the cache dir, oldest first. A file that is not a whole journal (a
    cache dir may come from anyone) is skipped with a GasusWarning naming it."""
    records = []
    d = journal_dir(cache_dir)
    if not d.is_dir():
        return []
    for path in d.glob("*.json"):
        record, problem = _read_journal(path)
        if problem is not None:
            warnings.warn(f"skipped batch journal {ascii(str(path))[1:-1]}: {problem}", GasusWarning, stacklevel=2)
            continue
        records.append(record)
    return sorted(records, key=lambda r: (r["created"], r["id"]))


def save_journal(cache_dir: Path, record: dict[str, Any]) -> None:
    from ..io import write_json

    if not isinstance(record.get("id"), str) or not _JOURNAL_ID.fullmatch(record["id"]):
        raise BadInputError(f"batch journal id {record.get('id')!r}: not a journal id")  # never a path
    d = journal_dir(cache_dir)
    d.mkdir(exist_ok=True)
    write_json(d / f"{record['id']}.json", record, indent=None)


def batch_name(record: dict[str, Any]) -> str:
    return str(record.get("batch_id") or f"(journal {record['id']}, not submitted)")


def is_live(record: dict[str, Any]) -> bool:
    return record.get("state") != "collected"


def never_uploaded(record: dict[str, Any]) -> bool:
    """Whether the journal's file never reached the server (a run stopped or refused before its upload):
    no batch holds its requests, and nothing on the server is there to cancel."""
    return record.get("state") == "preparing" and not record.get("input_file_id") and not record.get("batch_id")


def remove_journal(cache_dir: Path, record: dict[str, Any]) -> None:
    if not isinstance(record.get("id"), str) or not _JOURNAL_ID.fullmatch(record["id"]):
        raise BadInputError(f"batch journal id {record.get('id')!r}: not a journal id")  # never a path
    (journal_dir(cache_dir) / f"{record['id']}.json").unlink(missing_ok=True)


def journal_matches(record: dict[str, Any], backend: Any) -> bool:
    """Whether the journal's batches live on this backend: the same server and the same key variable."""
    return (getattr(backend, "name", None) == "openai" and record["base_url"] == _public(backend)
            and record["api_key_env"] == backend.options.api_key_env)


def skipped_message(record: dict[str, Any], backend: Any) -> str:
    where = f"{_public(backend)} with key variable {backend.options.api_key_env}" \
        if getattr(backend, "name", None) == "openai" else backend.label
    return (f"skipped batch journal {record['id']}: its batch is on {record['base_url']} with key variable "
            f"{record['api_key_env']}, not on {where}; it was not contacted")


def skip_foreign(records: list[dict[str, Any]], backend: Any, warn: Callable[[dict[str, Any]], bool] = is_live,
                 ) -> list[dict[str, Any]]:
    """The journals of this backend; each other one that `warn` picks is named in a GasusWarning."""
    mine = []
    for record in records:
        if journal_matches(record, backend):
            mine.append(record)
        elif warn(record):
            warnings.warn(skipped_message(record, backend), GasusWarning, stacklevel=2)
    return mine


def _on_disk(cache_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The record's journal as another run may have written it since this one read it ({} when gone
    or unreadable). Only its own file is read: runs poll often, and journals can be large."""
    ident = record.get("id")
    if not isinstance(ident, str) or not _JOURNAL_ID.fullmatch(ident):
        return {}
    current, problem = _read_journal(journal_dir(cache_dir) / f"{ident}.json")
    return current if problem is None else {}


def _read_journal(path: Path) -> tuple[Any, str | None]:
    """A journal file's record and what makes it unusable (None when nothing does)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None, "not JSON"  # never written whole (the rename is atomic): a crafted or foreign file
    return record, journal_problem(record, path.stem)


def _public(backend: Any) -> str:
    from ..backends.openai import public_url

    return public_url(backend.base_url)


def live_journals(cache_dir: Path, ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The journals of batches not yet collected (or those named, by journal or batch id)."""
    wanted = set(ids)
    records = load_journals(cache_dir)
    if wanted:
        found = [r for r in records if r["id"] in wanted or r.get("batch_id") in wanted]
        missing = wanted - {r["id"] for r in found} - {r.get("batch_id") for r in found}
        if missing:
            raise BadInputError(f"no batch {', '.join(sorted(missing))} in {journal_dir(cache_dir)}")
        return found
    return [r for r in records if is_live(r)]
