"""How far a grader's scores agree with reference keep/drop labels, or with another grader.

Against labels (`{"index", "kept_by_...": bool}`, joined on `index`): ROC AUC of the score,
and precision / recall / F1 of the keep rule `score >= T`. Against another scores file
(joined on `id`): Spearman's rank correlation of the scores and Cohen's kappa of the two
keep decisions (the paper's question of whether ChatGPT and Claude keep the same data).

A grade that is not "ok" is never kept (as in `gasus select`); rank statistics use only
examples both sides scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInputError
from .io import iter_jsonl_objects, read_jsonl_objects
from .records import Grade
from .selection import PAPER_THRESHOLD, check_threshold, load_grades
from .wording import counted

SCORE_FIELDS = ("score", "top_score")


@dataclass(frozen=True)
class Labels:
    """Reference keep/drop decisions by row index, and the field they came from."""

    kept: dict[int, bool]
    field: str


def is_scores_file(path: str | Path) -> bool:
    """Whether a JSON Lines file is a gasus scores file (its first line has id and status)."""
    first = next(iter_jsonl_objects(path), None)  # the rest is read once, by what loads the file
    if first is None:
        raise BadInputError(f"{path}: the file is empty")
    return "id" in first[1] and "status" in first[1]


def load_labels(path: str | Path, field: str | None = None) -> Labels:
    """Keep labels `{"index": int, FIELD: bool}`; FIELD defaults to the one boolean field of the rows."""
    rows = read_jsonl_objects(path)
    if not rows:
        raise BadInputError(f"{path}: the file is empty")
    if field is None:
        candidates = sorted(k for k, v in rows[0].items() if isinstance(v, bool))
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise BadInputError(f"{path}: cannot tell which field holds the keep label (boolean fields: {found}); "
                                "give --label-field")
        field = candidates[0]
    kept: dict[int, bool] = {}
    for lineno, row in enumerate(rows, start=1):
        index, value = row.get("index"), row.get(field)
        if isinstance(index, bool) or not isinstance(index, int):
            raise BadInputError(f"{path}: line {lineno}: 'index' must be an integer")
        if not isinstance(value, bool):
            raise BadInputError(f"{path}: line {lineno}: '{field}' must be true or false")
        if index in kept:
            raise BadInputError(f"{path}: line {lineno}: index {index} appears twice")
        kept[index] = value
    return Labels(kept, field)


def _value(grade: Grade, score_field: str) -> float | None:
    if not grade.ok:
        return None
    return grade.score if score_field == "score" else grade.top_score


def _check_top_scores(grades: Sequence[Grade], score_field: str, which: str) -> None:
    """Refuse top_score on grades that carry none: they are not from expected mode, and every one of them
    would count as "not ok" without a word on why."""
    if score_field != "top_score":
        return
    missing = [g for g in grades if g.ok and g.top_score is None]
    if missing:
        modes = ", ".join(sorted({g.mode or "(none)" for g in missing}))
        raise BadInputError(f"--score-field top_score: {counted(len(missing), 'ok grade')} of {which} "
                            f"{'has' if len(missing) == 1 else 'have'} no top_score (mode {modes}); only scores "
                            "of `gasus grade --mode expected` carry one: use --score-field score")


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def agree_with_labels(grades: Sequence[Grade], labels: Labels, *, threshold: float = PAPER_THRESHOLD,
                      score_field: str = "score") -> dict[str, Any]:
    """ROC AUC of the scores and precision/recall/F1 of `score >= threshold` against the labels."""
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    if score_field not in SCORE_FIELDS:
        raise BadInputError(f"unknown score field '{score_field}': choose one of {', '.join(SCORE_FIELDS)}")
    joined = [(g, labels.kept[g.index]) for g in grades if g.index in labels.kept]
    _check_top_scores([g for g, _ in joined], score_field, "SCORES")
    if not joined:
        raise BadInputError("no scored example has a label: the scores' 'index' values and the labels' do not overlap")
    truth = [y for _, y in joined]
    values = [_value(g, score_field) for g, _ in joined]
    predicted = [v is not None and v >= threshold for v in values]
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average="binary", zero_division=0)
    scored = [(v, y) for v, (_, y) in zip(values, joined) if v is not None]
    auc = None
    if scored and len({y for _, y in scored}) == 2:
        auc = float(roc_auc_score([y for _, y in scored], [v for v, _ in scored]))
    return {
        "kind": "labels", "label_field": labels.field, "score_field": score_field, "threshold": threshold,
        "joined": len(joined), "unlabelled": len(grades) - len(joined), "not_ok": sum(v is None for v in values),
        "label_kept": sum(truth), "grader_kept": sum(predicted),
        "true_positives": sum(1 for p, y in zip(predicted, truth) if p and y),
        "roc_auc": auc, "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "base_rate": sum(truth) / len(truth),
    }


def agree_with_scores(grades: Sequence[Grade], other: Sequence[Grade], *, threshold: float = PAPER_THRESHOLD,
                      score_field: str = "score") -> dict[str, Any]:
    """Spearman's rank correlation of two graders' scores and Cohen's kappa of their keep decisions."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    if score_field not in SCORE_FIELDS:
        raise BadInputError(f"unknown score field '{score_field}': choose one of {', '.join(SCORE_FIELDS)}")
    mine = {g.id: g for g in grades}
    theirs = {g.id: g for g in other}
    ids = [i for i in mine if i in theirs]
    if not ids:
        raise BadInputError("the two scores files share no example id: were they made from different datasets?")
    _check_top_scores([mine[i] for i in ids], score_field, "SCORES")
    _check_top_scores([theirs[i] for i in ids], score_field, "LABELS")
    a = [_value(mine[i], score_field) for i in ids]
    b = [_value(theirs[i], score_field) for i in ids]
    keep_a = [v is not None and v >= threshold for v in a]
    keep_b = [v is not None and v >= threshold for v in b]
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    rho = None
    if len(both) >= 2 and len({x for x, _ in both}) > 1 and len({y for _, y in both}) > 1:
        rho = _finite(spearmanr([x for x, _ in both], [y for _, y in both]).statistic)
    kappa = None
    if len(set(keep_a) | set(keep_b)) > 1:
        kappa = _finite(cohen_kappa_score(keep_a, keep_b))
    return {
        "kind": "scores", "score_field": score_field, "threshold": threshold,
        "joined": len(ids), "only_first": len(mine) - len(ids), "only_second": len(theirs) - len(ids),
        "both_scored": len(both), "spearman": rho, "cohen_kappa": kappa,
        "kept_first": sum(keep_a), "kept_second": sum(keep_b),
        "kept_both": sum(1 for x, y in zip(keep_a, keep_b) if x and y),
        "decision_agreement": sum(1 for x, y in zip(keep_a, keep_b) if x == y) / len(ids),
    }


def load_reference(path: str | Path, label_field: str | None = None) -> Labels | list[Grade]:
    """A labels file or another scores file (told apart by content)."""
    if is_scores_file(path):
        return load_grades(path)
    return load_labels(path, label_field)


def agree_with(grades: Sequence[Grade], reference: Labels | Sequence[Grade], *, threshold: float = PAPER_THRESHOLD,
               score_field: str = "score") -> dict[str, Any]:
    """agree_with_labels or agree_with_scores, as the reference is labels or grades."""
    if isinstance(reference, Labels):
        return agree_with_labels(grades, reference, threshold=threshold, score_field=score_field)
    return agree_with_scores(grades, reference, threshold=threshold, score_field=score_field)


def agree(scores_path: str | Path, reference_path: str | Path, *, threshold: float = PAPER_THRESHOLD,
          score_field: str = "score", label_field: str | None = None) -> dict[str, Any]:
    """Agreement of a scores file with a labels file or another scores file (told apart by content)."""
    check_threshold(threshold)
    grades = load_grades(scores_path)
    return agree_with(grades, load_reference(reference_path, label_field), threshold=threshold,
                      score_field=score_field)
