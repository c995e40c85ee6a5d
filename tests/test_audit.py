"""gasus check: planted test-set overlaps are found with exact precision and recall, clean rows are not."""

from __future__ import annotations

import json

import pytest

from gasus.audit import words
from gasus.records import example_id
from tests.conftest import FIXTURES, run_cli

TOY = str(FIXTURES / "testsets")

# Rows appended after mini_alpaca's 40 clean ones, each with what the check must say of it.
PLANTED = [
    # exact copies: case and full-width letters differ, which NFKC and case folding undo
    ({"instruction": "HOW do I keep a sourdough starter alive while travelling for two weeks?", "input": "",
      "output": "Feed it before you leave and keep it in the fridge."}, ("exact", "vicuna", "1")),
    ({"instruction": "Write a Python function that reverses the words of a sentence.", "input": "",
      "output": "def rev(s):\n    return ' '.join(reversed(s.split()))"}, ("exact", "wizardlm", "2")),
    ({"instruction": "Answer the question.", "input": "",  # the question hides in the output
      "output": "Q: Explain what a hash function is to a ten-year-old. A: It makes a short fingerprint of a text."},
     ("exact", "koala", "toy_koala_0")),
    ({"instruction": "Ｍake this email more polite.", "input": "Send me the report now.",
      "output": "Could you send me the report, please?"}, ("exact", "sinstruct", "toy_task_0")),
    # a few words changed: near, not exact
    ({"instruction": "Write a haiku about a lighthouse in the mist.", "input": "",
      "output": "Beam sweeps grey silence"}, ("near", "vicuna", "3")),
    ({"instruction": "If a train leaves at 14:10 and arrives at 16:45, how long is the journey?", "input": "",
      "output": "2 hours 35 minutes."}, ("near", "vicuna", "4")),
    ({"instruction": "Give a title to this note.", "input": "Buy butter, eggs, flour. Call the plumber on Friday.",
      "output": "Errands"}, ("near", "sinstruct", "toy_task_1")),
    # paraphrases: the same question in other words counts as neither
    ({"instruction": "What's a good way to stop a sourdough culture from dying during a fortnight away?",
      "input": "", "output": "Refrigerate it."}, None),
    ({"instruction": "Which items belong in my bag for a rainy walk in the hills?", "input": "",
      "output": "A waterproof jacket."}, None),
]


def _dataset(tmp_path, extra):
    rows = json.loads((FIXTURES / "mini_alpaca.json").read_text()) + [row for row, _ in extra]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows, ensure_ascii=False))
    return path


def _precision_recall(found: set, expected: set) -> tuple[float, float]:
    true = len(found & expected)
    return (true / len(found) if found else 1.0), (true / len(expected) if expected else 1.0)


def test_check_finds_planted_overlaps_with_exact_precision_and_recall(tmp_path):
    data, report_path = _dataset(tmp_path, PLANTED), tmp_path / "audit.json"
    result = run_cli("check", str(data), "--testsets-dir", TOY, "-o", str(report_path))
    assert result.exit_code == 1, result.output  # contamination found: CI fails
    report = json.loads(report_path.read_text())
    found = {(h["index"], h["kind"], h["testset"], h["question_id"]) for h in report["hits"]}
    for kind in ("exact", "near"):
        expected = {(40 + i, *label) for i, (_, label) in enumerate(PLANTED) if label and label[0] == kind}
        assert _precision_recall({f for f in found if f[1] == kind}, expected) == (1.0, 1.0), kind
    assert len(found) == len(report["hits"]) == 7
    first = report["hits"][0]
    assert first["evidence"] == "how do i keep a sourdough starter alive while travelling for two weeks"
    assert first["id"] == example_id(PLANTED[0][0]["instruction"], "", PLANTED[0][0]["output"])
    near = {h["index"]: h["evidence"] for h in report["hits"] if h["kind"] == "near"}
    assert near == {44: 0.7778, 45: 0.7778, 46: 0.6471}
    assert report["groups"] == []
    assert report["summary"]["exact_hits"] == 4 and report["summary"]["near_hits"] == 3
    assert report["summary"]["contaminated_rows"] == 7
    assert report["summary"]["testsets"]["vicuna"] == {"questions": 4, "exact": 1, "near": 2, "rows": 3}
    assert "7 of 49 rows overlap the references (4 exact, 3 near hits)" in result.output


def test_check_clean_data_exits_zero(tmp_path, mini_alpaca):
    result = run_cli("check", str(mini_alpaca), "--testsets-dir", TOY, "--self")
    assert result.exit_code == 0, result.output
    assert "0 of 40 rows overlap the references (0 exact, 0 near hits)" in result.output
    assert "0 near-duplicate groups" in result.output


