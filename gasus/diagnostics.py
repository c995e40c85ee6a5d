"""Can the grader and the judge be trusted? Score health of a grading run (collapse onto one
score, length bias), length in the judge's verdicts (how often the longer answer wins, and the
winning score with length controlled for), and the snapshots that served a remote model.

A grader that gives nearly every example one score (the AlpaGasus repository's ChatGPT grader
gave 4.5; deita's gave 3) or that rewards length rather than quality filters badly without
failing; these numbers make it visible. Only grades with status "ok" take part.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BadInputError
from .io import in_bulk

COLLAPSE_SHARE = 0.8  # collapsed: at least this share of the ok grades hold one score
LENGTH_BIAS_RHO = 0.3  # length bias: Spearman's rho of score and response length reaches this
QUINTILES = 5


def word_count(text: str) -> int:
    """Length in whitespace-separated words.

    >>> word_count("  Paris is\\nthe capital. ")
    4
    """
    return len(text.split())


def check_share(value: float, option: str) -> float:
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise BadInputError(f"{option} must be between 0 and 1, got {value:g}")
    return value


def check_rho(value: float, option: str) -> float:
    if not (math.isfinite(value) and -1 <= value <= 1):
        raise BadInputError(f"{option} must be between -1 and 1, got {value:g}")
    return value


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties), or None when either side is constant
    or holds a NaN. The value is scipy.stats.spearmanr's, computed in numpy: importing
    scipy.stats alone takes longer than the rest of `gasus select` on 9k rows.

    >>> round(spearman([1, 2, 2, 3], [10, 30, 20, 40]), 6)
    0.948683
    >>> spearman([1, 1, 1], [1, 2, 3]) is None
    True
    """
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():  # scipy's rho would be NaN
        return None
    x_ranks, y_ranks = average_ranks(x), average_ranks(y)
    if np.ptp(x_ranks) == 0 or np.ptp(y_ranks) == 0:  # a constant side has no order to compare
        return None
    # [1, 0], as scipy reads it: the two off-diagonal entries can differ in the last bit.
    return float(np.corrcoef(x_ranks, y_ranks)[1, 0])


