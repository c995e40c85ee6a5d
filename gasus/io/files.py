"""What a file is (its kind by suffix, its compression) and its bytes and text, with read errors as one line."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import BadInputError, GasusError, MissingDependencyError

# One table tells the reader and the writer what a file is, whatever the suffix's case.
_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}
# A compression suffix after the data suffix (data.jsonl.gz): the file is decompressed as it is read.
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


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