def test_check_self_groups_near_duplicates(tmp_path):
    rows = json.loads((FIXTURES / "mini_alpaca.json").read_text())
    extra = [(dict(rows[3]), None), (dict(rows[5], instruction="What is 12 times 8?"), None)]
    data, report_path = _dataset(tmp_path, extra), tmp_path / "audit.json"
    result = run_cli("check", str(data), "--against", "none", "--self", "-o", str(report_path))
    assert result.exit_code == 1, result.output
    report = json.loads(report_path.read_text())
    assert report["groups"] == [[3, 40], [5, 41]]
    assert [(h["index"], h["other_index"], h["kind"], h["testset"]) for h in report["hits"]] == [
        (40, 3, "near", "self"), (41, 5, "near", "self")]
    assert report["hits"][0]["evidence"] == 1.0
    assert report["summary"]["duplicate_rows"] == 2


def test_check_against_a_dataset_file(tmp_path, mini_alpaca):
    rows = json.loads(mini_alpaca.read_text())
    other = tmp_path / "heldout.jsonl"
    other.write_text(json.dumps(rows[7]) + "\n")
    result = run_cli("check", str(mini_alpaca), "--against", str(other), "-o", str(tmp_path / "a.json"))
    assert result.exit_code == 1, result.output
    hits = json.loads((tmp_path / "a.json").read_text())["hits"]
    assert [(h["index"], h["testset"], h["question_id"], h["kind"]) for h in hits] == [
        (7, str(other), "0", "exact" if len(words(rows[7]["instruction"])) >= 5 else "near")]


def test_check_against_a_file_of_bare_questions(tmp_path, mini_alpaca):
    """Issue 29 item 8: `--against FILE` compares only instructions and inputs, yet wanted an `output`
    field; a file of bare questions (no output) is accepted and finds the same rows."""
    rows = json.loads(mini_alpaca.read_text())
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"instruction": rows[2]["instruction"], "input": rows[2]["input"]}) + "\n"
                         + json.dumps({"instruction": rows[7]["instruction"]}) + "\n")
    full = tmp_path / "full.jsonl"
    full.write_text(json.dumps(rows[2]) + "\n" + json.dumps(rows[7]) + "\n")
    found = {}
    for name, path in (("bare", questions), ("full", full)):
        result = run_cli("check", str(mini_alpaca), "--against", str(path), "-o", str(tmp_path / f"{name}.json"))
        assert result.exit_code == 1, result.output
        found[name] = [(h["index"], h["question_id"], h["kind"])
                       for h in json.loads((tmp_path / f"{name}.json").read_text())["hits"]]
    assert found["bare"] == found["full"] == [(2, "0", "exact"), (7, "1", "exact")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"input": "no instruction"}) + "\n")
    result = run_cli("check", str(mini_alpaca), "--against", str(bad))
    assert result.exit_code == 2
    assert result.output == f"Error: {bad}: line 1: missing required field 'instruction'\n"


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "Error: --threshold must be in (0, 1], got 1.5\n"),
    (["--ngram", "0"], "Error: --ngram must be at least 1, got 0\n"),
    (["--against", "mmlu"], "Error: unknown test set 'mmlu': choose from vicuna, koala, wizardlm, sinstruct or all\n"),
    (["--against", "none"], "Error: --against none checks nothing: add --self\n"),
])
def test_check_bad_input_is_one_line(tmp_path, mini_alpaca, args, message):
    out = tmp_path / "audit.json"
    result = run_cli("check", str(mini_alpaca), "--testsets-dir", TOY, "-o", str(out), *args)
    assert (result.exit_code, result.output) == (2, message)
    assert not out.exists()


def test_words_fold_case_and_compatibility_forms():
    assert words("Ｗrite ﬁve WORDS, please!") == ["write", "five", "words", "please"]


def test_check_self_is_linear_on_repeated_rows(tmp_path):
    """1,000 copies of one row, two of another and a row near the first: one group per kind of row, one
    hit per row beyond the first of its group (naming that first row), never one per pair (499,500)."""
    row = {"instruction": "Name three primary colours.", "input": "", "output": "Red, yellow and blue."}
    other = {"instruction": "What is the boiling point of water at sea level?", "input": "", "output": "100 C."}
    near = dict(row, output="Red, yellow and blue, mostly.")
    rows = [row] * 500 + [other, near] + [row] * 500 + [other]
    data, report_path = tmp_path / "data.json", tmp_path / "audit.json"
    data.write_text(json.dumps(rows))
    result = run_cli("check", str(data), "--against", "none", "--self", "-o", str(report_path))
    assert result.exit_code == 1, result.output
    report = json.loads(report_path.read_text())
    assert report["groups"] == [[*range(500), *range(501, 1002)], [500, 1002]]
    assert len(report["hits"]) == 1001
    assert {(h["other_index"], h["evidence"]) for h in report["hits"] if h["index"] != 501} == {(0, 1.0), (500, 1.0)}
    assert [(h["other_index"], h["evidence"]) for h in report["hits"] if h["index"] == 501] == [(0, 0.875)]
    assert (report["summary"]["duplicate_groups"], report["summary"]["duplicate_rows"]) == (2, 1001)
    assert "2 near-duplicate groups, 1001 rows beyond the first of each" in result.output
