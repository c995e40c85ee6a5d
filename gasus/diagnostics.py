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
    """Spearman's rank correlation (average ranks for ties), or None when either side is constant."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr(x, y).statistic)
    return None if math.isnan(rho) else rho


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
                "kept_share_by_length_quintile": self.quintiles}

    def warnings(self) -> list[str]:
        out = []
        if self.collapsed:
            out.append(f"Warning: scores collapsed: {self.modal_count} of {self.ok} ok grades "
                       f"({self.modal_share:.1%}) are {self.modal_score:g} (collapsed at >= {self.collapse_share:.0%}); "
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

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    rows = []
    for q, part in enumerate(np.array_split(np.array(order, dtype=int), QUINTILES), start=1):
        if not len(part):
            continue
        k = sum(bool(kept[i]) for i in part)
        rows.append({"quintile": q, "rows": len(part), "min_words": int(lengths[part[0]]),
                     "max_words": int(lengths[part[-1]]), "kept": k, "kept_share": k / len(part)})
    return rows


def score_health(scores: Sequence[float], lengths: Sequence[int] | None = None, kept: Sequence[bool] | None = None,
                 *, collapse_share: float = COLLAPSE_SHARE, length_bias_rho: float = LENGTH_BIAS_RHO) -> ScoreHealth:
    """Score health of the ok grades' `scores`, with their responses' word counts and whether each
    was kept (for the kept share per length quintile) when known."""
    counts = Counter(scores)
    modal, modal_count = (None, 0)
    if counts:
        # the most common score; of equally common ones, the highest (the one a keep rule meets first)
        modal, modal_count = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    rho = quintiles = None
    if lengths is not None:
        rho = spearman(list(scores), list(lengths))
        if kept is not None and scores:
            quintiles = length_quintiles(lengths, kept)
    return ScoreHealth(len(scores), None if modal is None else float(modal), modal_count, len(counts),
                       collapse_share, rho, length_bias_rho, quintiles)


def grade_health(examples: Sequence[Any] | None, grades: Sequence[Any], kept_ids: set[str] | None = None, *,
                 threshold: float = 4.5, collapse_share: float = COLLAPSE_SHARE,
                 length_bias_rho: float = LENGTH_BIAS_RHO) -> ScoreHealth:
    """score_health of grades, joined to their examples on id (their responses' lengths) when
    given; a row is kept when its id is in `kept_ids`, or else when its score >= threshold."""
    outputs = None if examples is None else {e.id: e.output for e in examples}
    ok = [g for g in grades if g.ok and (outputs is None or g.id in outputs)]
    scores = [g.score for g in ok]
    lengths = None if outputs is None else [word_count(outputs[g.id]) for g in ok]
    kept = [g.id in kept_ids if kept_ids is not None else g.score >= threshold for g in ok]
    return score_health(scores, lengths, kept, collapse_share=collapse_share, length_bias_rho=length_bias_rho)


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
