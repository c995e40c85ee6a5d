"""Inputs people have: single-turn OpenAI `messages` and ShareGPT `conversations` rows, and gzip, bz2,
xz and zstd files read by suffix."""

from __future__ import annotations

import bz2
import contextvars
import gzip
import json
import lzma
import os
import subprocess
import sys

import pytest
import zstandard

from gasus.io import load_examples
from tests.conftest import FIXTURES, ROOT, run_cli

OPENAI = {"id": "a1", "messages": [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name a prime number."},
    {"role": "assistant", "content": [{"type": "text", "text": "Seven"}, {"type": "text", "text": "."}]}]}
SHAREGPT = {"conversations": [{"from": "human", "value": "What is 2 + 2?"}, {"from": "gpt", "value": "4"}]}
COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": lambda data: zstandard.ZstdCompressor().compress(data)}


def test_io_reads_single_turn_chat_rows(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(OPENAI) + "\n" + json.dumps(SHAREGPT) + "\n")
    a, b = load_examples(path)
    assert (a.instruction, a.input, a.output, a.extra) == ("Name a prime number.", "You are a terse assistant.",
                                                           "Seven.", {"id": "a1"})
    assert (b.instruction, b.input, b.output, b.extra) == ("What is 2 + 2?", "", "4", {})


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                   {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Well."}]},
     "line 2: a multi-turn conversation (2 user turns); gasus reads single-turn rows (one user turn, one assistant "
     "reply), as the paper's prompt is single-turn"),
    ({"conversations": [{"from": "human", "value": "Hi"}]},
     "line 2: 'conversations' must hold one user turn and then one assistant reply (after any system text)"),
    ({"conversations": [{"from": "bot", "value": "Hi"}]},
     "line 2: conversations[0] has from \"bot\"; expected one of system, user, human, assistant, gpt"),
])
def test_io_bad_chat_row_is_one_line_error_naming_the_row(tmp_path, row, message):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(SHAREGPT) + "\n" + json.dumps(row) + "\n")
    result = run_cli("select", str(path), "--random", "1", "-o", str(tmp_path / "out.json"))
    assert (result.exit_code, result.output) == (2, f"Error: {path}: {message}\n")


@pytest.mark.parametrize("suffix", list(COMPRESS))
def test_io_reads_compressed_files_by_suffix(tmp_path, suffix):
    raw = (FIXTURES / "mini_alpaca.json").read_bytes()
    path = tmp_path / f"data.json{suffix}"
    path.write_bytes(COMPRESS[suffix](raw))
    assert [e.to_dict() for e in load_examples(path)] == json.loads(raw)
    lines = tmp_path / f"data.JSONL{suffix.upper()}"
    lines.write_bytes(COMPRESS[suffix](b"".join(json.dumps(r).encode() + b"\n" for r in json.loads(raw))))
    result = run_cli("select", str(lines), "--random", "3", "-o", str(tmp_path / "kept.json"))
    assert result.exit_code == 0, result.output
    assert "kept 3 of 40" in result.output


@pytest.mark.parametrize("suffix, detail", [
    (".gz", "not a readable gzip file: Compressed file ended before the end-of-stream marker was reached"),
    (".bz2", "not a readable bz2 file: Compressed data ended before the end-of-stream marker was reached"),
    (".xz", "not a readable xz file: Compressed data ended before the end-of-stream marker was reached"),
    (".zst", "not a readable zstd file: compressed data ended before the end of its frame"),
])
def test_io_corrupt_compressed_file_is_one_line_error(tmp_path, suffix, detail):
    path = tmp_path / f"data.jsonl{suffix}"
    path.write_bytes(COMPRESS[suffix]((FIXTURES / "mini_alpaca.json").read_bytes())[:-8])
    out = tmp_path / "kept.json"
    result = run_cli("select", str(path), "--random", "1", "-o", str(out))
    assert (result.exit_code, result.output) == (2, f"Error: {path}: {detail}\n")
    assert not out.exists()


def test_io_compressed_parquet_is_refused(tmp_path):
    path = tmp_path / "data.parquet.gz"
    path.write_bytes(gzip.compress(b"PAR1"))
    result = run_cli("select", str(path), "--random", "1", "-o", str(tmp_path / "kept.json"))
    assert (result.exit_code, result.output) == (
        2, f"Error: {path}: Parquet compresses its own columns; give the .parquet file itself\n")


def test_an_output_named_as_compressed_is_refused(tmp_path, mini_alpaca):
    """Inputs are decompressed by suffix, so an output named kept.json.gz written as plain text would
    be unreadable by gasus itself: refused before anything is written."""
    out = tmp_path / "kept.json.gz"
    result = run_cli("select", str(mini_alpaca), "--random", "3", "-o", str(out))
    assert (result.exit_code, result.output) == (
        2, f"Error: {out}: -o/--output names a gzip file, but gasus writes uncompressed files; "
           "drop the .gz suffix (and compress the file afterwards)\n")
    assert not out.exists()


