"""Exact end-to-end goldens of the embedded model, from recorded model calls replayed through the cache.

The embedded model's exact words and last digits are a property of the CPU's kernels (AVX2,
AVX-512 and AMX round differently), not of gasus. So the exact outputs of `grade`, `generate`
and `judge` are checked against calls recorded once: tests/data/embedded_calls.jsonl is a
`gasus cache export` that each test loads with `gasus cache import` into its own empty cache,
then runs the command with `--offline`. The tests load no model, make no model call, and give
the same bytes on every machine. The live model is tested for what holds on every CPU
(determinism, the form of its output, values within a tolerance) in the other test modules.

The keys depend on the prompts, the cache key's schema, the embedded GGUF file and the pinned
llama-cpp-python version. After a deliberate change to any of them, re-record:

    GASUS_RECORD=1 .venv/bin/python -m pytest tests/test_recorded.py

which runs the same commands against the live model and rewrites the recording; then review
`git diff tests/data/` and update the expected values below to what the live model now says.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_cli
from tests.test_judge import QUESTIONS, _answer, _write_answers

RECORDING = Path(__file__).resolve().parent / "data" / "embedded_calls.jsonl"
RECORD = os.environ.get("GASUS_RECORD") == "1"


@pytest.fixture(scope="module")
def recording():
    """With GASUS_RECORD=1: gathers every test's calls and writes the recording at the end."""
    entries: dict[str, dict] = {}
    yield entries
    if RECORD:
        RECORDING.parent.mkdir(parents=True, exist_ok=True)
        RECORDING.write_text("".join(json.dumps(entries[k], sort_keys=True, ensure_ascii=False) + "\n"
                                     for k in sorted(entries)), encoding="utf-8")


@pytest.fixture
def offline(recording, tmp_path):
    """The options that make a command answer from the recording: `--offline` (a miss is an
    error, never a model call), after `gasus cache import` of the recording into this test's
    cache. When recording, no options: the live model answers and its calls are kept."""
    if RECORD:
        yield []
        export = tmp_path / "export.jsonl"
        assert run_cli("cache", "export", str(export)).exit_code == 0
        for line in export.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if not row["key"].startswith(("filehash:", "chat-template:")):  # memos of this machine
                row["entry"]["created"] = 0
                recording[row["key"]] = row
        return
    result = run_cli("cache", "import", str(RECORDING))
    assert result.exit_code == 0, result.output
    yield ["--offline"]


def _summary(path: Path) -> tuple[int, int]:
    data = json.loads(path.read_text())
    return data["model_calls"], data["cache_hits"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_recording_is_small_and_holds_only_model_calls():
    rows = _lines(RECORDING)
    assert len(rows) == 3 + 3 + 2 + 6 + 6
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["key"]) for r in rows)
    assert {r["entry"]["backend"] for r in rows} == {"llamacpp"}
    assert RECORDING.stat().st_size < 64_000


def test_grade_both_modes(offline, tmp_path, mini_alpaca):
    rows = {}
    for mode in ("score", "expected"):
        out = tmp_path / f"{mode}.jsonl"
        result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--mode", mode, "--limit", "3",
                         "--summary-json", str(tmp_path / "s.json"), *offline)
        assert result.exit_code == 0, result.output
        assert _summary(tmp_path / "s.json") == ((3, 0) if RECORD else (0, 3))
        rows[mode] = _lines(out)
    assert [(r["index"], r["score"], r["status"], r["raw"]) for r in rows["score"]] == GRADE_SCORE
    assert [(r["index"], r["score"], r["top_score"], r["probs"]) for r in rows["expected"]] == GRADE_EXPECTED


def test_generate_answers(offline, tmp_path):
    out = tmp_path / "a.jsonl"
    result = run_cli("generate", "default", "--testset", "vicuna", "--limit", "2", "--max-new-tokens", "16",
                     "--testsets-dir", str(FIXTURES / "testsets"), "-o", str(out),
                     "--summary-json", str(tmp_path / "s.json"), *offline)
    assert result.exit_code == 0, result.output
    assert _summary(tmp_path / "s.json") == ((2, 0) if RECORD else (0, 2))
    assert [(r["id"], r["answer"]) for r in _lines(out)] == ANSWERS


