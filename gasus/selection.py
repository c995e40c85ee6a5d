"""Selecting the training subset from grades: the paper's threshold rule, top-k, and the random baseline."""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInputError
from .io import DEFAULT_MAX_ROWS, in_bulk, iter_jsonl_objects
from .parsing import SCORE_SCALE
from .records import SCORE_STATUSES, Example, Grade

PAPER_THRESHOLD = 4.5


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_threshold(value: float, option: str = "--threshold") -> float:
    """A keep threshold must be a number within the score scale: NaN keeps nothing and would reach the
    summary, and no grade lies outside 0-5, so 7 would keep nothing and -1 everything."""
    if not math.isfinite(value):
        raise BadInputError(f"{option} must be a finite number, got {value}")
    low, high = SCORE_SCALE
    if not low <= value <= high:
        raise BadInputError(f"{option} must be within the score scale {low:g}-{high:g}, got {value:g}")
    return value


_STATUS = {status: status for status in SCORE_STATUSES}  # one string object per status, not one per line


def _checked_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any], str, int, float | None, str, float | None]]:
    """(line number, row, id, index, score, status, top_score) of each line of a scores file
    (DESIGN.md), checked for the fields selection relies on: finite scores (0-5 when ok), whole
    indexes, and one grade per id. Streamed: only the first grade of each id is held."""
    # each id's first grade, as one shared tuple per distinct (score, status, top_score): a tuple per
    # line would weigh 100 MB at a million lines; the first line of an id is looked up on a conflict
    seen: dict[str, tuple[float | None, str, float | None]] = {}
    grades: dict[tuple[float | None, str, float | None], tuple[float | None, str, float | None]] = {}
    for position, (lineno, row) in enumerate(iter_jsonl_objects(path)):
        grade_id, score, status = row.get("id"), row.get("score"), row.get("status")
        index, top_score = row.get("index", position), row.get("top_score")
        # the usual line passes one cheap test; any other is checked field by field, which says what is wrong
        if (type(grade_id) is str and type(status) is str and status in _STATUS
                and type(index) is int and index >= 0 and top_score is None
                and (score is None or (type(score) is float or type(score) is int) and 0 <= score <= 5)):
            score = None if score is None else float(score)
        else:
            score, top_score = _checked_line(f"{path}: line {lineno}", grade_id, score, status, index, top_score)
        status = _STATUS[status]
        grade = (score, status, top_score)
        first = seen.get(grade_id)
        if first is None:
            seen[grade_id] = grades.setdefault(grade, grade)
        elif first != grade:  # identical rows share an id, and must share its grade
            first_line = next(n for n, r in iter_jsonl_objects(path) if r.get("id") == grade_id)
            raise BadInputError(f"{path}: line {lineno}: id {grade_id[:12]} has score {first[0]} ({first[1]}) at line "
                                f"{first_line} and {score} ({status}) here")
        yield lineno, row, grade_id, index, score, status, top_score


def _checked_line(where: str, grade_id: Any, score: Any, status: Any, index: Any,
                  top_score: Any) -> tuple[float | None, float | None]:
    """The score and top_score of one line as floats, or the error that says what is wrong with it."""
    if not isinstance(grade_id, str):
        raise BadInputError(f"{where}: missing 'id'")
    if status not in SCORE_STATUSES:
        raise BadInputError(f"{where}: unknown status {status!r}")
    if score is not None and not _number(score):
        raise BadInputError(f"{where}: 'score' must be a number or null")
    if score is not None and not math.isfinite(score):
        raise BadInputError(f"{where}: 'score' must be a finite number, got {json.dumps(score)}")
    if status == "ok" and score is not None and not 0 <= score <= 5:
        raise BadInputError(f"{where}: 'score' {score:g} of an ok grade is outside 0-5")
    if top_score is not None and not (_number(top_score) and math.isfinite(top_score)):
        raise BadInputError(f"{where}: 'top_score' must be a finite number or null")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise BadInputError(f"{where}: 'index' must be a whole number >= 0")
    return None if score is None else float(score), None if top_score is None else float(top_score)


