"""gasus generate: the Alpaca prompt, the answers file, the cache, failures."""

from __future__ import annotations

import json

import pytest

from gasus.generate import answer_request
from gasus.prompts import alpaca_prompt
from gasus.testsets import TestQuestion, load_testsets
from tests.conftest import FIXTURES, run_cli


@pytest.fixture
def sets_dir():
    """The team's toy test sets in the four layouts (no real data needed)."""
    return FIXTURES / "testsets"


def test_answer_request_uses_the_alpaca_prompt():
    q = TestQuestion("vicuna", "1", "How can I improve my time management skills?")
    request = answer_request(q, max_new_tokens=64)
    assert request.is_raw
    assert request.params == {"template": "raw", "temperature": 0, "max_tokens": 64}
    assert request.messages[0]["content"] == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nHow can I improve my time management skills?\n\n### Response:")


def test_answer_request_with_input_and_chat_style():
    q = TestQuestion("sinstruct", "t0", "Rewrite the sentence.", "It be good.")
    assert answer_request(q).messages[0]["content"] == alpaca_prompt("Rewrite the sentence.", "It be good.")
    assert "### Input:\nIt be good.\n\n### Response:" in answer_request(q).messages[0]["content"]
    assert answer_request(q).params["max_tokens"] == 1024
    chat = answer_request(q, prompt_style="chat")
    assert not chat.is_raw
    assert chat.messages == ({"role": "user", "content": "Rewrite the sentence. Input: It be good."},)


def _replay_for(questions, texts, path):
    rows = [{"messages": [{"role": "user", "content": alpaca_prompt(q.instruction, q.input)}], "text": t}
            for q, t in zip(questions, texts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_writes_the_answers_file(sets_dir, tmp_path):
    questions = load_testsets(["vicuna", "sinstruct"], sets_dir, limit=2)
    replay = _replay_for(questions, [" Plan.\n", "Breathe.", "Rewritten.", "  Done. "], tmp_path / "r.jsonl")
    result = run_cli("generate", f"replay:{replay}", "--testset", "vicuna,sinstruct", "--limit", "2",
                     "--testsets-dir", str(sets_dir), "-o", str(tmp_path / "a.jsonl"), "--model-name", "m1",
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(r["testset"], r["id"], r["answer"], r["model"]) for r in rows] == [
        ("vicuna", "1", "Plan.", "m1"), ("vicuna", "2", "Breathe.", "m1"),
        ("sinstruct", "toy_task_0", "Rewritten.", "m1"), ("sinstruct", "toy_task_1", "Done.", "m1")]
    assert rows[2]["question"] == questions[2].question and " Input: " in rows[2]["question"]
    assert list(rows[0]) == ["testset", "id", "question", "answer", "model"]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert {k: summary[k] for k in ("command", "items", "model_calls", "cache_hits", "failures")} == {
        "command": "generate", "items": 4, "model_calls": 4, "cache_hits": 0, "failures": 0}


def test_generate_missing_answers_exit_2_and_keep_the_rest(sets_dir, tmp_path, embedded_gguf):
    """A call that fails (here: the prompt does not fit a 32-token context) is reported, the
    other answers are written, and the summary still accounts for the run."""
    result = run_cli("generate", f"llamacpp:{embedded_gguf}", "--testset", "vicuna", "--limit", "1", "--n-ctx", "32",
                     "--max-new-tokens", "8", "--testsets-dir", str(sets_dir), "-o", str(tmp_path / "a.jsonl"),
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 2
    assert result.output.startswith("0 answers -> ")
    assert result.output.splitlines()[-1] == (
        "Error: 1 of 1 question got no answer (first, vicuna/1: the prompt has 44 tokens; with 8 to generate it "
        "exceeds the context of 32 (raise --n-ctx)); the others are written; rerun to retry")
    assert (tmp_path / "a.jsonl").read_text() == ""
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["failures"], summary["items"], summary["model_calls"]) == (1, 1, 0)
    assert summary["error"].startswith("1 of 1 question got no answer")


def test_generate_with_the_embedded_model_then_from_cache(sets_dir, tmp_path):
    """Live greedy answers (their text is the CPU's: tests/test_recorded.py replays recorded
    ones): one per question, at most 16 tokens, and a rerun answers every question from the cache."""
    args = ["generate", "default", "--testset", "vicuna", "--limit", "2", "--max-new-tokens", "16",
            "--testsets-dir", str(sets_dir), "-o", str(tmp_path / "a.jsonl"), "--summary-json", str(tmp_path / "s.json")]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(r["testset"], r["id"], r["model"]) for r in rows] == [("vicuna", "1", "default"), ("vicuna", "2", "default")]
    assert all(isinstance(r["answer"], str) and r["answer"] == r["answer"].strip() for r in rows)
    assert json.loads((tmp_path / "s.json").read_text())["model_calls"] == 2
    again = run_cli(*args)
    assert again.exit_code == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["model_calls"], summary["cache_hits"]) == (0, 2)
    assert [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()] == rows


@pytest.mark.parametrize("args, message", [
    (["--testset", "mmlu"], "Error: unknown test set 'mmlu': choose from vicuna, koala, wizardlm, sinstruct or all"),
    (["--limit", "0"], "Error: --limit must be at least 1"),
    (["--max-new-tokens", "0"], "Error: --max-new-tokens must be at least 1"),
])
def test_generate_bad_input_exit_2(sets_dir, tmp_path, args, message):
    result = run_cli("generate", "default", "--testsets-dir", str(sets_dir), "-o", str(tmp_path / "a.jsonl"), *args)
    assert result.exit_code == 2
    assert result.output == message + "\n"


def test_generate_bad_spec_exit_2(sets_dir, tmp_path):
    result = run_cli("generate", "nonsense", "--testsets-dir", str(sets_dir), "-o", str(tmp_path / "a.jsonl"))
    assert result.exit_code == 2
    assert result.output.startswith("Error: cannot read model spec 'nonsense': expected BACKEND:MODEL")


def test_generate_help():
    result = run_cli("generate", "--help")
    assert result.exit_code == 0
    assert "Answer the paper's test questions with a model, greedily." in result.output
    assert "Example:\n    gasus generate hf:runs/alpagasus-9k --testset all" in result.output
