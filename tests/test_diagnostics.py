"""Can the grader and the judge be trusted: score collapse, length bias, the length-controlled
winning score, and the snapshots that served a remote model's replies."""

from __future__ import annotations

import json

import pytest

from gasus.io import load_examples
from tests.conftest import run_cli
from tests.test_openai_backend import FakeServer


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


def _scored_dataset(tmp_path, outputs, scores, statuses=None, mode="generate"):
    rows = [{"instruction": f"Task {i}", "input": "", "output": out} for i, out in enumerate(outputs)]
    dataset = tmp_path / "data.json"
    dataset.write_text(json.dumps(rows))
    examples = load_examples(dataset)
    statuses = statuses or ["ok"] * len(outputs)
    lines = [json.dumps({"id": e.id, "index": e.index, "score": s if st == "ok" else None, "status": st,
                         "grader": "test", "dimension": "accuracy", "mode": mode, "raw": "", "probs": None})
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



# Score-like and length-like columns with ties on one side, both sides, or none.
TIED_PAIRS = [
    ([1, 2, 2, 3], [10, 30, 20, 40]),
    ([4.5, 4.5, 3.0, 5.0, 3.0, 4.5], [12, 7, 7, 30, 1, 12]),
    ([2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 4.0, 4.0], [5, 5, 5, 6, 9, 9, 1, 2]),
    (LENGTH_SCORES, LENGTHS),
    ([5.0, 4.0, 3.0, 2.0, 1.0], [1, 2, 2, 2, 3]),  # a negative rho
    ([0.0, -1.5, float("inf"), 2.0], [3, 3, 1, 0]),
]


@pytest.mark.parametrize(("x", "y"), TIED_PAIRS)
def test_spearman_equals_scipys_spearmanr_with_ties(x, y):
    stats = pytest.importorskip("scipy.stats")
    from gasus.diagnostics import spearman

    assert spearman(x, y) == float(stats.spearmanr(x, y).statistic)
    assert spearman(y, x) == float(stats.spearmanr(y, x).statistic)


def test_spearman_is_none_where_scipys_is_undefined():
    from gasus.diagnostics import spearman

    assert spearman([4.5, 4.5, 4.5], [1, 2, 3]) is None  # constant
    assert spearman([1, 2, 3], [7, 7, 7]) is None
    assert spearman([3.0], [9]) is None  # one pair
    assert spearman([], []) is None
    assert spearman([1.0, float("nan"), 3.0], [1, 2, 3]) is None
    assert spearman([float("inf"), float("inf")], [1, 2]) is None  # ranks tie: constant after all


def test_select_health_imports_no_scipy(tmp_path):
    """Importing scipy.stats for one coefficient took longer than the rest of `gasus select` on 9k rows."""
    import subprocess
    import sys

    outputs = [" ".join(["word"] * n) for n in LENGTHS]
    dataset, scores = _scored_dataset(tmp_path, outputs, LENGTH_SCORES)
    summary = tmp_path / "s.json"
    probe = f"""
import sys, json
from gasus.cli import main
try:
    main(["select", {str(dataset)!r}, {str(scores)!r}, "-o", {str(tmp_path / "kept.json")!r},
          "--summary-json", {str(summary)!r}])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "scipy")))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
    rho = json.loads(summary.read_text())["diagnostics"]["length_spearman"]
    assert rho == pytest.approx(_pearson(_average_ranks(LENGTH_SCORES), _average_ranks(LENGTHS)), abs=1e-12)


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


def test_expected_mode_scores_collapse_on_the_half_point_grid(tmp_path):
    """Expected-mode scores are probability-weighted means, each one distinct: counted exactly, 40
    scores near 1.4 would never look collapsed. They are counted on the half-point grid instead."""
    scores = [round(1.26 + 0.005 * i, 3) for i in range(34)] + [0.9, 1.1, 1.74, 2.2, 2.6, 3.1]
    outputs = [f"answer number {i}" for i in range(40)]
    dataset, path = _scored_dataset(tmp_path, outputs, scores, mode="expected")
    result = run_cli("select", str(dataset), str(path), "-o", str(tmp_path / "kept.json"),
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    d = json.loads((tmp_path / "s.json").read_text())["diagnostics"]
    assert (d["modal_score"], d["modal_share"], d["distinct_scores"]) == (1.5, 0.875, 5)
    assert (d["collapsed"], d["counted_on_half_point_grid"]) == (True, True)
    assert ("Warning: scores collapsed: 35 of 40 ok grades (87.5%) are 1.5 (rounded to the half-point grid) "
            "(collapsed at >= 80%)") in result.stderr
    # The same numbers from generate mode are exact scores: 40 distinct, nothing collapsed.
    dataset, path = _scored_dataset(tmp_path, outputs, scores)
    exact = run_cli("select", str(dataset), str(path), "-o", str(tmp_path / "kept.json"),
                    "--summary-json", str(tmp_path / "s.json"))
    d = json.loads((tmp_path / "s.json").read_text())["diagnostics"]
    assert (d["distinct_scores"], d["collapsed"], d["counted_on_half_point_grid"]) == (40, False, False)
    assert "collapsed" not in exact.stderr


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


# ---------------------------------------------------------------- length in the judge

# The longer answer's share of the decided reviews (scores and word counts differ), counted below too.
LONGER_WINS = {"gpt35": (29, 58), "bard": (44, 70), "alpaca-13b": (76, 79), "llama-13b": (71, 80)}


@pytest.mark.parametrize("model", ["bard", "alpaca-13b"])
def test_judge_length_on_gpt4_reviews(shared_data, tmp_path, model):
    """GPT-4's recorded Vicuna reviews replayed through `gasus judge`: longer_wins is the share,
    counted here from the recorded scores and the answers' word counts, of decided reviews won by
    the longer answer."""
    ev = shared_data / "vicuna_eval"
    prompt = json.loads((ev / "prompt.jsonl").read_text().splitlines()[0])
    questions = {q["question_id"]: q["text"] for q in map(json.loads, (ev / "question.jsonl").read_text().splitlines())}
    answers = {row["answer_id"]: row for name in (model, "vicuna-13b")
               for row in map(json.loads, (ev / "answers" / f"{name}.jsonl").read_text().splitlines())}
    reviews = [json.loads(line) for line in (ev / "reviews_gpt4" / f"review_{model}_vicuna-13b.jsonl").read_text().splitlines()]
    replay, files = [], {"A": [], "B": []}
    decided = longer = 0
    for r in reviews:
        a1, a2 = answers[r["answer1_id"]], answers[r["answer2_id"]]
        q = questions[r["question_id"]]
        user = prompt["prompt_template"].format(question=q, answer_1=a1["text"], answer_2=a2["text"],
                                                prompt=prompt["defaults"]["prompt"])
        replay.append({"messages": [{"role": "system", "content": prompt["system_prompt"]},
                                    {"role": "user", "content": user}], "text": r["text"]})
        for side, a in (("A", a1), ("B", a2)):
            files[side].append({"testset": "vicuna", "id": str(r["question_id"]), "question": q, "answer": a["text"]})
        s1, s2 = r["score"]  # FastChat fixed two by hand; the text's pair wins the same way
        n1, n2 = len(a1["text"].split()), len(a2["text"].split())
        if s1 != s2 and n1 != n2:
            decided += 1
            longer += (float(s1) > float(s2)) == (n1 > n2)
    assert (longer, decided) == LONGER_WINS[model]
    for name, rows in [("replay", replay), *files.items()]:
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    result = run_cli("judge", str(tmp_path / "A.jsonl"), str(tmp_path / "B.jsonl"), "-o", str(tmp_path / "j.jsonl"),
                     "--judge", f"replay:{tmp_path / 'replay.jsonl'}", "--order", "ab", "--bootstrap", "300",
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    length = json.loads((tmp_path / "s.json").read_text())["length"]
    assert (length["judgements"], length["decided"], length["longer_won"]) == (80, decided, longer)
    assert length["longer_wins"] == longer / decided
    assert length["per_order_winning_score"] == pytest.approx(json.loads((tmp_path / "s.json").read_text())["testsets"][0]["winning_score"])
    lo, hi = length["lc_interval_95"]
    assert lo <= length["lc_winning_score"] <= hi and length["length_coefficient"] > 0
    assert length["lc_winning_score"] > length["per_order_winning_score"]  # B's answers are the longer ones
    assert (f"Length: the longer answer wins {longer}/{decided} decided judgements ({longer / decided:.0%}); "
            f"length-controlled winning score {length['lc_winning_score']:.3f} [{lo:.3f}, {hi:.3f}]") in result.stdout


def test_lc_fit_is_sklearns_logistic_regression():
    """The batched Newton fit gives sklearn's LogisticRegression(C=100) on the same weighted,
    fractional outcomes (a tie entering as half a win and half a loss)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from gasus.diagnostics import LC_C, lc_fits

    rng = np.random.default_rng(3)
    x = np.column_stack([rng.normal(size=60), rng.integers(0, 2, size=60)])
    y = np.where(x[:, 0] + rng.normal(size=60) > 0.3, 1.0, 0.0)
    y[::7] = 0.5
    weights = rng.integers(0, 3, size=(4, 60)).astype(float)
    ours = lc_fits(y, x, weights)
    for w, beta in zip(weights, ours):
        ref = LogisticRegression(C=LC_C, tol=1e-10, max_iter=10000).fit(
            np.vstack([x, x]), np.r_[np.ones(60), np.zeros(60)], sample_weight=np.r_[w * y, w * (1 - y)])
        assert beta == pytest.approx(np.r_[ref.intercept_, ref.coef_[0]], abs=1e-5)


def test_lc_winning_score_without_length_effect_is_the_per_order_score():
    """Outcomes that do not follow length (each length difference wins and loses alike): the
    length-controlled score is the per-order one; where the longer answer always won, length
    control moves the score towards a draw; the interval is the same for the same seed."""
    from gasus.diagnostics import judge_length
    from gasus.judge import AnswerPair
    from gasus.records import Judgement

    def run(outcomes):
        pairs, judgements = [], []
        for i, (words_a, words_b, scores) in enumerate(outcomes):
            pairs.append(AnswerPair("vicuna", str(i), "q", "a " * words_a, "b " * words_b))
            judgements.append(Judgement("vicuna", str(i), "ab", scores, "ok", ""))
        return judge_length(pairs, judgements, n_resamples=200, seed=1)

    neutral = [(5, 2, [8, 6]), (5, 2, [6, 8]), (2, 5, [8, 6]), (2, 5, [6, 8])] * 3 + [(3, 3, [9, 2])] * 4
    length = run(neutral)
    assert (length.judgements, length.decided, length.longer_won, length.longer_wins) == (16, 12, 6, 0.5)
    assert length.per_order_winning_score == 1.25
    assert length.lc_winning_score == pytest.approx(1.25, abs=1e-9)
    assert length.length_coefficient == pytest.approx(0, abs=1e-9)
    biased = [(9, 3, [8, 6])] * 6 + [(3, 9, [6, 8])] * 2 + [(9, 3, [6, 8])] + [(4, 4, [7, 7])] * 3
    lc = run(biased)
    assert (lc.decided, lc.longer_won, lc.per_order_winning_score) == (9, 8, 1.25)
    assert lc.lc_winning_score < 1 < lc.per_order_winning_score and lc.length_coefficient > 0
    assert run(biased).interval == lc.interval


# ---------------------------------------------------------------- served snapshots


class SnapshotServer(FakeServer):
    """The loopback chat-completions server, saying which snapshot served each reply; the test
    changes `fingerprint` between runs, as a provider does when it swaps the model behind a name."""

    def __init__(self):
        super().__init__()
        self.model, self.fingerprint, self.served_calls = "grader-2024-08-06", "fp_a", 0

    def handle(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.served_calls += 1
        judging = body["messages"][0]["content"].startswith("You are a helpful and precise")
        data = {"id": "x", "object": "chat.completion", "model": self.model, "system_fingerprint": self.fingerprint,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": "8 6\nFirst is better." if judging else "4.5\nGood."}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3}}
        self.send(handler, 200, json.dumps(data).encode())


def test_served_snapshots_through_a_changing_server(tmp_path, mini_alpaca):
    """Two runs share a cache while the server's system_fingerprint changes: the second run's
    summary counts both snapshots (cached replies too) and warns naming each; --require-snapshot
    asks again for the replies another snapshot served, and refuses (uncached) a reply from a third."""
    with SnapshotServer() as server:
        def grade(limit, *extra):
            result = run_cli("grade", str(mini_alpaca), "-o", str(tmp_path / "g.jsonl"), "--grader", "openai:grader",
                             "--base-url", server.url, "--limit", str(limit), "--max-attempts", "1",
                             "--summary-json", str(tmp_path / "s.json"), *extra)
            assert result.exit_code == 0, result.output
            return result, json.loads((tmp_path / "s.json").read_text())

        _, first = grade(3)
        assert first["served"] == {"grader-2024-08-06|fp_a": 3}
        server.fingerprint = "fp_b"
        second, summary = grade(5)
        assert (summary["model_calls"], summary["cache_hits"]) == (2, 3)
        assert summary["served"] == {"grader-2024-08-06|fp_a": 3, "grader-2024-08-06|fp_b": 2}
        assert ("Warning: the grades come from 2 served snapshots: grader-2024-08-06|fp_a (3), "
                "grader-2024-08-06|fp_b (2); the model behind the name changed (pin one with --require-snapshot)"
                ) in second.stderr
        assert "served snapshots" not in grade(3)[0].stderr  # one snapshot alone: no warning

        pinned, summary = grade(5, "--require-snapshot", "fp_b")
        assert (summary["model_calls"], summary["cache_hits"], summary["served"]) == (
            3, 2, {"grader-2024-08-06|fp_b": 5})
        assert "served snapshots" not in pinned.stderr
        server.fingerprint = "fp_c"
        calls = server.served_calls
        _, summary = grade(6, "--require-snapshot", "grader-2024-08-06|fp_b")
        assert (summary["model_calls"], summary["cache_hits"], summary["failures"]) == (0, 5, 1)
        assert summary["errors"] == {"snapshot": 1}
        rows = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
        assert (rows[5]["status"], rows[5]["raw"]) == (
            "error", "openai:grader: the reply was served by grader-2024-08-06|fp_c, not the required snapshot "
                     "grader-2024-08-06|fp_b (not cached)")
        _, summary = grade(6)  # the refused reply was not cached: asked again
        assert server.served_calls - calls == 2 and summary["model_calls"] == 1

        # the judge's summary lists its snapshots too
        answers = {}
        for side in ("a", "b"):
            answers[side] = tmp_path / f"{side}.jsonl"
            answers[side].write_text(json.dumps({"testset": "vicuna", "id": "1", "question": "Q?",
                                                 "answer": f"answer {side}"}) + "\n")
        result = run_cli("judge", str(answers["a"]), str(answers["b"]), "-o", str(tmp_path / "j.jsonl"),
                         "--judge", "openai:grader", "--base-url", server.url, "--bootstrap", "10",
                         "--summary-json", str(tmp_path / "js.json"))
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "js.json").read_text())["served"] == {"grader-2024-08-06|fp_c": 2}
    cached = [json.loads(line) for line in _export(tmp_path)]
    assert {(c["entry"]["value"].get("served_model"), c["entry"]["value"].get("system_fingerprint")) for c in cached} == {
        ("grader-2024-08-06", "fp_b"), ("grader-2024-08-06", "fp_c")}


def _export(tmp_path):
    assert run_cli("cache", "export", str(tmp_path / "export.jsonl")).exit_code == 0
    return (tmp_path / "export.jsonl").read_text().splitlines()
