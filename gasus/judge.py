"""The pairwise judge: a judge LLM scores two models' answers to each test question, in
both answer orders, and the two orders are combined into a win, tie or lose for model A.

The prompt is the Vicuna-evaluation prompt the paper uses (gasus/prompts/judge_*.txt).
Verdict rule "paper": win if A wins both orders or wins one and ties the other; tie if both
tie or each order prefers a different answer; lose is the mirror. Rule "strict" (FastChat's):
a win needs both orders, and a win plus a tie is a tie. Winning score = (#Win - #Lose) / #Testset + 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.base import CachedModel, Request, Result
from .batch import batch_runner
from .errors import BadInputError
from .io import iter_jsonl
from .parsing import parse_score_pair
from .prompts import load_template
from .records import Answer, Judgement, Verdict
from .testsets import NAMES as TESTSET_ORDER
from .thinking import DEFAULT_TOKEN_CAP, final_value, model_thinks, run_growing, split_reply

if TYPE_CHECKING:
    from .batch import BatchOptions

ORDERS = ("ab", "ba")
ORDER_CHOICES = {"both": ("ab", "ba"), "ab": ("ab",), "ba": ("ba",)}
RULES = ("paper", "strict")
VERDICTS = ("win", "tie", "lose")
# AlpaGasus's evaluation script asks the judge for at most 256 tokens at temperature 0.
JUDGE_MAX_TOKENS = 256
JUDGE_MODES = ("generate", "score")
# `--mode score`: the judge may write only the paper's first line, two scores from 1 to 10.
# Local GGUF judges are held to it by this grammar; API judges stop at the line's end.
PAIR_GRAMMAR = r'''root ::= score " " score "\n"
score ::= [1-9] | "10"
'''
PAIR_MAX_TOKENS = 8


# ---------------------------------------------------------------- answers in, pairs out


def load_answers(path: str | Path) -> list[Answer]:
    """An answers file (DESIGN.md: {"testset", "id", "question", "answer", "model"} per line)."""
    answers = []
    seen: set[tuple[str, str]] = set()
    for lineno, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise BadInputError(f"{path}: line {lineno}: expected a JSON object")
        for name in ("testset", "id", "question", "answer"):
            if not isinstance(row.get(name), str):
                raise BadInputError(f"{path}: line {lineno}: an answer needs a string '{name}'")
        answer = Answer(row["testset"], row["id"], row["question"], row["answer"], str(row.get("model") or ""))
        key = (answer.testset, answer.id)
        if key in seen:
            raise BadInputError(f"{path}: line {lineno}: question {answer.testset}/{answer.id} is answered twice")
        seen.add(key)
        answers.append(answer)
    if not answers:
        raise BadInputError(f"{path}: the answers file is empty")
    return answers


@dataclass(frozen=True)
class AnswerPair:
    """Model A's and model B's answers to the same question."""

    testset: str
    id: str
    question: str
    answer_a: str
    answer_b: str


def _keys(keys: Sequence[tuple[str, str]], limit: int = 5) -> str:
    shown = ", ".join(f"{t}/{i}" for t, i in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def pair_answers(answers_a: Sequence[Answer], answers_b: Sequence[Answer],
                 name_a: str = "ANSWERS_A", name_b: str = "ANSWERS_B") -> list[AnswerPair]:
    """A's answers joined with B's on (testset, id), in A's order; every question must be in both."""
    by_key_b = {(b.testset, b.id): b for b in answers_b}
    keys_a = [(a.testset, a.id) for a in answers_a]
    set_a = set(keys_a)
    only_a = [k for k in keys_a if k not in by_key_b]
    only_b = [k for k in by_key_b if k not in set_a]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} question(s) answered in {name_a} only ({_keys(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} in {name_b} only ({_keys(only_b)})")
        raise BadInputError("the answers do not match: " + "; ".join(parts))
    pairs = []
    for a in answers_a:
        b = by_key_b[(a.testset, a.id)]
        if a.question != b.question:
            raise BadInputError(
                f"question {a.testset}/{a.id} differs between {name_a} and {name_b}: "
                "were they generated from the same test set?"
            )
        pairs.append(AnswerPair(a.testset, a.id, a.question, a.answer, b.answer))
    return pairs


# ---------------------------------------------------------------- asking the judge


def judge_messages(question: str, answer_1: str, answer_2: str) -> list[dict[str, str]]:
    """The paper's judge prompt (Vicuna evaluation, prompt_id 1) as chat messages."""
    return [
        {"role": "system", "content": load_template("judge_system").text},
        {"role": "user", "content": load_template("judge_user").render(
            question=question, answer_1=answer_1, answer_2=answer_2)},
    ]


def judge_request(pair: AnswerPair, order: str, *, max_tokens: int = JUDGE_MAX_TOKENS,
                  mode: str = "generate", thinking: str = "auto") -> Request:
    """The request for one order: "ab" shows A's answer as Assistant 1, "ba" shows B's first.

    Mode "generate" is the paper's: the judge writes its pair and explanation. Mode "score"
    stops after the pair line, under a grammar where the backend supports one.
    """
    first, second = (pair.answer_a, pair.answer_b) if order == "ab" else (pair.answer_b, pair.answer_a)
    messages = judge_messages(pair.question, first, second)
    extra = {} if thinking == "auto" else {"thinking": thinking}  # auto asks what was always asked
    if mode == "generate":
        return Request.chat(messages, temperature=0, max_tokens=max_tokens, **extra)
    if mode == "score":
        return Request.chat(messages, temperature=0, max_tokens=PAIR_MAX_TOKENS, mode="score",
                            grammar=PAIR_GRAMMAR, stop=["\n"], **extra)
    raise BadInputError(f"unknown judge mode '{mode}': choose {' or '.join(JUDGE_MODES)}")


def judgement_from(pair: AnswerPair, order: str, result: Result, thinks: bool = False) -> Judgement:
    """The judgement of one order's result; parsing happens here, on read."""
    if result.value is None:
        # Like a failed grade, the judgement keeps why the call failed.
        return Judgement(pair.testset, pair.id, order, None, "error", result.error)
    reply = split_reply(result.value, thinks)  # the thinking is never parsed
    if reply.cut:
        return Judgement(pair.testset, pair.id, order, None, "truncated", reply.answer, reply.reasoning)
    parsed = parse_score_pair(reply.answer)
    scores = list(parsed.scores) if parsed.scores else None
    return Judgement(pair.testset, pair.id, order, scores, parsed.status, reply.answer, reply.reasoning)


def run_judge(model: CachedModel, pairs: Sequence[AnswerPair], orders: Sequence[str] = ORDERS, *,
              max_tokens: int = JUDGE_MAX_TOKENS, mode: str = "generate",
              on_result: Callable[[int, Result], None] | None = None, thinking: str = "auto",
              max_tokens_cap: int = DEFAULT_TOKEN_CAP, batch: BatchOptions | None = None,
              on_poll: Callable[[list], None] | None = None, retry_failed: bool = False) -> list[Judgement]:
    """One judgement per (pair, order), each order its own cached call; parsing happens here, on read.
    A reply cut off inside its thinking is asked again with twice the budget, up to `max_tokens_cap`.
    With `retry_failed`, orders whose cached reply was truncated, did not parse or was out of range are
    asked again, as grade_examples does (failed calls are never cached, so they are always asked again).
    With `batch`, the cache misses are asked through provider batches (gasus.batch)."""
    for order in orders:
        if order not in ORDERS:
            raise BadInputError(f"unknown order '{order}': choose ab or ba")
    jobs = [(pair, order) for pair in pairs for order in orders]
    requests = [judge_request(p, o, max_tokens=max_tokens, mode=mode, thinking=thinking) for p, o in jobs]
    thinks = bool(requests) and model_thinks(model, requests[0])  # one model, one thinking setting
    refresh: set[int] = set()
    if retry_failed:
        for i, ((pair, order), request) in enumerate(zip(jobs, requests)):
            value = final_value(model, request, cap=max_tokens_cap, thinks=thinks)
            if value is not None and judgement_from(pair, order, Result(value, None, True), thinks).status != "ok":
                refresh.add(i)
    results = run_growing(model, requests, cap=max_tokens_cap, on_result=on_result, refresh=refresh,
                          run=batch_runner(model, batch, on_poll), thinks=thinks)
    return [judgement_from(pair, order, result, thinks) for (pair, order), result in zip(jobs, results)]


def load_judgements(path: str | Path) -> list[Judgement]:
    """A judgements file written by `gasus judge`."""
    out = []
    for lineno, row in iter_jsonl(path):
        if not (isinstance(row, dict) and isinstance(row.get("testset"), str) and isinstance(row.get("id"), str)
                and row.get("order") in ORDERS and isinstance(row.get("status"), str)):
            raise BadInputError(f"{path}: line {lineno}: not a judgement line (testset, id, order, scores, status)")
        out.append(Judgement.from_dict(row))
    return out


# ---------------------------------------------------------------- verdicts


def order_outcome(j: Judgement) -> str | None:
    """Model A's result in one order ("win"/"tie"/"lose"), or None when the pair did not parse."""
    if j.status != "ok" or not j.scores:
        return None
    first, second = j.scores
    a, b = (first, second) if j.order == "ab" else (second, first)
    return "win" if a > b else "lose" if a < b else "tie"


def combine(outcomes: Sequence[str], rule: str = "paper") -> str:
    """One verdict from the outcomes of the orders judged.

    >>> combine(["win", "tie"]), combine(["win", "lose"]), combine(["tie", "lose"])
    ('win', 'tie', 'lose')
    >>> combine(["win", "tie"], "strict"), combine(["win", "win"], "strict")
    ('tie', 'win')
    >>> combine(["lose"])
    'lose'
    """
    if rule not in RULES:
        raise BadInputError(f"unknown rule '{rule}': choose paper or strict")
    if rule == "strict":
        if all(o == "win" for o in outcomes):
            return "win"
        if all(o == "lose" for o in outcomes):
            return "lose"
        return "tie"
    total = sum({"win": 1, "tie": 0, "lose": -1}[o] for o in outcomes)
    return "win" if total > 0 else "lose" if total < 0 else "tie"


@dataclass(frozen=True)
class VerdictSet:
    """The verdicts of a run, and the questions that got none (an order failed or did not parse)."""

    verdicts: list[Verdict]
    unjudged: list[tuple[str, str]]


def verdicts_from(judgements: Sequence[Judgement], rule: str = "paper") -> VerdictSet:
    """Combine each question's orders into a verdict, in the order questions first appear."""
    grouped: dict[tuple[str, str], list[Judgement]] = {}
    for j in judgements:
        grouped.setdefault((j.testset, j.id), []).append(j)
    verdicts, unjudged = [], []
    for (testset, id_), js in grouped.items():
        outcomes = [order_outcome(j) for j in js]
        if any(o is None for o in outcomes):
            unjudged.append((testset, id_))
        else:
            verdicts.append(Verdict(testset, id_, combine(outcomes, rule)))  # type: ignore[arg-type]
    return VerdictSet(verdicts, unjudged)


def winning_score(win: int, lose: int, total: int) -> float | None:
    """(#Win - #Lose) / #Testset + 1: 1 is a draw, 2 wins everything, 0 loses everything.

    >>> winning_score(44, 14, 80)
    1.375
    """
    return None if total == 0 else (win - lose) / total + 1


def bootstrap_interval(groups: Sequence[Sequence[str]], *, n_resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the winning score over verdicts, resampled within each group
    (a test set), so the overall interval keeps each test set's weight."""
    import numpy as np

    groups = [g for g in groups if len(g)]
    if not groups:
        return None
    rng = np.random.default_rng(seed)
    value = {"win": 1, "tie": 0, "lose": -1, "unjudged": 0}
    total = sum(len(g) for g in groups)
    sums = np.zeros(n_resamples)
    for g in groups:
        v = np.array([value[x] for x in g], dtype=float)
        sums += v[rng.integers(0, len(v), size=(n_resamples, len(v)))].sum(axis=1)
    scores = sums / total + 1
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(scores, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Tally:
    """Win/Tie/Lose of one test set (or "overall"), with the winning score and its interval."""

    testset: str
    win: int
    tie: int
    lose: int
    unjudged: int
    score: float | None
    interval: tuple[float, float] | None

    @property
    def judged(self) -> int:
        return self.win + self.tie + self.lose

    @property
    def size(self) -> int:
        """#Testset, the winning score's denominator: judged and unjudged questions."""
        return self.judged + self.unjudged

    def to_dict(self) -> dict[str, Any]:
        return {"testset": self.testset, "win": self.win, "tie": self.tie, "lose": self.lose,
                "unjudged": self.unjudged, "testset_size": self.size, "winning_score": self.score,
                "interval_95": list(self.interval) if self.interval else None}


def _testset_sort_key(name: str) -> tuple[int, str]:
    return (TESTSET_ORDER.index(name), "") if name in TESTSET_ORDER else (len(TESTSET_ORDER), name)


def tally(result: VerdictSet, *, n_resamples: int = 1000, seed: int = 0) -> list[Tally]:
    """A row per test set (the paper's order) and an "overall" row when there is more than one."""
    by_set: dict[str, list[str]] = {}
    for v in result.verdicts:
        by_set.setdefault(v.testset, []).append(v.verdict)
    missing: dict[str, int] = {}
    for testset, _ in result.unjudged:
        missing[testset] = missing.get(testset, 0) + 1
        by_set.setdefault(testset, [])
    # The paper divides by #Testset: an unjudged question counts in it as neither win nor lose
    # (a 0 in the bootstrap too), so a judge that fails on lost questions cannot raise the score.
    counted = {name: vs + ["unjudged"] * missing.get(name, 0) for name, vs in by_set.items()}
    rows = []
    for name in sorted(by_set, key=_testset_sort_key):
        vs = by_set[name]
        w, t, ls = (vs.count(x) for x in VERDICTS)
        # A set with no question judged at all has no score: 1.000 would read as a draw.
        rows.append(Tally(name, w, t, ls, missing.get(name, 0), winning_score(w, ls, len(counted[name])) if vs else None,
                          bootstrap_interval([counted[name]], n_resamples=n_resamples, seed=seed) if vs else None))
    if len(rows) > 1:
        w, t, ls, u = (sum(getattr(r, k) for r in rows) for k in ("win", "tie", "lose", "unjudged"))
        judged = w + t + ls > 0
        rows.append(Tally("overall", w, t, ls, u, winning_score(w, ls, w + t + ls + u) if judged else None,
                          bootstrap_interval(list(counted.values()), n_resamples=n_resamples, seed=seed)
                          if judged else None))
    return rows


# ---------------------------------------------------------------- position bias


@dataclass(frozen=True)
class PositionBias:
    """How much the answer order sways the judge.

    `agreement`: of the questions judged in both orders, the share whose two orders give model A
    the same outcome. `first_wins` / `second_wins` / `ties`: shares of all parsed judgements in
    which Assistant 1 (the answer shown first) scored higher, lower, or the same.
    """

    both_orders: int
    agree: int
    judgements: int
    first_wins: int
    second_wins: int
    ties: int

    @property
    def agreement(self) -> float | None:
        return self.agree / self.both_orders if self.both_orders else None

    @property
    def first_win_rate(self) -> float | None:
        return self.first_wins / self.judgements if self.judgements else None

    def to_dict(self) -> dict[str, Any]:
        return {"both_orders": self.both_orders, "agree": self.agree, "agreement": self.agreement,
                "judgements": self.judgements, "first_wins": self.first_wins,
                "second_wins": self.second_wins, "ties": self.ties, "first_win_rate": self.first_win_rate}


def position_bias(judgements: Sequence[Judgement]) -> PositionBias:
    grouped: dict[tuple[str, str], dict[str, str | None]] = {}
    first = second = ties = n = 0
    for j in judgements:
        grouped.setdefault((j.testset, j.id), {})[j.order] = order_outcome(j)
        if j.status == "ok" and j.scores:
            n += 1
            s1, s2 = j.scores
            first += s1 > s2
            second += s1 < s2
            ties += s1 == s2
    both = agree = 0
    for outcomes in grouped.values():
        ab, ba = outcomes.get("ab"), outcomes.get("ba")
        if ab is not None and ba is not None:
            both += 1
            agree += ab == ba
    return PositionBias(both, agree, n, first, second, ties)


# ---------------------------------------------------------------- the whole stage


@dataclass
class JudgeReport:
    """Everything `gasus judge` shows: judgements, verdicts, the table rows and the position bias."""

    judgements: list[Judgement]
    verdicts: VerdictSet
    tallies: list[Tally]
    bias: PositionBias
    rule: str
    orders: tuple[str, ...]
    failures: list[str] = field(default_factory=list)


def summarize(judgements: list[Judgement], *, rule: str = "paper", orders: Sequence[str] = ORDERS,
              n_resamples: int = 1000, seed: int = 0) -> JudgeReport:
    result = verdicts_from(judgements, rule)
    return JudgeReport(judgements, result, tally(result, n_resamples=n_resamples, seed=seed),
                       position_bias(judgements), rule, tuple(orders))
