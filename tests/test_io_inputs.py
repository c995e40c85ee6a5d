"""Inputs people have: single-turn OpenAI `messages` and ShareGPT `conversations` rows, and gzip, bz2,
xz and zstd files read by suffix."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma

import pytest
import zstandard

from gasus.io import load_examples
from tests.conftest import FIXTURES, run_cli

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