@pytest.fixture
def small_answers(tmp_path):
    a = _write_answers(tmp_path / "a.jsonl", [_answer("vicuna", i, ans_a, q) for i, q, ans_a, _ in QUESTIONS])
    b = _write_answers(tmp_path / "b.jsonl", [_answer("vicuna", i, ans_b, q) for i, q, _, ans_b in QUESTIONS])
    return a, b


@pytest.mark.parametrize("mode", ["generate", "score"])
def test_judge_both_orders(offline, tmp_path, small_answers, mode):
    a, b = small_answers
    result = run_cli("judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", "default",
                     "--mode", mode, "--max-new-tokens", "12", "--verdicts", str(tmp_path / "v.jsonl"),
                     "--bootstrap", "100", "--summary-json", str(tmp_path / "s.json"), *offline)
    assert result.exit_code == 0, result.output
    assert _summary(tmp_path / "s.json") == ((6, 0) if RECORD else (0, 6))
    judgements = [(j["id"], j["order"], j["status"], j["scores"], j["raw"]) for j in _lines(tmp_path / "j.jsonl")]
    assert judgements == JUDGEMENTS[mode]
    assert [v["verdict"] for v in _lines(tmp_path / "v.jsonl")] == VERDICTS[mode]
    assert re.search(TABLE_ROW[mode], result.output), result.output


# What the embedded SmolLM2-135M said when the recording was made.
GRADE_SCORE = [(0, 0.9, "ok", "0.9"), (1, 1.1, "ok", "1.1"), (2, 1.1, "ok", "1.1")]
GRADE_EXPECTED = [
    (0, 1.178174, 0.0, {"0": 0.403907, "1": 0.379313, "2": 0.058479, "3": 0.031592, "4": 0.046419, "5": 0.08029}),
    (1, 1.311746, 1.0, {"0": 0.247026, "1": 0.52983, "2": 0.050721, "3": 0.05731, "4": 0.067022, "5": 0.048092}),
    (2, 1.542748, 1.0, {"0": 0.07354, "1": 0.65916, "2": 0.099503, "3": 0.044552, "4": 0.065299, "5": 0.057946}),
]
ANSWERS = [("1", "To keep a sourdough starter alive while travelling for two weeks, you need"),
           ("2", "To make a long meeting shorter, consider the following:\n1. **")]
_ECHO = "[System]\nWe would like to request your feedback on"
JUDGEMENTS = {
    # Too small to follow the paper's free-form judge prompt, it echoes the prompt: no verdicts.
    "generate": [
        ("1", "ab", "unparsed", None, "[System]\nThe capital of France is Paris.\n"),
        ("1", "ba", "unparsed", None, "[System]\nThe capital of France is Paris.\n"),
        ("2", "ab", "unparsed", None, _ECHO),
        ("2", "ba", "unparsed", None, _ECHO),
        ("3", "ab", "unparsed", None, _ECHO),
        ("3", "ba", "unparsed", None, "[System]\n[System]\n[System]\n"),
    ],
    # Held to the pair line by the grammar, it rates every answer 10: both orders tie everywhere.
    "score": [(i, o, "ok", [10.0, 10.0], "10 10") for i in ("1", "2", "3") for o in ("ab", "ba")],
}
VERDICTS = {"generate": [], "score": ["tie", "tie", "tie"]}
TABLE_ROW = {"generate": r"│ vicuna +│ +0 │ +0 │ +0 │ +- │ +3 │[\s\S]*6 of 6 judgements have no usable score pair",
             "score": r"│ vicuna +│ +0 │ +3 │ +0 │ +1\.000 \[1\.000, 1\.000\] │[\s\S]*orders agree on 3/3 questions"}
