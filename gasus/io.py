"""Reading datasets in the layouts people keep them in, and writing files atomically."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import functools
import gc
import hashlib
import io
import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from .errors import BadInputError, GasusError, MissingDependencyError, OutputConflictError
from .records import Example, no_floats

T = TypeVar("T")

FORMATS = ("alpaca", "dolly")
# A guard on how many rows a dataset may hold: a few kilobytes of dictionary-encoded Parquet can
# hold millions of rows and take gigabytes once read. 0 lifts it.
DEFAULT_MAX_ROWS = 1_000_000
PARQUET_BATCH_ROWS = 10_000
_FORMAT_FIELDS = {
    "alpaca": ("instruction", "input", "output"),
    "dolly": ("instruction", "context", "response"),
}
# One table tells the reader and the writer what a file is, whatever the suffix's case.
_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}
# A compression suffix after the data suffix (data.jsonl.gz): the file is decompressed as it is read.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
# Characters str.splitlines() breaks at that JSON allows raw inside a string; written escaped.
_LINE_BREAKS_IN_STRINGS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks of 1 MiB (model files run to gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compression(path: str | Path) -> str | None:
    """gzip, bz2, xz or zstd by the file's last suffix (case-insensitive); None for a plain file."""
    return COMPRESSIONS.get(Path(path).suffix.lower())


def file_kind(path: str | Path) -> str | None:
    """json, jsonl, parquet or csv by the file's suffix (case-insensitive), looking past a compression
    suffix (data.jsonl.gz is jsonl); None if unknown."""
    path = Path(path)
    if compression(path):
        path = path.with_suffix("")
    return _SUFFIXES.get(path.suffix.lower())


@dataclass(frozen=True)
class FieldMap:
    """Which source fields hold the instruction, the input and the response."""

    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"

    @classmethod
    def for_format(cls, fmt: str = "alpaca", *, instruction: str | None = None,
                   input: str | None = None, output: str | None = None) -> FieldMap:
        if fmt not in _FORMAT_FIELDS:
            raise BadInputError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
        base = _FORMAT_FIELDS[fmt]
        return cls(instruction or base[0], input or base[1], output or base[2])


