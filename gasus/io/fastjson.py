"""JSON documents and JSON Lines read through orjson wherever it reads what json would, and json
elsewhere; the collector paused while records are built by the million."""

from __future__ import annotations

import functools
import gc
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import BadInputError
from .files import _decode, _decompressed_blocks, _read_bytes, _reading, compression

T = TypeVar("T")


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int = 0) -> BadInputError:
    return BadInputError(
        f"{path}: invalid JSON at line {exc.lineno + line_offset}, column {exc.colno}: {exc.msg}"
    )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> str | None:
    """The first unpaired surrogate (from an escape like \\ud800) in a string, key or nested value."""
    stack = [value]
    while stack:  # a loop, not recursion: the value may be nested as deep as the parser allows
        item = stack.pop()
        if isinstance(item, str):
            match = _SURROGATE.search(item)
            if match:
                return match.group()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _loads(text: str, path: Path, line: int | None = None) -> Any:
    """json.loads with one-line errors: bad syntax, nesting too deep for the parser, and strings
    that are not text (a lone surrogate escape cannot be written as UTF-8 or hashed)."""
    where = f"{path}: line {line}" if line is not None else f"{path}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc, line_offset=(line or 1) - 1) from None
    except RecursionError:
        raise BadInputError(f"{where}: JSON nested too deeply") from None
    if "\\u" in text and re.search(r"\\u[dD][89a-fA-F]", text):
        found = _lone_surrogate(value)
        if found:
            raise BadInputError(f"{where}: a string holds a lone surrogate escape (\\u{ord(found):04x}), "
                                "which is not text")
    return value


# orjson reads JSON several times faster than json, and reads what it accepts as json does, except
# integers beyond 64 bits, which it reads as floats: where the bytes may hold a number of 19 digits
# or more, a value with a float that large is read again by json. Anything orjson refuses (bad
# syntax, NaN, 1e400, lone surrogates, deep nesting, bytes that are not UTF-8) goes to json too,
# which reads it or raises the error it always raised.
# A number starts after one of  [ , : - or whitespace; a hex id's digits follow a letter or a quote.
_NUMBER_SHAPES = bytes(48 if 48 <= b <= 57 else 120 if b in b" \t\r\n[,:-" else 32 for b in range(256))
_LONG_NUMBER = b"x" + b"0" * 19
_SCAN_BLOCK = 1 << 24


def _long_number(data: bytes) -> bool:
    """Whether the bytes may hold a number of 19 digits or more (scanned in blocks: no copy of a
    large file). Only where a 19-digit run follows a character that can come before a number."""
    if data[:24].lstrip()[:1] in b"-0123456789":  # a bare number, or nothing
        return True
    overlap = len(_LONG_NUMBER) - 1
    for start in range(0, len(data), _SCAN_BLOCK):
        if data[start:start + _SCAN_BLOCK + overlap].translate(_NUMBER_SHAPES).find(_LONG_NUMBER) >= 0:
            return True
    return False


def _big_float(value: Any) -> bool:
    """Whether a parsed value holds a float of 2**63 or more, which orjson may have read from an integer."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is float:
            if abs(item) >= 9.2e18:
                return True
        elif type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


def in_bulk(func: Callable[..., T]) -> Callable[..., T]:
    """Runs `func` with Python's cyclic garbage collector paused: for the stages that build records by
    the million (rows, examples, grades, scores). The collector is started by allocations, and each
    full pass walks every live container, so a million-row select paid for dozens of walks over a
    growing heap (5 of its 18 s). These records hold no reference cycles, so the pause leaves no
    garbage behind; the collector runs as before once the outermost paused call returns."""

    @functools.wraps(func)
    def paused(*args: Any, **kwargs: Any) -> T:
        if not gc.isenabled():  # paused already (a caller is in bulk too), or by the application
            return func(*args, **kwargs)
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def _orjson_loads(data: str | bytes | memoryview, long_numbers: bool) -> tuple[bool, Any]:
    """(True, value) where orjson reads the bytes as json would, else (False, None)."""
    import orjson

    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False, None
    if long_numbers and _big_float(value):
        return False, None
    return True, value


def loads_json(text: str | bytes) -> Any:
    """json.loads, through orjson wherever orjson reads the same value (small documents: the value is
    checked for floats orjson may have read from big integers); raises ValueError as json.loads does."""
    ok, value = _orjson_loads(text, True)
    return value if ok else json.loads(text)


def _bom(data: bytes) -> int:
    return 3 if data.startswith(b"\xef\xbb\xbf") else 0


def read_json(path: str | Path) -> Any:
    """One JSON document from a file, with errors that name the file, line and column."""
    path = Path(path)
    data = _read_bytes(path)
    ok, value = _orjson_loads(memoryview(data)[_bom(data):], _long_number(data))
    return value if ok else _loads(_decode(data, path), path)


JSONL_BLOCK = 16 * 2**20  # bytes of a JSON Lines file read at a time


def _line_blocks(path: Path) -> Iterator[bytes]:
    """A file's bytes in blocks of whole lines (each but the last ends with "\\n"), read as they are
    needed: a million-line scores file is never held whole, nor all of a compressed one."""
    if compression(path):
        chunks = _joined(_decompressed_blocks(path), JSONL_BLOCK)
    else:
        with _reading(path):
            handle = open(path, "rb")
        chunks = _plain_blocks(path, handle)
    rest = b""
    for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:  # a line longer than a block: read on
            rest += chunk
            continue
        yield rest + chunk[:end + 1]
        rest = chunk[end + 1:]
    if rest:
        yield rest


def _plain_blocks(path: Path, handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while True:
            with _reading(path):
                chunk = handle.read(JSONL_BLOCK)
            if not chunk:
                return
            yield chunk


def _joined(blocks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Small blocks gathered into blocks of at least `size` bytes (the last may be shorter)."""
    parts, held = [], 0
    for block in blocks:
        parts.append(block)
        held += len(block)
        if held >= size:
            yield b"".join(parts)
            parts, held = [], 0
    if parts:
        yield b"".join(parts)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON Lines file, read a block at a time.

    Lines end at "\\n" only (JSON Lines' rule): U+2028, U+2029 and U+0085 may stand raw in a string.
    """
    path = Path(path)
    checked = False  # whether the whole file is known to be UTF-8
    lineno = 0
    for block_number, data in enumerate(_line_blocks(path)):
        long_numbers = _long_number(data)
        start, size, find = _bom(data) if block_number == 0 else 0, len(data), data.find
        while start < size:
            end = find(b"\n", start)
            end = size if end < 0 else end
            line, start, lineno = data[start:end], end + 1, lineno + 1
            if not line or line.isspace():  # ASCII whitespace; other blanks (U+00A0...) are found below
                continue
            ok, value = _orjson_loads(line, long_numbers)
            if ok:
                yield lineno, value
                continue
            if not checked:  # a file that is not UTF-8 is refused whole, with the first bad byte
                _decode(_read_bytes(path), path)
                checked = True
            text = line.decode("utf-8")
            if text.strip():
                yield lineno, _loads(text, path, lineno)


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, each required to be a JSON object."""
    for lineno, value in iter_jsonl(path):
        if not isinstance(value, dict):
            raise BadInputError(f"{path}: line {lineno}: expected a JSON object, got {_type_name(value)}")
        yield lineno, value


@in_bulk
def read_jsonl_objects(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a JSON Lines file, each required to be an object."""
    return [row for _, row in iter_jsonl_objects(path)]


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
