"""Writing files atomically: JSON, JSON Lines, and JSON arrays written by block."""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import BadInputError
from ..records import no_floats
from .files import file_kind
from .guard import current_umask

# Characters str.splitlines() breaks at that JSON allows raw inside a string; written escaped.
_LINE_BREAKS_IN_STRINGS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


# Outputs whose missing parent directories atomic_write creates: a command names them once every check
# of its paths has passed (cli.common.check_paths), so a refused command leaves no new directory behind.
_makes_dirs_for: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("makes_dirs_for",
                                                                                  default=frozenset())


def make_dirs_for(paths: Iterable[str | Path]) -> None:
    """Let atomic_write create the missing parent directories of these outputs, for the current context
    (a command's run): each was checked (not an input, not in the cache, under a writable directory)."""
    _makes_dirs_for.set(_makes_dirs_for.get() | {os.path.abspath(p) for p in paths})


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A file handle whose content appears at `path` only if the block finishes.

    The data goes to a temporary file in the same directory, is flushed to disk and
    renamed over the target, so an interrupted command never leaves half a file.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists() and os.path.abspath(path) in _makes_dirs_for.get():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"{path}: cannot create the directory {parent}: {exc.strerror}") from None
    if not parent.is_dir():
        raise BadInputError(f"{path}: the directory {parent} does not exist")
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory, not a file")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the user's umask
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise BadInputError(f"{path}: cannot write: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_line(value: Any) -> str:
    """One line of JSON; line breaks other readers split at are escaped (they occur only in strings)."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in _LINE_BREAKS_IN_STRINGS.items():
        text = text.replace(char, escaped)
    return text


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSON Lines atomically; returns how many were written."""
    n = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(_json_line(record) + "\n")
            n += 1
    return n


def write_json(path: str | Path, value: Any, *, indent: int | None = 2) -> None:
    with atomic_write(path) as handle:
        json.dump(value, handle, ensure_ascii=False, indent=indent)
        handle.write("\n")


ARRAY_BLOCK = 4096  # records per orjson call of write_json_array


def _indented_item(item: Any) -> bytes:
    """One element of a list as json.dump(..., indent=2, ensure_ascii=False) writes it one level deep,
    by json itself (the pure-Python indenting encoder) with its lines moved in one level."""
    return json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ").encode("utf-8")


def _indented_items(items: list[Any]) -> bytes:
    """Elements of a list as json.dump(..., indent=2, ensure_ascii=False) writes them one level deep,
    joined by ",\n  ". orjson writes the same bytes for values without floats (it writes 1e+16 as 1e16
    and NaN as null), ten times faster; a block holding a float, an integer beyond 64 bits or a lone
    surrogate goes through json, item by item."""
    import orjson

    if no_floats(items):
        try:
            return orjson.dumps(items, option=orjson.OPT_INDENT_2)[4:-2]  # without the block's "[\n  " and "\n]"
        except orjson.JSONEncodeError:
            pass
    return b",\n  ".join(_indented_item(item) for item in items)


def write_json_array(path: str | Path, records: Iterable[Any]) -> int:
    """Records as one indented JSON array (the Alpaca layout), written as they come, in blocks, and
    atomically: byte for byte what write_json writes for their list; returns how many were written."""
    n = 0
    records = iter(records)
    with atomic_write(path, "wb") as handle:
        while block := list(itertools.islice(records, ARRAY_BLOCK)):
            handle.write((b"[\n  " if n == 0 else b",\n  ") + _indented_items(block))
            n += len(block)
        handle.write(b"\n]\n" if n else b"[]\n")
    return n


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """JSON Lines when the name ends in .jsonl or .ndjson (any case), else one JSON array (the Alpaca layout).
    Records may come from a generator: they are written as they come."""
    if file_kind(path) == "jsonl":
        return write_jsonl(path, records)
    return write_json_array(path, records)