# ---------------------------------------------------------------- reading raw rows


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """An OSError met reading `path`, as a one-line error."""
    try:
        yield
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read: {exc.strerror}") from None


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when its suffix says it is compressed (.gz, .bz2, .xz, .zst)."""
    if compression(path):
        return b"".join(_decompressed_blocks(path))
    with _reading(path):
        return path.read_bytes()


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadInputError(
            f"{path}: not UTF-8 text: undecodable byte 0x{data[exc.start]:02x} at line "
            f"{line} (byte offset {exc.start})"
        ) from None


# Text compresses 3 to 15 times; a few kilobytes of repeated bytes can decompress to gigabytes. A
# compressed input may grow to this many times its own size (and to 1 MiB whatever its size) before
# it is refused, checked as it is decompressed. 0 lifts it.
DEFAULT_MAX_EXPANSION = 200
_EXPANSION_FLOOR = 2**20
_max_expansion: contextvars.ContextVar[int] = contextvars.ContextVar("max_expansion", default=DEFAULT_MAX_EXPANSION)
_DECOMPRESSED_BLOCK = 2**20  # bytes of decompressed output taken at a time
_ZSTD_PIECE = 2**10  # compressed bytes fed at a time: a zstd block of one repeated byte grows ~30,000 times


def max_expansion() -> int:
    """How many times its own size a compressed input may decompress to (0: no limit)."""
    return _max_expansion.get()


def set_max_expansion(times: int) -> None:
    """Set the limit max_expansion() gives, for what this context reads from now on (the CLI's
    --max-expansion, a run's [data] max_expansion)."""
    if times < 0:
        raise BadInputError(f"--max-expansion must be at least 0, got {times}")
    _max_expansion.set(times)


def _zstd_blocks(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError("zstandard", "Reading a .zst file") from None
    frame, started = zstandard.ZstdDecompressor().decompressobj(), False
    # Fed a little at a time, so no single call makes more than tens of MB whatever the data says;
    # one frame after another: concatenated frames are one stream, as the zstd tool reads them.
    for piece in iter(lambda: handle.read(_ZSTD_PIECE), b""):
        while piece:
            started = True
            out = frame.decompress(piece)
            if out:
                yield out
            if not frame.eof:
                break
            piece = frame.unused_data
            frame, started = zstandard.ZstdDecompressor().decompressobj(), False
    if started:
        raise EOFError("compressed data ended before the end of its frame")


def _stream_blocks(handle: IO[bytes], new: Callable[[], Any]) -> Iterator[bytes]:
    """A bz2 or xz file's bytes, at most a block per call, one stream after another (as bz2.decompress
    and lzma.decompress read concatenated streams), with their error for a truncated one."""
    decompressor, started, pending = new(), False, b""
    while True:
        if decompressor.eof:
            decompressor, started, pending = new(), False, decompressor.unused_data
        if not pending and decompressor.needs_input:
            pending = handle.read(_DECOMPRESSED_BLOCK)
            if not pending:
                break
        started = started or bool(pending)
        out = decompressor.decompress(pending, _DECOMPRESSED_BLOCK)
        pending = b""
        if out:
            yield out
    if started:
        raise EOFError("Compressed data ended before the end-of-stream marker was reached")


def _decompressed_blocks(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of a compressed file, a block at a time, by its suffix. A corrupt or
    truncated file, or one that grows past max_expansion() times its size, is a one-line error."""
    import bz2
    import gzip
    import lzma

    kind = compression(path)
    with _reading(path):
        handle = open(path, "rb")
        size = os.fstat(handle.fileno()).st_size
    times = max_expansion()
    cap = max(times * size, _EXPANSION_FLOOR) if times else 0
    total = 0
    with handle:
        try:
            if kind == "zstd":
                blocks = _zstd_blocks(handle)
            elif kind == "gzip":
                reader = gzip.GzipFile(fileobj=handle)
                blocks = iter(lambda: reader.read(_DECOMPRESSED_BLOCK), b"")
            else:
                blocks = _stream_blocks(handle, bz2.BZ2Decompressor if kind == "bz2" else lzma.LZMADecompressor)
            for block in blocks:
                total += len(block)
                if cap and total > cap:
                    raise BadInputError(
                        f"{path}: decompresses to more than {cap:,} bytes, over --max-expansion {times} times "
                        f"its {size:,} bytes; give a larger --max-expansion (0: no limit) to read it")
                yield block
        except GasusError:
            raise
        except Exception as exc:  # each format raises its own types (OSError, EOFError, LZMAError, ZstdError)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInputError(f"{path}: not a readable {kind} file: {detail}") from None


def _read_text(path: Path) -> str:
    return _decode(_read_bytes(path), path)


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


def _rows_from_json(path: Path) -> Iterator[tuple[str, dict]]:
    data = read_json(path)
    if isinstance(data, dict):
        # {"data": [...]} and similar single-key wrappers are common; a bare object is not a dataset.
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(data) == 1 and lists:
            data = lists[0]
        else:
            raise BadInputError(f"{path}: expected a JSON array of records at the top level, got an object")
    if not isinstance(data, list):
        raise BadInputError(f"{path}: expected a JSON array of records at the top level, got {_type_name(data)}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise BadInputError(f"{path}: row {i}: expected an object, got {_type_name(row)}")
    return _handed_over(data)


def _handed_over(data: list[dict]) -> Iterator[tuple[str, dict]]:
    """The rows of a parsed array, each let go of once taken: what a reader keeps of a row (its strings)
    stays, the row's own dict does not wait for the last row (a million of them weigh hundreds of MB)."""
    for i in range(len(data)):
        row, data[i] = data[i], None
        yield f"row {i}", row


def _rows_from_jsonl(path: Path, max_rows: int = 0) -> list[tuple[str, dict]]:
    """The rows, refused as soon as there are more than max_rows (0: no limit), not once all are read."""
    rows = []
    for lineno, row in iter_jsonl_objects(path):
        if max_rows and len(rows) == max_rows:
            raise _too_many_rows(path, max_rows + 1, max_rows)
        rows.append((f"line {lineno}", row))
    return rows


def count_lines(path: str | Path) -> int:
    """How many non-blank lines a JSON Lines file holds, counted as it is read (decompressed as it is
    read when compressed), without parsing them."""
    count = 0
    for block in _line_blocks(Path(path)):
        count += sum(1 for line in block.split(b"\n") if line.strip())
    return count


def _rows_from_csv(path: Path) -> list[tuple[str, dict]]:
    text = _read_text(path)
    # csv refuses a cell over 131,072 characters by default; no cell can be longer than the file, which is
    # already in memory. The limit is the process's: raised only while this file is read, then put back.
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(max(limit, len(text)))
        reader = csv.DictReader(io.StringIO(text, newline=""))  # csv splits rows itself
        rows = [(f"line {reader.line_num}", dict(row)) for row in reader]
    except csv.Error as exc:
        raise BadInputError(f"{path}: invalid CSV: {exc}") from None
    finally:
        csv.field_size_limit(limit)
    for where, row in rows:
        if None in row:
            raise BadInputError(f"{path}: {where}: more cells than header columns")
    return rows


def _too_many_rows(source: str | Path, rows: int, max_rows: int) -> BadInputError:
    return BadInputError(f"{source}: holds {rows:,} rows or more, over --max-rows {max_rows:,}; "
                         "give a larger --max-rows (0: no limit) to read them all")


def _rows_from_parquet(path: Path, max_rows: int = 0) -> Iterator[tuple[str, dict]]:
    """Rows in record batches, so only one batch is ever held as Arrow data; the row count is
    checked against max_rows from the file's metadata before any row is read."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("pyarrow", "Reading Parquet") from None
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise BadInputError(f"{path}: not a readable Parquet file: {exc}") from None
    if max_rows and parquet.metadata.num_rows > max_rows:
        raise _too_many_rows(path, parquet.metadata.num_rows, max_rows)
    return _parquet_batches(path, parquet)


def _parquet_batches(path: Path, parquet: Any) -> Iterator[tuple[str, dict]]:
    i = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                yield f"row {i}", row
                i += 1
    except Exception as exc:
        raise BadInputError(f"{path}: not a readable Parquet file: {exc}") from None


def _rows_from_hub(name: str, split: str, max_rows: int = 0) -> Iterator[tuple[str, dict]]:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("datasets", "Loading a Hugging Face hub dataset") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, gated: all surface as various types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(
            f"{name}: cannot load the Hugging Face hub dataset (offline, or no such dataset?): {first}"
        ) from None
    if max_rows and len(ds) > max_rows:
        raise _too_many_rows(name, len(ds), max_rows)
    return ((f"row {i}", dict(row)) for i, row in enumerate(ds))


def looks_like_hub_name(source: str) -> bool:
    """'owner/name' that is not a file here and has no data-file suffix."""
    if source.startswith("hf:"):
        return True
    p = Path(source)
    return (not p.exists() and file_kind(p) is None and source.count("/") == 1
            and not source.startswith((".", "/")))


def read_rows(source: str | Path, *, split: str = "train", max_rows: int = 0) -> Iterable[tuple[str, dict]]:
    """Raw rows of a dataset file or hub dataset, each with where it came from ("row 3", "line 4").
    Parquet is streamed in record batches and refused up front when it holds more than max_rows."""
    source_str = str(source)
    if looks_like_hub_name(source_str):
        name = source_str[3:] if source_str.startswith("hf:") else source_str
        return _rows_from_hub(name, split, max_rows)
    path = Path(source_str)
    kind = file_kind(path)
    if kind is None:
        if not path.exists():
            raise BadInputError(f"{path}: no such file")
        # Unknown suffix: sniff, JSON array first then JSON Lines.
        text = _read_text(path).lstrip()
        kind = "json" if text.startswith("[") else "jsonl"
    if kind == "parquet":
        if compression(path):
            raise BadInputError(f"{path}: Parquet compresses its own columns; give the .parquet file itself")
        return _rows_from_parquet(path, max_rows)
    if kind == "jsonl":
        return _rows_from_jsonl(path, max_rows)
    reader = {"json": _rows_from_json, "csv": _rows_from_csv}[kind]
    return reader(path)


def _field(row: dict, name: str, where: str, source: str, *, required: bool) -> str:
    value = row.get(name)
    if value is None:
        if required:
            raise BadInputError(f"{source}: {where}: missing required field '{name}'")
        return ""
    if isinstance(value, float) and value != value:  # NaN from CSV/Parquet empties
        return ""
    if not isinstance(value, str):
        raise BadInputError(f"{source}: {where}: field '{name}' must be a string, got {_type_name(value)}")
    return value


# Chat layouts: OpenAI `messages` ({"role", "content"}) and ShareGPT `conversations` ({"from", "value"}).
_CHAT_LAYOUTS = {"messages": ("role", "content"), "conversations": ("from", "value")}
_CHAT_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


def _chat_text(value: Any, where: str) -> str:
    """A turn's text: a string, or OpenAI's list of content parts whose text parts are joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                       and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise BadInputError(f"{where}: a turn's text must be a string or a list of text parts, got {_type_name(value)}")


def chat_triplet(row: dict, key: str, where: str) -> tuple[str, str, str]:
    """(instruction, input, output) of a single-turn chat row: the user turn, the system text (kept as
    context), the assistant's reply. A conversation of more turns is an error naming the row: the
    paper's grading prompt shows one instruction and one response."""
    role_key, text_key = _CHAT_LAYOUTS[key]
    turns = row[key]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise BadInputError(f"{where}: '{key}' must be a list of objects")
    system, rest = [], []
    for n, turn in enumerate(turns):
        role = _CHAT_ROLES.get(str(turn.get(role_key)).lower())
        if role is None:
            raise BadInputError(f"{where}: {key}[{n}] has {role_key} {json.dumps(turn.get(role_key))}; "
                                f"expected one of {', '.join(_CHAT_ROLES)}")
        text = _chat_text(turn.get(text_key), f"{where}: {key}[{n}]")
        if role == "system" and not rest:
            system.append(text)
        else:
            rest.append((role, text))
    if [role for role, _ in rest] != ["user", "assistant"]:
        users = sum(1 for role, _ in rest if role == "user")
        if users > 1:
            raise BadInputError(f"{where}: a multi-turn conversation ({users} user turns); gasus reads single-turn "
                                "rows (one user turn, one assistant reply), as the paper's prompt is single-turn")
        raise BadInputError(f"{where}: '{key}' must hold one user turn and then one assistant reply "
                            "(after any system text)")
    return rest[0][1], "\n\n".join(system), rest[1][1]


def count_rows(source: str | Path, *, split: str = "train", max_rows: int = DEFAULT_MAX_ROWS) -> int:
    """How many rows a dataset holds; Parquet answers from its metadata without reading a row."""
    rows = read_rows(source, split=split, max_rows=max_rows)
    if isinstance(rows, list):
        return len(rows)
    if file_kind(source) == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(source).metadata.num_rows
    return sum(1 for _ in rows)


@in_bulk
def load_examples(source: str | Path, *, fields: FieldMap | None = None, split: str = "train",
                  max_rows: int = DEFAULT_MAX_ROWS, keep: Container[int] | None = None) -> list[Example]:
    """The examples of a dataset, in order; the input field may be absent (it counts as "").
    More than max_rows rows (0: no limit) is an error. With `keep`, every row is checked but only
    those whose index it holds are returned, so memory follows what the caller needs."""
    if max_rows < 0:
        raise BadInputError("--max-rows must be at least 0")
    fields = fields or FieldMap()
    used = {fields.instruction, fields.input, fields.output}
    examples, total = [], 0
    for index, (where, row) in enumerate(read_rows(source, split=split, max_rows=max_rows)):
        if max_rows and index == max_rows:
            raise _too_many_rows(source, index + 1, max_rows)
        chat = next((k for k in _CHAT_LAYOUTS if k in row), None) if fields.instruction not in row else None
        if chat:
            instruction, input_, output = chat_triplet(row, chat, f"{source}: {where}")
        else:
            instruction, input_, output = row.get(fields.instruction), row.get(fields.input), row.get(fields.output)
            if type(instruction) is not str or type(output) is not str or type(input_) not in (str, type(None)):
                instruction = _field(row, fields.instruction, where, str(source), required=True)
                input_ = _field(row, fields.input, where, str(source), required=False)
                output = _field(row, fields.output, where, str(source), required=True)
            elif input_ is None:
                input_ = ""
        if keep is None or index in keep:
            extra = ({} if row.keys() <= used else
                     {k: v for k, v in row.items() if k not in used and k != chat})
            examples.append(Example(index, instruction, input_, output, extra))
        total = index + 1
    if not total:
        raise BadInputError(f"{source}: the dataset has no examples")
    return examples


# ---------------------------------------------------------------- writing atomically


def _overlap(a: Path, b: Path) -> bool:
    """Whether two paths name one file, or one lies inside the other (a directory), after following
    symlinks; or they are one inode (a hard link)."""
    real_a, real_b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    if real_a.is_relative_to(real_b) or real_b.is_relative_to(real_a):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None] | None = None,
                  *, protected_dir: str | Path | None = None) -> None:
    """Refuse, before anything is written, an output that would replace one of the inputs, that
    another output also names, that lies inside `protected_dir` (the cache), or whose suffix says
    compressed (gasus writes plain files).

    Keys are what the user called each path (an option or argument name); None values are skipped.
    """
    outs = [(label, Path(p)) for label, p in outputs.items() if p is not None]
    ins = [(label, Path(p)) for label, p in (inputs or {}).items() if p is not None]
    protected = Path(os.path.realpath(protected_dir)) if protected_dir is not None else None
    for i, (label, out) in enumerate(outs):
        kind = compression(out)
        if kind is not None:  # inputs are read by this suffix; an output under it would be plain text
            raise BadInputError(f"{out}: {label} names a {kind} file, but gasus writes uncompressed files; "
                                f"drop the {out.suffix} suffix (and compress the file afterwards)")
        for other_label, other in ins:
            if _overlap(out, other):
                raise OutputConflictError(f"{out}: {label} would overwrite the input {other_label} ({other}); "
                                          "choose another path")
        for other_label, other in outs[:i]:
            if _overlap(out, other):
                raise OutputConflictError(f"{out}: {label} and {other_label} ({other}) name the same file; "
                                          "give each output its own path")
        if protected is not None and Path(os.path.realpath(out)).is_relative_to(protected):
            raise OutputConflictError(f"{out}: {label} is inside the cache directory {protected_dir}; "
                                      "choose a file outside it")


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask would set it
    for a moment, under the feet of other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A file handle whose content appears at `path` only if the block finishes.

    The data goes to a temporary file in the same directory, is flushed to disk and
    renamed over the target, so an interrupted command never leaves half a file.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
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
