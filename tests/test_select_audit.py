"""gasus select --decisions (a reason for every row) and --exclude (a `gasus check` report)."""

from __future__ import annotations

import json
import random

import pytest

from gasus.io import load_examples
from tests.conftest import FIXTURES, run_cli
from tests.test_selection import data as selection_data  # noqa: F401  (a fixture)


@pytest.fixture
def data(selection_data, tmp_path):  # noqa: F811
    """test_selection's 8 graded rows (scores 5, 4.5, 4, 4.5, 3, unparsed, 4.49, error), and a check report."""
    dataset, scores, examples = selection_data
    # row 1 overlaps a test question; rows 0, 3 and 6 are near-duplicates (0 has the best score)
    report = tmp_path / "audit.json"
    report.write_text(json.dumps({
        "hits": [{"index": 1, "id": examples[1].id, "testset": "vicuna", "question_id": "7", "kind": "exact",
                  "evidence": "a b c"},
                 {"index": 3, "id": examples[3].id, "testset": "self", "other_index": 0, "kind": "near",
                  "evidence": 0.9}],
        "groups": [[0, 3, 6]], "summary": {}}))
    return dataset, scores, report, examples


def _reasons(path):
    return [(d["index"], d["kept"], d["reason"]) for d in map(json.loads, path.read_text().splitlines())]


def test_select_decisions_give_a_reason_for_every_row(data, tmp_path):
    dataset, scores, _, examples = data
    why = tmp_path / "why.jsonl"
    result = run_cli("select", str(dataset), str(scores), "-o", str(tmp_path / "kept.json"), "--decisions", str(why))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in why.read_text().splitlines()]
    assert lines[0] == {"id": examples[0].id, "index": 0, "score": 5.0, "kept": True, "reason": "selected"}
    assert _reasons(why) == [(0, True, "selected"), (1, True, "selected"), (2, False, "below_threshold"),
                             (3, True, "selected"), (4, False, "below_threshold"), (5, False, "grade_failed"),
                             (6, False, "below_threshold"), (7, False, "grade_failed")]
    assert "a decision for each of 8 rows" in result.output

    result = run_cli("select", str(dataset), str(scores), "--top-k", "2", "-o", str(tmp_path / "top.json"),
                     "--decisions", str(why))
    assert [r for _, _, r in _reasons(why)] == ["selected", "selected", "not_in_top_k", "not_in_top_k",
                                                "not_in_top_k", "grade_failed", "not_in_top_k", "grade_failed"]


def test_select_exclude_drops_contaminated_and_all_but_the_best_duplicate(data, tmp_path):
    dataset, scores, report, _ = data
    why, kept = tmp_path / "why.jsonl", tmp_path / "kept.json"
    result = run_cli("select", str(dataset), str(scores), "--exclude", str(report), "-o", str(kept),
                     "--decisions", str(why), "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    assert [r["instruction"] for r in json.loads(kept.read_text())] == ["Task 0"]
    assert _reasons(why) == [(0, True, "selected"), (1, False, "contaminated"), (2, False, "below_threshold"),
                             (3, False, "near_duplicate"), (4, False, "below_threshold"), (5, False, "grade_failed"),
                             (6, False, "near_duplicate"), (7, False, "grade_failed")]
    assert "kept 1 of 8 (12.5%) by score >= 4.5" in result.output
    assert "excluded 1 contaminated and 2 near-duplicate rows" in result.output
    assert json.loads((tmp_path / "s.json").read_text())["excluded"] == {"contaminated": 1, "near_duplicate": 2}

    # top-k ranks what is left, so k rows are still kept
    run_cli("select", str(dataset), str(scores), "--exclude", str(report), "--top-k", "2", "-o", str(kept))
    assert [r["instruction"] for r in json.loads(kept.read_text())] == ["Task 0", "Task 2"]

    # the random baseline draws from the rows left (with no scores, the first of a group stays)
    run_cli("select", str(dataset), "--random", "3", "--exclude", str(report), "-o", str(kept),
            "--decisions", str(why))
    left = [0, 2, 4, 5, 7]
    drawn = [left[i] for i in sorted(random.Random(0).sample(range(5), 3))]
    assert [r["instruction"] for r in json.loads(kept.read_text())] == [f"Task {i}" for i in drawn]
    assert {i: r for i, _, r in _reasons(why) if i not in drawn} == {
        **{i: "random_baseline" for i in left if i not in drawn}, 1: "contaminated", 3: "near_duplicate",
        6: "near_duplicate"}


def test_select_exclude_with_a_real_check_report(tmp_path):
    rows = json.loads((FIXTURES / "mini_alpaca.json").read_text())[:6]
    rows += [{"instruction": "What is 17 multiplied by 23?", "input": "", "output": "391"}, dict(rows[3])]
    dataset, report = tmp_path / "data.json", tmp_path / "audit.json"
    dataset.write_text(json.dumps(rows))
    examples = load_examples(dataset)
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"id": e.id, "index": e.index, "score": 5.0, "status": "ok"}) + "\n"
                              for e in examples))
    check = run_cli("check", str(dataset), "--testsets-dir", str(FIXTURES / "testsets"), "--self", "-o", str(report))
    assert check.exit_code == 1, check.output
    why = tmp_path / "why.jsonl"
    result = run_cli("select", str(dataset), str(scores), "--exclude", str(report), "-o", str(tmp_path / "k.json"),
                     "--decisions", str(why))
    assert result.exit_code == 0, result.output
    assert [(i, r) for i, _, r in _reasons(why) if r != "selected"] == [(6, "contaminated"), (7, "near_duplicate")]


@pytest.mark.parametrize("report, message", [
    ({"hits": [], "groups": [[0, 99]]}, "group 0: row 99 is not a row of the dataset (8 rows); "
                                        "was the report made from another dataset?"),
    ({"hits": [{"index": 2, "id": "f" * 64, "testset": "koala"}], "groups": []},
     "hit 0: row 2 has another id in the dataset; was the report made from another dataset?"),
    ({"rows": []}, "not a `gasus check` report (expected an object with 'hits' and 'groups')"),
])
def test_select_exclude_bad_report_is_one_line(data, tmp_path, report, message):
    dataset, scores, _, _ = data
    bad, kept, why = tmp_path / "bad.json", tmp_path / "kept.json", tmp_path / "why.jsonl"
    bad.write_text(json.dumps(report))
    result = run_cli("select", str(dataset), str(scores), "--exclude", str(bad), "-o", str(kept),
                     "--decisions", str(why))
    assert (result.exit_code, result.output) == (2, f"Error: {bad}: {message}\n")
    assert not kept.exists() and not why.exists()


def test_select_decisions_refused_with_sweep(data, tmp_path):
    dataset, scores, _, _ = data
    result = run_cli("select", str(dataset), str(scores), "--sweep", "4,5", "--decisions", str(tmp_path / "w.jsonl"))
    assert (result.exit_code, result.output) == (2, "Error: --decisions does not go with --sweep, which selects "
                                                    "nothing\n")