@in_bulk
def load_grades(path: str | Path) -> list[Grade]:
    """A scores file (DESIGN.md), each line checked (see _checked_lines)."""
    return [Grade(id=grade_id, index=index, score=score, status=status, grader=row.get("grader", ""),
                  dimension=row.get("dimension", ""), mode=row.get("mode", ""), raw=row.get("raw"),
                  probs=row.get("probs"), top_score=top_score)
            for _, row, grade_id, index, score, status, top_score in _checked_lines(path)]


@dataclass(frozen=True)
class ScoreIndex:
    """What selection needs of a scores file: each id's usable score (None when its grade is not
    ok), and how many lines are not ok. Checked as load_grades checks it, read as a stream and
    held without a Grade per line, so re-thresholding a million rows stays cheap."""

    scores: dict[str, float | None]
    not_ok: int
    repeats: dict[str, int]  # lines beyond the first, of the ids that have more than one
    expected: bool = False  # some usable score is an expected-mode mean (score health counts them on a grid)

    def __len__(self) -> int:
        return len(self.scores)


@in_bulk
def load_score_index(path: str | Path) -> ScoreIndex:
    return _index((grade_id, score, status, row.get("mode"))
                  for _, row, grade_id, _, score, status, _ in _checked_lines(path))


def score_index(grades: Sequence[Grade]) -> ScoreIndex:
    """The ScoreIndex of grades already loaded (what load_score_index gives for their file)."""
    return _index((g.id, g.score, g.status, g.mode) for g in grades)


def _index(grades: Iterable[tuple[str, float | None, str, str | None]]) -> ScoreIndex:
    scores: dict[str, float | None] = {}
    repeats: dict[str, int] = {}
    not_ok = 0
    expected = False
    for grade_id, score, status, mode in grades:
        usable = status == "ok" and score is not None
        if grade_id in scores:
            repeats[grade_id] = repeats.get(grade_id, 0) + 1
        scores[grade_id] = score if usable else None
        not_ok += not usable
        expected = expected or (usable and mode == "expected")
    return ScoreIndex(scores, not_ok, repeats, expected)


def not_ok_count(grades: Sequence[Grade] | ScoreIndex) -> int:
    """Lines of a scores file without a usable score."""
    return grades.not_ok if isinstance(grades, ScoreIndex) else sum(1 for g in grades if not g.ok)


@dataclass(frozen=True)
class Selection:
    """Which examples were kept, and why the rest were not."""

    kept: list[Example]
    total: int
    not_ok: int
    rule: str
    scored: list[tuple[Example, float]] | None = None  # the join: each example with a usable score, and the score

    @property
    def fraction(self) -> float:
        return len(self.kept) / self.total if self.total else 0.0


@in_bulk
def _usable(examples: Sequence[Example], grades: Sequence[Grade] | ScoreIndex) -> tuple[list[tuple[Example, float]], int]:
    """(example, score) of the examples with a usable score, and how many have none; ids present on
    one side only are an error."""
    index = grades if isinstance(grades, ScoreIndex) else score_index(grades)
    by_id = index.scores
    pairs, not_ok, missing, matched = [], 0, [], set()
    last_scored = -1  # the position of the last example with a score: are the missing ones all after it?
    for position, example in enumerate(examples):
        example_id = example.id
        if example_id not in by_id:
            missing.append(example)
            continue
        last_scored = position
        matched.add(example_id)
        score = by_id[example_id]
        if score is None:
            not_ok += 1
        else:
            pairs.append((example, score))
    if missing:
        first = f"{len(missing)} example(s) have no score (first: row {missing[0].index}, id {missing[0].id[:12]})"
        graded = len(examples) - len(missing)
        if graded and last_scored == graded - 1 and len(matched) == len(by_id):  # a prefix: grade --limit
            raise BadInputError(f"{first}; the scores cover the first {graded} of {len(examples)} rows (graded with "
                                f"--limit {graded}?): give select --limit {graded} to select among them")
        raise BadInputError(f"{first}; were the scores made from another dataset?")
    if len(matched) != len(by_id):
        extra = [i for i in by_id if i not in matched]
        raise BadInputError(
            f"{len(extra) + sum(index.repeats.get(i, 0) for i in extra)} score(s) match no example (first id {extra[0][:12]}); "
            "were the scores made from another dataset?"
        )
    return pairs, not_ok


