"""gasus agree: scores against keep labels (joined on index) and against another grader (joined on id)."""

from __future__ import annotations

import json

import pytest

from gasus.agree import agree, load_labels
from gasus.errors import BadInputError
from tests.conftest import run_cli


def write_scores(path, rows):
    lines = []
    for i, (id_, score) in enumerate(rows):
        status = "ok" if score is not None else "unparsed"
        lines.append(json.dumps({"id": id_, "index": i, "score": score, "status": status, "grader": "g",
                                 "dimension": "accuracy", "mode": "generate", "raw": str(score), "probs": None,
                                 "top_score": None}))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_labels(path, labels, field="kept_by_claude_t45"):
    path.write_text("".join(json.dumps({"index": i, field: v}) + "\n" for i, v in labels))
    return path


@pytest.fixture
def files(tmp_path):
    scores = write_scores(tmp_path / "scores.jsonl",
                          [("a", 5.0), ("b", 4.5), ("c", 4.0), ("d", 3.0), ("e", None), ("f", 4.5)])
    labels = write_labels(tmp_path / "labels.jsonl",
                          [(0, True), (1, False), (2, True), (3, False), (4, True), (6, True)])
    other = write_scores(tmp_path / "other.jsonl",
                         [("a", 4.5), ("b", 5.0), ("c", 3.0), ("d", 2.0), ("e", 4.8), ("z", 1.0)])
    return scores, labels, other


def test_against_labels(files):
    scores, labels, _ = files
    result = agree(scores, labels)
    assert result == pytest.approx({
        "kind": "labels", "label_field": "kept_by_claude_t45", "score_field": "score", "threshold": 4.5,
        "joined": 5, "unlabelled": 1, "not_ok": 1, "label_kept": 3, "grader_kept": 2, "true_positives": 1,
        "roc_auc": 0.75, "precision": 0.5, "recall": 1 / 3, "f1": 0.4, "base_rate": 0.6,
    })
    assert agree(scores, labels, threshold=4.0)["recall"] == pytest.approx(2 / 3)


def test_against_another_grader(files):
    scores, _, other = files
    result = agree(scores, other)
    assert result == pytest.approx({
        "kind": "scores", "score_field": "score", "threshold": 4.5, "joined": 5, "only_first": 1,
        "only_second": 1, "both_scored": 4, "spearman": 0.8, "cohen_kappa": (0.8 - 0.48) / 0.52,
        "kept_first": 2, "kept_second": 3, "kept_both": 2, "decision_agreement": 0.8,
    })


def test_label_field_must_be_clear(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"index": 0, "kept_a": true, "kept_b": false}\n')
    with pytest.raises(BadInputError, match="cannot tell which field holds the keep label"):
        load_labels(path)
    assert load_labels(path, "kept_b").kept == {0: False}
    path.write_text('{"index": 0, "kept": "yes"}\n')
    with pytest.raises(BadInputError, match="line 1: 'kept' must be true or false"):
        load_labels(path, "kept")


def test_nothing_in_common_is_an_error(tmp_path, files):
    scores, _, _ = files
    labels = write_labels(tmp_path / "far.jsonl", [(100, True)])
    with pytest.raises(BadInputError, match="do not overlap"):
        agree(scores, labels)
    other = write_scores(tmp_path / "o.jsonl", [("zz", 3.0)])
    with pytest.raises(BadInputError, match="share no example id"):
        agree(scores, other)


def test_cli_tables_and_summary(files, tmp_path):
    scores, labels, other = files
    summary = tmp_path / "summary.json"
    result = run_cli("agree", str(scores), str(labels), "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output and "0.750" in result.output
    assert json.loads(summary.read_text())["f1"] == pytest.approx(0.4)
    result = run_cli("agree", str(scores), str(other))
    assert result.exit_code == 0
    assert "Cohen's kappa" in result.output and "0.615" in result.output and "0.800" in result.output
    bad = run_cli("agree", str(scores), str(tmp_path / "missing.jsonl"))
    assert bad.exit_code == 2 and bad.output == f"Error: {tmp_path / 'missing.jsonl'}: no such file\n"


def test_real_claude_labels_join_on_index(shared_data, tmp_path):
    scores = write_scores(tmp_path / "s.jsonl", [(f"id{i}", 5.0 if i % 2 else 1.0) for i in range(20)])
    result = agree(scores, shared_data / "alpagasus" / "claude_t45_labels_dev.jsonl")
    assert result["label_field"] == "kept_by_claude_t45"
    assert result["joined"] == 20 and result["grader_kept"] == 10


# ---------------------------------------------------------------- issue 29 item 9: agree


def test_top_score_of_scores_not_from_expected_mode_says_why(files):
    """--score-field top_score on generate-mode scores used to call every grade "not ok" without a word."""
    scores, labels, other = files
    for reference in (labels, other):
        result = run_cli("agree", str(scores), str(reference), "--score-field", "top_score")
        assert (result.exit_code, result.output) == (
            2, "Error: --score-field top_score: 4 ok grades of SCORES have no top_score (mode generate); only "
               "scores of `gasus grade --mode expected` carry one: use --score-field score\n")


def test_top_score_of_expected_mode_scores_is_used(tmp_path):
    rows = [{"id": i, "index": n, "score": s, "status": "ok", "mode": "expected", "top_score": t}
            for n, (i, s, t) in enumerate([("a", 4.6, 5.0), ("b", 3.2, 3.0), ("c", 4.4, 5.0)])]
    scores = tmp_path / "s.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = write_labels(tmp_path / "l.jsonl", [(0, True), (1, False), (2, True)])
    assert agree(scores, labels, score_field="top_score")["grader_kept"] == 2
    assert agree(scores, labels)["grader_kept"] == 1


def test_the_team_labels_fixture_is_a_labels_file(tmp_path):
    """fixtures/mini_alpaca_labels.jsonl (the README's runnable example) joins mini_alpaca's scores on index."""
    from gasus.io import load_examples
    from tests.conftest import FIXTURES

    examples = load_examples(FIXTURES / "mini_alpaca.json")
    scores = write_scores(tmp_path / "s.jsonl", [(e.id, 5.0 if e.index < 30 else 1.0) for e in examples])
    result = agree(scores, FIXTURES / "mini_alpaca_labels.jsonl")
    assert {k: result[k] for k in ("label_field", "joined", "label_kept", "grader_kept", "roc_auc", "f1")} == {
        "label_field": "kept_by_team", "joined": 40, "label_kept": 30, "grader_kept": 30, "roc_auc": 1.0, "f1": 1.0}
    assert run_cli("agree", str(scores), str(FIXTURES / "mini_alpaca_labels.jsonl")).exit_code == 0