def average_ranks(values: Any) -> Any:
    """1-based ranks of a numpy array, equal values sharing the mean of the ranks they span.

    >>> import numpy as np
    >>> average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    import numpy as np

    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last occurrence
    return (last - (counts - 1) / 2)[group.reshape(-1)]


# ---------------------------------------------------------------- score health


@dataclass(frozen=True)
class ScoreHealth:
    """Collapse and length bias of the ok grades of one grading run."""

    ok: int
    modal_score: float | None
    modal_count: int
    distinct_scores: int
    collapse_share: float
    length_spearman: float | None
    length_bias_rho: float
    quintiles: list[dict[str, Any]] | None
    on_grid: bool = False  # scores were counted rounded to the half-point grid (expected mode's means)

    @property
    def modal_share(self) -> float | None:
        return self.modal_count / self.ok if self.ok else None

    @property
    def collapsed(self) -> bool:
        return self.modal_share is not None and self.modal_share >= self.collapse_share

    @property
    def length_bias(self) -> bool:
        return self.length_spearman is not None and self.length_spearman >= self.length_bias_rho

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "modal_score": self.modal_score, "modal_share": self.modal_share,
                "distinct_scores": self.distinct_scores, "collapsed": self.collapsed,
                "collapse_share": self.collapse_share, "length_spearman": self.length_spearman,
                "length_bias": self.length_bias, "length_bias_rho": self.length_bias_rho,
                "kept_share_by_length_quintile": self.quintiles, "counted_on_half_point_grid": self.on_grid}

    def text(self) -> str:
        """One line for reports."""
        if not self.ok:
            return "Score health: n/a (no ok grade)"
        line = (f"Score health: modal score {self.modal_score:g} ({self.modal_share:.1%} of {self.ok} ok grades"
                f"{', collapsed' if self.collapsed else ''}); {self.distinct_scores} distinct score(s)"
                f"{' on the half-point grid' if self.on_grid else ''}")
        if self.length_spearman is not None:
            line += f"; Spearman's rho of score and response length {self.length_spearman:.3f}"
        if self.quintiles:
            line += "; kept per length quintile " + ", ".join(f"{q['kept_share']:.0%}" for q in self.quintiles)
        return line

    def warnings(self) -> list[str]:
        out = []
        if self.collapsed:
            out.append(f"Warning: scores collapsed: {self.modal_count} of {self.ok} ok grades "
                       f"({self.modal_share:.1%}) are {self.modal_score:g}"
                       f"{' (rounded to the half-point grid)' if self.on_grid else ''} (collapsed at >= {self.collapse_share:.0%}); "
                       "the grader hardly tells examples apart")
        if self.length_bias:
            out.append(f"Warning: length bias: Spearman's rho between score and response length is "
                       f"{self.length_spearman:.2f} (>= {self.length_bias_rho:g}) over {self.ok} ok grades; "
                       "the grader may reward length rather than quality")
        return out


def length_quintiles(lengths: Sequence[int], kept: Sequence[bool]) -> list[dict[str, Any]]:
    """The rows sorted by length (ties in input order) cut into five groups as equal as can be
    (the first ones one larger), each with its word range and the share it keeps."""
    import numpy as np

    length = np.asarray(lengths, dtype=np.int64)
    kept_rows = np.asarray(kept, dtype=bool)
    order = np.argsort(length, kind="stable")  # ties in input order
    rows = []
    for q, part in enumerate(np.array_split(order, QUINTILES), start=1):
        if not len(part):
            continue
        k = int(kept_rows[part].sum())
        rows.append({"quintile": q, "rows": len(part), "min_words": int(length[part[0]]),
                     "max_words": int(length[part[-1]]), "kept": k, "kept_share": k / len(part)})
    return rows


def half_point(score: float) -> float:
    """The nearest score of the paper's half-point grid (halves round up).

    >>> [half_point(s) for s in (1.24, 1.25, 1.396, 4.76)]
    [1.0, 1.5, 1.5, 5.0]
    """
    return math.floor(score * 2 + 0.5) / 2


def score_health(scores: Sequence[float], lengths: Sequence[int] | None = None, kept: Sequence[bool] | None = None,
                 *, collapse_share: float = COLLAPSE_SHARE, length_bias_rho: float = LENGTH_BIAS_RHO,
                 on_grid: bool = False) -> ScoreHealth:
    """Score health of the ok grades' `scores`, with their responses' word counts and whether each
    was kept (for the kept share per length quintile) when known. With `on_grid`, the modal score
    and the distinct scores are counted on the half-point grid: expected-mode scores are
    probability-weighted means, all distinct, so exact values would never show a collapse."""
    counts = Counter(half_point(s) for s in scores) if on_grid else Counter(scores)
    modal, modal_count = (None, 0)
    if counts:
        # the most common score; of equally common ones, the highest (the one a keep rule meets first)
        modal, modal_count = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    rho = quintiles = None
    if lengths is not None:
        rho = spearman(scores, lengths)
        if kept is not None and scores:
            quintiles = length_quintiles(lengths, kept)
    return ScoreHealth(len(scores), None if modal is None else float(modal), modal_count, len(counts),
                       collapse_share, rho, length_bias_rho, quintiles, on_grid)


@in_bulk
def grade_health(examples: Sequence[Any] | None, grades: Sequence[Any], kept_ids: set[str] | None = None, *,
                 threshold: float = 4.5, collapse_share: float = COLLAPSE_SHARE,
                 length_bias_rho: float = LENGTH_BIAS_RHO,
                 scored: Sequence[tuple[Any, float]] | None = None) -> ScoreHealth:
    """score_health of grades, joined to their examples on id (their responses' lengths) when
    given; a row is kept when its id is in `kept_ids`, or else when its score >= threshold.
    `scored`: the join of these examples with a ScoreIndex, when the caller made it (a Selection's)."""
    options = {"collapse_share": collapse_share, "length_bias_rho": length_bias_rho}
    if hasattr(grades, "not_ok"):  # a selection.ScoreIndex (select's and agree's streamed scores)
        if examples is None:  # one score per line: an id's repeated lines count again
            scores = [score for grade_id, score in grades.scores.items() if score is not None
                      for _ in range(1 + grades.repeats.get(grade_id, 0))]
            return score_health(scores, None, [score >= threshold for score in scores], **options,
                                on_grid=grades.expected)
        by_id = grades.scores
        ok_rows = scored if scored is not None else [
            (e, score) for e in examples if (score := by_id.get(e.id)) is not None]
        kept = [e.id in kept_ids if kept_ids is not None else score >= threshold for e, score in ok_rows]
        return score_health([score for _, score in ok_rows], [word_count(e.output) for e, _ in ok_rows], kept,
                            **options, on_grid=grades.expected)
    if examples is not None and len(examples) == len(grades) and all(
            g.id == e.id for g, e in zip(grades, examples)):  # grade's own rows: paired by position, no index
        ok = [g for g in grades if g.ok]
        lengths = [word_count(e.output) for g, e in zip(grades, examples) if g.ok]
        kept = [g.id in kept_ids if kept_ids is not None else g.score >= threshold for g in ok]
        return score_health([g.score for g in ok], lengths, kept, **options,
                            on_grid=any(g.mode == "expected" for g in ok))
    outputs = None if examples is None else {e.id: e.output for e in examples}
    ok = [g for g in grades if g.ok and (outputs is None or g.id in outputs)]
    scores = [g.score for g in ok]
    lengths = None if outputs is None else [word_count(outputs[g.id]) for g in ok]
    kept = [g.id in kept_ids if kept_ids is not None else g.score >= threshold for g in ok]
    return score_health(scores, lengths, kept, collapse_share=collapse_share, length_bias_rho=length_bias_rho,
                        on_grid=any(g.mode == "expected" for g in ok))


# ---------------------------------------------------------------- snapshots


def served_key(value: Mapping[str, Any]) -> str | None:
    """"MODEL|FINGERPRINT" of a cached reply that says what served it, else None (local models)."""
    model, fingerprint = value.get("served_model"), value.get("system_fingerprint")
    if model is None and fingerprint is None:
        return None
    return f"{model or ''}|{fingerprint or ''}"


def served_warning(served: Mapping[str, int], what: str = "replies") -> str | None:
    """A warning naming every snapshot when one run's results come from more than one."""
    if len(served) < 2:
        return None
    names = ", ".join(f"{k} ({n})" for k, n in sorted(served.items()))
    return (f"Warning: the {what} come from {len(served)} served snapshots: {names}; "
            "the model behind the name changed (pin one with --require-snapshot)")


# ---------------------------------------------------------------- length in the judge

LC_C = 100.0  # inverse strength of the weak L2 penalty on the slopes (sklearn's C; the intercept is free)


@dataclass(frozen=True)
class JudgeLength:
    """How answer length sways a pairwise judge.

    `decided`: judgements (per question and order, status ok) whose two scores differ and whose
    answers differ in word count; `longer_won`: those where the longer answer scored higher.
    `lc_winning_score`: the winning score with length controlled for (see `lc_winning_score`),
    beside `per_order_winning_score`, 1 + the mean of A's per-order outcome (win 1, tie 0, lose -1),
    which the model reproduces when length is not zeroed.
    """

    judgements: int
    decided: int
    longer_won: int
    per_order_winning_score: float | None
    lc_winning_score: float | None
    interval: tuple[float, float] | None
    length_coefficient: float | None

    @property
    def longer_wins(self) -> float | None:
        return self.longer_won / self.decided if self.decided else None

    def to_dict(self) -> dict[str, Any]:
        return {"judgements": self.judgements, "decided": self.decided, "longer_won": self.longer_won,
                "longer_wins": self.longer_wins, "per_order_winning_score": self.per_order_winning_score,
                "lc_winning_score": self.lc_winning_score,
                "lc_interval_95": list(self.interval) if self.interval else None,
                "length_coefficient": self.length_coefficient}

    def text(self) -> str:
        if not self.judgements:
            return "Length: n/a (no parsed score pair)"
        parts = []
        if self.decided:
            parts.append(f"the longer answer wins {self.longer_won}/{self.decided} decided judgements "
                         f"({self.longer_wins:.0%})")
        else:
            parts.append("no decided judgement (scores or lengths equal)")
        lc = f"{self.lc_winning_score:.3f}"
        if self.interval:
            lc += f" [{self.interval[0]:.3f}, {self.interval[1]:.3f}]"
        parts.append(f"length-controlled winning score {lc} (per order, uncontrolled: "
                     f"{self.per_order_winning_score:.3f})")
        return "Length: " + "; ".join(parts)


def lc_fits(y: Any, x: Any, weights: Any, *, c: float = LC_C, iterations: int = 100) -> Any:
    """Coefficients (intercept first) of logistic regressions of the fractional outcomes `y` on the
    columns `x`, one per row of `weights` (a bootstrap resample's count of each judgement), minimising
    sum(w * log loss) + |slopes|^2 / (2c) as sklearn's LogisticRegression(C=c) does, by Newton's
    method on all resamples at once (a thousand refits in one pass, which sklearn takes seconds per
    hundred for)."""
    import numpy as np

    design = np.column_stack([np.ones(len(y)), x])
    k = design.shape[1]
    ridge = np.diag([0.0] + [1.0 / c] * (k - 1))
    beta = np.zeros((weights.shape[0], k))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(beta @ design.T, -35, 35)))
        grad = (weights * (y - p)) @ design - beta @ ridge
        hess = np.einsum("rn,ni,nj->rij", weights * p * (1 - p), design, design) + ridge
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def judge_length(pairs: Sequence[Any], judgements: Sequence[Any], *, n_resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> JudgeLength:
    """Length statistics of judgements of `pairs` (AnswerPair: testset, id, answer_a, answer_b).

    The length-controlled winning score adapts AlpacaEval 2's length-controlled win rate to one
    pair of models: a logistic regression of A's per-order outcome (win 1, tie 1/2, lose 0) on the
    length difference words(A) - words(B) divided by its standard deviation (not centred, so 0 is
    "equally long") and, when both orders were judged, the order (1 for ab); its predicted win
    probability with the length difference set to 0, averaged over the judgements, is p, and the
    score is 2p (1 + P(win) - P(lose) on the winning score's 0-2 scale). The interval is a
    percentile bootstrap over questions (a question's orders stay together), refitting each
    resample, drawn with numpy's default_rng(seed).
    """
    import numpy as np

    by_key = {(p.testset, p.id): p for p in pairs}
    rows = []  # (question, outcome for A, words(A) - words(B), order is ab)
    decided = longer = 0
    for j in judgements:
        pair = by_key.get((j.testset, j.id))
        if pair is None or j.status != "ok" or not j.scores:
            continue
        first, second = j.scores
        a, b = (first, second) if j.order == "ab" else (second, first)
        diff = word_count(pair.answer_a) - word_count(pair.answer_b)
        rows.append(((j.testset, j.id), 1.0 if a > b else 0.0 if a < b else 0.5, diff, j.order == "ab"))
        if a != b and diff != 0:
            decided += 1
            longer += (a > b) == (diff > 0)
    if not rows:
        return JudgeLength(0, 0, 0, None, None, None, None)
    y = np.array([r[1] for r in rows])
    d = np.array([r[2] for r in rows], dtype=float)
    columns = []
    sd = d.std()
    if sd > 0:
        columns.append(d / sd)
    order = np.array([r[3] for r in rows], dtype=float)
    if 0 < order.mean() < 1:
        columns.append(order)
    x = np.column_stack(columns) if columns else np.zeros((len(rows), 0))
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r[0], []).append(i)
    members = list(groups.values())
    rng = np.random.default_rng(seed)
    weights = np.ones((1 + n_resamples, len(rows)))
    for r, drawn in enumerate(rng.integers(0, len(members), size=(n_resamples, len(members))), start=1):
        counts = np.bincount(drawn, minlength=len(members))
        for g, rows_of_g in enumerate(members):
            weights[r, rows_of_g] = counts[g]
    scores = _lc_scores(y, x, weights, length=sd > 0)
    tail = (1 - level) / 2 * 100
    interval = None
    if n_resamples:
        lo, hi = np.percentile(scores[1:], [tail, 100 - tail])
        interval = (float(lo), float(hi))
    slope = None
    if sd > 0 and len(set(y)) > 1:
        slope = float(lc_fits(y, x, weights[:1])[0, 1])
    return JudgeLength(len(rows), decided, longer, float(2 * y.mean()), float(scores[0]), interval, slope)


def _lc_scores(y: Any, x: Any, weights: Any, *, length: bool) -> Any:
    """2 x the mean predicted win probability at zero length difference, per row of `weights`.
    A resample whose outcomes are all alike has nothing to fit: its score is 2 x that outcome."""
    import numpy as np

    total = weights.sum(axis=1)
    mean_y = (weights * y).sum(axis=1) / total
    scores = 2 * mean_y
    varied = ((weights > 0) & (y != y[np.argmax(weights > 0, axis=1)][:, None])).any(axis=1)
    if x.shape[1] and varied.any():
        beta = lc_fits(y, x, weights[varied])
        zeroed = x.copy()
        if length:
            zeroed[:, 0] = 0.0
        p = 1.0 / (1.0 + np.exp(-np.clip(beta[:, :1] + beta[:, 1:] @ zeroed.T, -35, 35)))
        scores[varied] = 2 * (weights[varied] * p).sum(axis=1) / total[varied]
    return scores