@in_bulk
def select_threshold(examples: Sequence[Example], grades: Sequence[Grade] | ScoreIndex,
                     threshold: float = PAPER_THRESHOLD) -> Selection:
    """The paper's rule: keep examples whose score is >= threshold."""
    check_threshold(threshold)
    pairs, not_ok = _usable(examples, grades)
    kept = [e for e, s in pairs if s >= threshold]
    return Selection(kept, len(examples), not_ok, f"score >= {threshold:g}", pairs)


def select_top_k(examples: Sequence[Example], grades: Sequence[Grade] | ScoreIndex, k: int) -> Selection:
    """The k best-scored examples, ties broken by input order, kept in input order."""
    if k < 0:
        raise BadInputError("--top-k must be at least 0")
    pairs, not_ok = _usable(examples, grades)
    ranked = sorted(pairs, key=lambda p: (-p[1], p[0].index))[:k]
    kept = sorted((e for e, _ in ranked), key=lambda e: e.index)
    return Selection(kept, len(examples), not_ok, f"top {k} by score", pairs)


def random_indices(total: int, n: int, seed: int = 0) -> list[int]:
    """The row indexes of the paper's random baseline: n of total drawn uniformly with a seed, in order."""
    if n < 0:
        raise BadInputError("--random must be at least 0")
    if n > total:
        raise BadInputError(f"--random {n} asks for more examples than the dataset has ({total})")
    return sorted(random.Random(seed).sample(range(total), n))


def select_random(examples: Sequence[Example], n: int, seed: int = 0) -> Selection:
    """The paper's random baseline: n examples drawn uniformly with a seed, kept in input order."""
    chosen = random_indices(len(examples), n, seed)
    return Selection([examples[i] for i in chosen], len(examples), 0, f"random {n} (seed {seed})")


def select_random_from(source: str | Path, n: int, seed: int = 0, **load: Any) -> Selection:
    """select_random over a dataset file, holding only the n drawn examples (the same draw)."""
    from .io import count_rows, load_examples

    total = count_rows(source, split=load.get("split", "train"), max_rows=load.get("max_rows", DEFAULT_MAX_ROWS))
    chosen = random_indices(total, n, seed)
    kept = load_examples(source, keep=set(chosen), **load)
    return Selection(kept, total, 0, f"random {n} (seed {seed})")


@in_bulk
def sweep(examples: Sequence[Example], grades: Sequence[Grade] | ScoreIndex,
          thresholds: Sequence[float]) -> list[tuple[float, int, float]]:
    """(threshold, kept count, kept fraction) for each threshold, sharing one join."""
    pairs, _ = _usable(examples, grades)
    scores = sorted(s for _, s in pairs)
    total = len(examples)
    rows = []
    for t in thresholds:
        kept = len(scores) - bisect.bisect_left(scores, t)
        rows.append((t, kept, kept / total if total else 0.0))
    return rows


