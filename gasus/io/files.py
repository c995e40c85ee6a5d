"""What a file is (its kind by suffix, its compression) and its bytes and text, with read errors as one line."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadInputError, MissingDependencyError

# One table tells the reader and the writer what a file is, whatever the suffix's case.
_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}
# A compression suffix after the data suffix (data.jsonl.gz): the file is decompressed whole when read.
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
    with _reading(path):
        data = path.read_bytes()
    if compression(path):
        data = decompress(path, data)
    return data


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadInputError(
            f"{path}: not UTF-8 text: undecodable byte 0x{data[exc.start]:02x} at line "
            f"{line} (byte offset {exc.start})"
        ) from None


def _zstd_decompress(data: bytes) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError("zstandard", "Reading a .zst file") from None
    parts = []
    while data:  # one frame per pass: concatenated frames are one stream, as the zstd tool reads them
        frame = zstandard.ZstdDecompressor().decompressobj()
        parts.append(frame.decompress(data))
        if not frame.eof:
            raise EOFError("compressed data ended before the end of its frame")
        data = frame.unused_data
    return b"".join(parts)


def decompress(path: Path, data: bytes) -> bytes:
    """The bytes of a compressed file, by its suffix; a corrupt or truncated file is a one-line error."""
    import bz2
    import gzip
    import lzma

    kind = compression(path)
    try:
        if kind == "gzip":
            return gzip.decompress(data)
        if kind == "bz2":
            return bz2.decompress(data)
        if kind == "xz":
            return lzma.decompress(data)
        return _zstd_decompress(data)
    except MissingDependencyError:
        raise
    except Exception as exc:  # each format raises its own types (OSError, EOFError, LZMAError, ZstdError)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{path}: not a readable {kind} file: {detail}") from None


def _read_text(path: Path) -> str:
    return _decode(_read_bytes(path), path)
