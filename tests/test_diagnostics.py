"""Can the grader and the judge be trusted: score collapse, length bias, the length-controlled
winning score, and the snapshots that served a remote model's replies."""

from __future__ import annotations

import json

import pytest

from gasus.io import load_examples
from tests.conftest import run_cli


def _average_ranks(values):
    """1-based ranks, ties sharing the mean of their positions (as Spearman's rho needs them)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / (sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)) ** 0.5


def _scored_dataset(tmp_path, outputs, scores, statuses=None):
    rows = [{"instruction": f"Task {i}", "input": "", "output": out} for i, out in enumerate(outputs)]
    dataset = tmp_path / "data.json"
    dataset.write_text(json.dumps(rows))
    examples = load_examples(dataset)
    statuses = statuses or ["ok"] * len(outputs)
    lines = [json.dumps({"id": e.id, "index": e.index, "score": s if st == "ok" else None, "status": st,
                         "grader": "test", "dimension": "accuracy", "mode": "generate", "raw": "", "probs": None})
             for e, s, st in zip(examples, scores, statuses)]
    path = tmp_path / "scores.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return dataset, path


# 40 responses of 1..40 words; the score rises with length, with ties and some disorder.
LENGTHS = list(range(1, 41))
LENGTH_SCORES = [[2.0, 3.0, 3.5, 4.0, 4.5, 5.0][min(5, (n + 7 * (n % 3)) // 8)] for n in LENGTHS]


def test_score_health_in_select(tmp_path):
    """length_spearman is Spearman's rho with average ranks, computed here by hand; kept shares per
    length quintile count score >= 4.5 among 8 rows each; rho >= 0.3 warns of length bias."""
    outputs = [" ".join(["word"] * n) for n in LENGTHS]
    # One unparsed row: it takes no part in the statistics (only ok rows do).
    dataset, scores = _scored_dataset(tmp_path, outputs + ["x y z"], LENGTH_SCORES + [None],
                                      ["ok"] * 40 + ["unparsed"])
    expected = _pearson(_average_ranks(LENGTH_SCORES), _average_ranks(LENGTHS))
    assert 0.6 < expected < 0.95
    result = run_cli("select", str(dataset), str(scores), "-o", str(tmp_path / "kept.json"),
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    d = json.loads((tmp_path / "s.json").read_text())["diagnostics"]
    assert d["ok"] == 40
    assert d["length_spearman"] == pytest.approx(expected, abs=1e-12)
    kept = [s >= 4.5 for s in LENGTH_SCORES]
    quintiles = [{"quintile": q + 1, "rows": 8, "min_words": 8 * q + 1, "max_words": 8 * q + 8,
                  "kept": sum(kept[8 * q:8 * q + 8]), "kept_share": sum(kept[8 * q:8 * q + 8]) / 8}
                 for q in range(5)]
    assert d["kept_share_by_length_quintile"] == quintiles
    assert [q["kept"] for q in quintiles] == [0, 0, 2, 6, 8]
    assert (d["modal_score"], d["distinct_scores"], d["collapsed"]) == (5.0, 6, False)
    assert d["length_bias"] is True
    assert (f"Warning: length bias: Spearman's rho between score and response length is {expected:.2f} "
            "(>= 0.3) over 40 ok grades") in result.stderr
    assert "collapsed" not in result.stderr
    # Configurable: a higher bar, no warning.
    quiet = run_cli("select", str(dataset), str(scores), "-o", str(tmp_path / "kept.json"),
                    "--length-bias-rho", "0.95")
    assert quiet.exit_code == 0 and "length bias" not in quiet.stderr


def test_collapsed_scores_warn(tmp_path):
    """95% of the ok grades hold one score: collapsed (modal_share >= 0.8), and the warning names it."""
    scores = [4.5] * 38 + [3.0, 5.0]
    outputs = [f"answer number {i}" for i in range(40)]  # all three words: no length statistic
    dataset, path = _scored_dataset(tmp_path, outputs, scores)
    result = run_cli("select", str(dataset), str(path), "-o", str(tmp_path / "kept.json"),
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    d = json.loads((tmp_path / "s.json").read_text())["diagnostics"]
    assert (d["modal_score"], d["modal_share"], d["distinct_scores"], d["collapsed"]) == (4.5, 0.95, 3, True)
    assert d["length_spearman"] is None and d["length_bias"] is False
    assert ("Warning: scores collapsed: 38 of 40 ok grades (95.0%) are 4.5 (collapsed at >= 80%); "
            "the grader hardly tells examples apart") in result.stderr
    relaxed = run_cli("select", str(dataset), str(path), "-o", str(tmp_path / "kept.json"),
                      "--collapse-share", "0.96", "--summary-json", str(tmp_path / "s.json"))
    assert relaxed.exit_code == 0 and "collapsed" not in relaxed.stderr
    assert json.loads((tmp_path / "s.json").read_text())["diagnostics"]["collapsed"] is False
    bad = run_cli("select", str(dataset), str(path), "-o", str(tmp_path / "k2.json"), "--collapse-share", "1.5")
    assert (bad.exit_code, bad.output) == (2, "Error: --collapse-share must be between 0 and 1, got 1.5\n")
    assert not (tmp_path / "k2.json").exists()


def test_grade_summary_reports_score_health(tmp_path):
    """`gasus grade` through a replay grader that says 4.5 to 9 of 10 examples: collapsed, in the
    summary's diagnostics and on stderr."""
    from gasus.grade import grading_prompt

    outputs = [" ".join(["w"] * (i + 1)) for i in range(10)]
    dataset, _ = _scored_dataset(tmp_path, outputs, [0.0] * 10)
    prompt = grading_prompt("accuracy")
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"messages": prompt.messages(e), "text": "4.5\nfine" if e.index else "2\nno"})
                              + "\n" for e in load_examples(dataset)))
    result = run_cli("grade", str(dataset), "-o", str(tmp_path / "g.jsonl"), "--grader", f"replay:{replay}",
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    d = json.loads((tmp_path / "s.json").read_text())["diagnostics"]
    assert (d["ok"], d["modal_score"], d["modal_share"], d["distinct_scores"], d["collapsed"]) == (10, 4.5, 0.9, 2, True)
    # ranks: the 2 is the shortest response, the nine 4.5s tie above it
    assert d["length_spearman"] == pytest.approx(_pearson([1] + [6] * 9, list(range(1, 11))), abs=1e-12)
    assert [q["kept"] for q in d["kept_share_by_length_quintile"]] == [1, 2, 2, 2, 2]
    assert "Warning: scores collapsed: 9 of 10 ok grades (90.0%) are 4.5" in result.stderr
    assert "Warning: length bias" in result.stderr


def test_agree_reports_score_health(tmp_path):
    """`gasus agree` shows collapse beside the AUC, and length bias when --dataset gives the responses."""
    outputs = [" ".join(["w"] * (i + 1)) for i in range(20)]
    scores = [4.5] * 17 + [3.0, 2.0, 5.0]
    dataset, path = _scored_dataset(tmp_path, outputs, scores)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"index": i, "kept_by_x": i % 2 == 0}) + "\n" for i in range(20)))
    result = run_cli("agree", str(path), str(labels), "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    d = summary["diagnostics"]
    assert (d["modal_score"], d["modal_share"], d["collapsed"], d["length_spearman"]) == (4.5, 0.85, True, None)
    assert summary["roc_auc"] is not None
    assert "Warning: scores collapsed: 17 of 20 ok grades (85.0%) are 4.5" in result.stderr
    assert "│ modal score (share)" in result.stdout and "4.5 (85.0%)" in result.stdout
    with_data = run_cli("agree", str(path), str(labels), "--dataset", str(dataset),
                        "--summary-json", str(tmp_path / "s.json"))
    assert with_data.exit_code == 0, with_data.output
    d = json.loads((tmp_path / "s.json").read_text())["diagnostics"]
    assert d["length_spearman"] == pytest.approx(_pearson(_average_ranks(scores), list(range(1, 21))), abs=1e-12)
    assert [q["kept"] for q in d["kept_share_by_length_quintile"]] == [4, 4, 4, 4, 2]
    assert "│ length Spearman's rho" in with_data.stdout