def parse_thresholds(text: str) -> list[float]:
    """'3.5,4,4.5' -> [3.5, 4.0, 4.5]."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadInputError(f"--sweep expects numbers separated by commas, got '{text}'") from None
    if not values:
        raise BadInputError("--sweep needs at least one threshold")
    for value in values:
        if not math.isfinite(value):
            raise BadInputError(f"--sweep thresholds must be finite numbers, got {value}")
        check_threshold(value, "--sweep thresholds")
    return values


# ---------------------------------------------------------------- exclusions and per-row decisions

KEPT = "selected"
RULE_REASONS = {"threshold": "below_threshold", "top_k": "not_in_top_k", "random": "random_baseline"}


def load_exclusions(path: str | Path, examples: Sequence[Example]) -> tuple[set[int], list[list[int]]]:
    """The rows a `gasus check` report marks: those that overlap a reference (contaminated), and the
    near-duplicate groups; every row it names must be the same row (index and id) of this dataset."""
    from .io import read_json

    report = read_json(path)
    if not (isinstance(report, dict) and isinstance(report.get("hits"), list)
            and isinstance(report.get("groups"), list)):
        raise BadInputError(f"{path}: not a `gasus check` report (expected an object with 'hits' and 'groups')")
    by_index = {e.index: e for e in examples}

    def row(index: Any, where: str) -> int:
        if not isinstance(index, int) or isinstance(index, bool) or index not in by_index:
            raise BadInputError(f"{path}: {where}: row {json.dumps(index)} is not a row of the dataset "
                                f"({len(examples)} rows); was the report made from another dataset?")
        return index

    contaminated = set()
    for n, hit in enumerate(report["hits"]):
        if not isinstance(hit, dict):
            raise BadInputError(f"{path}: hit {n}: expected an object")
        index = row(hit.get("index"), f"hit {n}")
        if hit.get("id") != by_index[index].id:
            raise BadInputError(f"{path}: hit {n}: row {index} has another id in the dataset; "
                                "was the report made from another dataset?")
        if hit.get("testset") != "self":
            contaminated.add(index)
    groups = []
    for n, group in enumerate(report["groups"]):
        if not isinstance(group, list) or len(group) < 2:
            raise BadInputError(f"{path}: group {n}: expected a list of at least two row indexes")
        groups.append(sorted({row(i, f"group {n}") for i in group}))
    return contaminated, groups


def excluded_rows(examples: Sequence[Example], grades: Sequence[Grade] | None, contaminated: set[int],
                  groups: Sequence[Sequence[int]]) -> dict[int, str]:
    """Row index -> why it may not be kept: contaminated, or a near-duplicate other than the best of its
    group (the best usable score among its clean rows, ties to the earlier row; the first clean row
    when there are no scores)."""
    excluded = {index: "contaminated" for index in contaminated}
    score = {}
    if grades is not None:
        by_id = {g.id: g for g in grades}
        score = {e.index: by_id[e.id].score for e in examples if e.id in by_id and by_id[e.id].ok}
    for group in groups:
        clean = [i for i in group if i not in contaminated]
        usable = [i for i in clean if i in score] if grades is not None else clean
        best = min(usable, key=lambda i: (-score.get(i, 0.0), i)) if usable else None
        excluded.update({i: "near_duplicate" for i in clean if i != best})
    return excluded


def without_rows(examples: Sequence[Example], grades: Sequence[Grade] | None,
                 excluded: Container[int]) -> tuple[list[Example], list[Grade] | None]:
    """The examples not excluded, and the grades of their ids (identical rows share one)."""
    remaining = [e for e in examples if e.index not in excluded]
    if grades is None:
        return remaining, None
    ids = {e.id for e in remaining}
    return remaining, [g for g in grades if g.id in ids]


def decisions(examples: Sequence[Example], grades: Sequence[Grade] | None, kept: Sequence[Example],
              rule: str, excluded: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """One record per input row: id, index, score, kept, and why (`selected` when kept; otherwise
    grade_failed, contaminated, near_duplicate, then the rule's reason: below_threshold,
    not_in_top_k or random_baseline)."""
    kept_rows = {e.index for e in kept}
    by_id = {g.id: g for g in grades} if grades is not None else {}
    excluded = excluded or {}
    out = []
    for e in examples:
        grade = by_id.get(e.id)
        if e.index in kept_rows:
            reason = KEPT
        elif grade is not None and not grade.ok:
            reason = "grade_failed"
        else:
            reason = excluded.get(e.index) or RULE_REASONS[rule]
        out.append({"id": e.id, "index": e.index, "score": grade.score if grade is not None else None,
                    "kept": e.index in kept_rows, "reason": reason})
    return out