def _bomb(path, size, line=b" " * 1023 + b"\n"):
    """`size` bytes of repeated `line`, compressed by the path's suffix a MiB at a time (the test never
    holds the whole of it)."""
    block = line * (2**20 // len(line))
    if path.suffix == ".zst":
        with open(path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
            for _ in range(size // len(block)):
                out.write(block)
        return path
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[path.suffix]
    with opener(path, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
    return path


def _expansion_error(path, times=200):
    size = path.stat().st_size
    return (f"Error: {path}: decompresses to more than {max(times * size, 2**20):,} bytes, over --max-expansion "
            f"{times} times its {size:,} bytes; give a larger --max-expansion (0: no limit) to read it\n")


@pytest.mark.parametrize("suffix", list(COMPRESS))
def test_decompression_bomb_is_refused_at_the_cap(tmp_path, suffix):
    """8 MiB of blank lines in a few KB: refused once the output passes 200 times the file's size (and
    1 MiB), with the limit named; a larger --max-expansion too; 0 lifts it (and the file holds no rows)."""
    path = _bomb(tmp_path / f"data.jsonl{suffix}", 8 * 2**20)
    out = tmp_path / "kept.json"
    result = run_cli("select", str(path), "--random", "1", "-o", str(out))
    assert (result.exit_code, result.output) == (2, _expansion_error(path))
    result = run_cli("select", str(path), "--random", "1", "-o", str(out), "--max-expansion", "7")
    assert (result.exit_code, result.output) == (2, _expansion_error(path, 7))
    result = run_cli("select", str(path), "--random", "1", "-o", str(out), "--max-expansion", "0")
    assert (result.exit_code, result.output) == (2, "Error: --random 1 asks for more examples than the dataset has (0)\n")
    assert not out.exists()
    whole = tmp_path / f"data.json{suffix}"  # a JSON array is read whole: refused the same way
    path.rename(whole)
    result = run_cli("check", str(whole), "--against", "none", "--self")
    assert (result.exit_code, result.output) == (2, _expansion_error(whole))


def test_decompression_bomb_is_refused_with_little_memory(tmp_path):
    """The review's bomb: a few KB of zstd holding hundreds of MB was decompressed whole before anything
    was looked at. Decompressed as a stream, it is refused at a few MB: the command's peak memory stays
    far below the 256 MiB the bomb holds."""
    path = _bomb(tmp_path / "bomb.jsonl.zst", 256 * 2**20)
    assert path.stat().st_size < 64 * 2**10
    command = [sys.executable, "-m", "gasus", "select", str(path), "--random", "1", "-o", str(tmp_path / "k.json")]
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
             "print(r.stderr, end='')")
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    status, peak_mb = map(int, done.stdout.splitlines()[0].split())
    assert (status, "\n".join(done.stdout.splitlines()[1:]) + "\n") == (2, _expansion_error(path))
    assert peak_mb < 200, f"peak {peak_mb} MB"


def test_max_rows_is_checked_as_rows_stream(tmp_path):
    """--max-rows stops a JSON Lines file (compressed or not) at the row past the limit: a bad line after
    it is never reached, and rows after it are never parsed."""
    rows = b"".join(json.dumps({"instruction": f"q{i}", "output": "a"}).encode() + b"\n" for i in range(12))
    for name, data in (("data.jsonl", rows + b"{not json\n"), ("data.jsonl.gz", gzip.compress(rows + b"{not json\n"))):
        path = tmp_path / name
        path.write_bytes(data)
        result = run_cli("select", str(path), "--random", "1", "-o", str(tmp_path / "k.json"), "--max-rows", "10")
        assert (result.exit_code, result.output) == (
            2, f"Error: {path}: holds 11 rows or more, over --max-rows 10; give a larger --max-rows (0: no limit) "
               "to read them all\n")


def test_cache_import_refuses_a_decompression_bomb(tmp_path):
    path = _bomb(tmp_path / "entries.jsonl.gz", 8 * 2**20)
    result = run_cli("cache", "import", str(path))
    assert (result.exit_code, result.output) == (2, _expansion_error(path))
    result = run_cli("cache", "import", str(path), "--max-expansion", "0")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"read 0 entries from {path}: 0 new, 0 already present")


def test_manifest_row_counts_refuse_a_decompression_bomb(tmp_path):
    """A run's manifest counts the rows of a compressed file as they stream, under the same cap."""
    from gasus.errors import BadInputError
    from gasus.io import set_max_expansion
    from gasus.manifest import file_record

    rows = b"".join(json.dumps({"instruction": f"q{i}", "output": "a"}).encode() + b"\n\n" for i in range(5))
    plain = tmp_path / "rows.jsonl.xz"
    plain.write_bytes(lzma.compress(rows))
    assert file_record(plain)["rows"] == 5
    path = _bomb(tmp_path / "bomb.jsonl.gz", 8 * 2**20)
    with pytest.raises(BadInputError) as error:
        file_record(path)
    assert f"Error: {error.value}\n" == _expansion_error(path)
    context = contextvars.copy_context()
    context.run(set_max_expansion, 0)
    assert context.run(file_record, path)["rows"] == 0
