"""Grading: an LLM rates every (instruction, input, response) triplet from 0 to 5 (the paper's step 1).

Three modes share the paper's prompt:
- "generate": the grader writes its score line and an explanation (at most 256 tokens, as in
  the paper); the score is parsed from what it wrote.
- "score": generation stops once the score line is written (a grammar on llamacpp, a stop at
  the newline elsewhere).
- "expected": one forward pass; the probability-weighted mean over the score tokens 0..5 at
  the answer position (fine-grained, few ties), plus the most likely score (the paper's rule).

Every call goes through the cache; parsing happens when a cached completion is read.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.base import CachedModel, Request, Result
from .batch import batch_runner
from .errors import BadInputError
from .parsing import parse_score, score_distribution
from .prompts import Template, load_template, template_from_file
from .records import SCORE_STATUSES, Example, Grade
from .thinking import (
    DEFAULT_TOKEN_CAP,
    final_value,
    model_thinks,
    run_growing,
    seen_completion_tokens,
    split_reply,
)

if TYPE_CHECKING:
    from .batch import BatchOptions

DIMENSIONS = ("accuracy", "helpfulness")
MODES = ("generate", "score", "expected")
# paper: the paper's prompt, verbatim (the default). hardened: the same rubric with the data between
# BEGIN/END markers, which the data itself cannot write, and an instruction to ignore instructions inside it.
VARIANTS = ("paper", "hardened")
_TRIPLES = re.compile(r"(<<(?=<)|>>(?=>))")  # a space after each such pair leaves no <<< or >>> at all
PAPER_MAX_TOKENS = 256  # the paper's rating script: temperature 0, max 256 tokens
SCORE_MAX_TOKENS = 8
BUCKETS = ("<3", "3", "3.5", "4", "4.5", "5")  # the paper's score histogram (its Figure 3)

_SYSTEM, _USER = "[system]\n", "[user]\n"
_FIELDS = ("instruction", "input", "output")


@dataclass(frozen=True)
class GradingPrompt:
    """A grading prompt: an optional system message and a user message with {instruction},
    {input} and {output} slots.

    A template file holds the user message alone, or both, written as
    `[system]` line, system text, `[user]` line, user text (to the end of the file, byte for byte).
    With `fence_markers`, every `<<<` or `>>>` inside the data is broken up (`<< <`, `>> >`), so a response cannot close
    the hardened prompt's `<<<END RESPONSE>>>` and write text that reads as the request's own.
    """

    name: str
    version: str
    system: Template | None
    user: Template
    fence_markers: bool = False

    @classmethod
    def from_template(cls, template: Template, fence_markers: bool = False) -> GradingPrompt:
        text = template.text
        system = None
        if text.startswith(_SYSTEM):
            end = text.find("\n" + _USER)
            if end < 0:
                raise BadInputError(f"prompt '{template.name}': a [system] section needs a [user] line after it")
            system = Template(template.name + ":system", text[len(_SYSTEM):end])
            text = text[end + 1 + len(_USER):]
        elif text.startswith(_USER):
            text = text[len(_USER):]
        user = Template(template.name + ":user", text)
        if system is not None:
            system.fields(_FIELDS, template.name)
        if "output" not in user.fields(_FIELDS, template.name):
            raise BadInputError(f"prompt '{template.name}': the user message must contain {{output}}, the response to grade")
        prompt = cls(template.name, template.version, system, user, fence_markers)
        prompt.messages(Example(0, "i", "x", "o"))  # a bad slot fails now, not on row 1,000
        return prompt

    def messages(self, example: Example) -> list[dict[str, str]]:
        fields = {"instruction": example.instruction, "input": example.input, "output": example.output}
        if self.fence_markers:
            fields = {name: _TRIPLES.sub(r"\1 ", text) for name, text in fields.items()}
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system.render(**fields)})
        messages.append({"role": "user", "content": self.user.render(**fields)})
        return messages


def grading_prompt(dimension: str = "accuracy", prompt_file: str | Path | None = None,
                   variant: str = "paper") -> GradingPrompt:
    """The paper's prompt for a dimension (or its hardened variant), or the user's template file."""
    if prompt_file is not None:
        return GradingPrompt.from_template(template_from_file(prompt_file))
    if dimension not in DIMENSIONS:
        raise BadInputError(f"unknown dimension '{dimension}': choose one of {', '.join(DIMENSIONS)}")
    if variant == "paper":
        return GradingPrompt.from_template(load_template(f"grade_{dimension}"))
    if variant == "hardened":
        return GradingPrompt.from_template(load_template(f"grade_{dimension}_hardened"), fence_markers=True)
    raise BadInputError(f"unknown prompt variant '{variant}': choose one of {', '.join(VARIANTS)}")


def grade_request(prompt: GradingPrompt, example: Example, mode: str, *, max_tokens: int | None = None,
                  thinking: str = "auto") -> Request:
    """The model call that grades one example. The template's hash is part of the request;
    `max_tokens` defaults to the paper's 256 (generate) or one score line (score)."""
    messages = prompt.messages(example)
    extra = {} if thinking == "auto" else {"thinking": thinking}  # auto asks what was always asked
    if mode == "generate":
        return Request.chat(messages, temperature=0, max_tokens=max_tokens or PAPER_MAX_TOKENS,
                            prompt=prompt.version, **extra)
    if mode == "score":
        return Request.chat(messages, mode="score", temperature=0, max_tokens=max_tokens or SCORE_MAX_TOKENS,
                            stop=["\n"], prompt=prompt.version, **extra)
    if mode == "expected":
        return Request.chat(messages, mode="expected", prompt=prompt.version, **extra)
    raise BadInputError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")


def grade_from_value(value: dict[str, Any], mode: str, thinks: bool = False) -> dict[str, Any]:
    """score, status, raw, probs and top_score of one cached completion (parsing happens here).
    `thinks`: the grader is known to think first (gasus.thinking.model_thinks)."""
    if mode == "expected":
        dist = score_distribution(value.get("logprobs"))
        probs = None if dist.probs is None else {k: round(p, 6) for k, p in dist.probs.items()}
        return {"score": None if dist.expected is None else round(dist.expected, 6), "status": dist.status,
                "raw": value.get("text"), "probs": probs, "top_score": dist.top}
    reply = split_reply(value, thinks)  # the thinking is never parsed
    if reply.cut:
        return {"score": None, "status": "truncated", "raw": reply.answer, "probs": None, "top_score": None,
                "reasoning": reply.reasoning}
    parsed = parse_score(reply.answer)
    return {"score": parsed.score if parsed.ok else None, "status": parsed.status,
            "raw": reply.answer, "probs": None, "top_score": None, "reasoning": reply.reasoning}


def make_grade(example: Example, result: Result, *, grader: str, dimension: str, mode: str,
               thinks: bool = False) -> Grade:
    if result.value is None:
        fields = {"score": None, "status": "error", "raw": result.error, "probs": None, "top_score": None}
    else:
        fields = grade_from_value(result.value, mode, thinks)
    return Grade(id=example.id, index=example.index, grader=grader, dimension=dimension, mode=mode, **fields)


class _Requests(Sequence[Request]):
    """The grading request of each example, rendered when asked for: a cached rerun of a million rows
    needs each one's key once, and holding every rendered prompt would take gigabytes."""

    def __init__(self, prompt: GradingPrompt, examples: Sequence[Example], mode: str, *,
                 max_tokens: int | None = None, thinking: str = "auto"):
        self.prompt, self.examples, self.mode = prompt, examples, mode
        self.options = {"max_tokens": max_tokens, "thinking": thinking}
        if examples:
            self[0]  # an unknown mode fails now, as before

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):  # type: ignore[override]
        return grade_request(self.prompt, self.examples[i], self.mode, **self.options)


def grade_examples(examples: Sequence[Example], model: CachedModel, *, prompt: GradingPrompt,
                   dimension: str = "accuracy", mode: str = "generate", retry_failed: bool = False,
                   on_grade: Callable[[int, Grade, bool], None] | None = None, max_tokens: int | None = None,
                   max_tokens_cap: int = DEFAULT_TOKEN_CAP, thinking: str = "auto",
                   batch: BatchOptions | None = None, on_poll: Callable[[list], None] | None = None) -> list[Grade]:
    """One grade per example, in order. Identical examples share one call; cached ones cost nothing.

    With `retry_failed`, examples whose cached answer did not parse, was out of range or was cut
    off in its thinking are asked again (failed calls are never cached, so they are always asked again).
    A reply cut off inside its thinking is asked again with twice the budget, up to `max_tokens_cap`.
    `on_grade(position, grade, from_cache)` is told of each grade as it is known.
    With `batch`, the cache misses are asked through provider batches (gasus.batch).
    """
    requests = _Requests(prompt, examples, mode, max_tokens=max_tokens, thinking=thinking)
    # every request of a run asks the same model with the same thinking setting
    thinks = bool(examples) and model_thinks(model, requests[0])
    refresh: set[int] = set()
    if retry_failed:
        for i, request in enumerate(requests):
            value = final_value(model, request, cap=max_tokens_cap, thinks=thinks)
            if value is not None and grade_from_value(value, mode, thinks)["status"] != "ok":
                refresh.add(i)
    grader = model.backend.label
    grades: list[Grade | None] = [None] * len(examples)

    def on_result(i: int, result: Result) -> None:
        grades[i] = make_grade(examples[i], result, grader=grader, dimension=dimension, mode=mode, thinks=thinks)
        if on_grade is not None:
            on_grade(i, grades[i], result.cached)

    run_growing(model, requests, cap=max_tokens_cap, on_result=on_result, refresh=refresh,
                run=batch_runner(model, batch, on_poll), collect=False, thinks=thinks)  # each reply lives on in its grade
    return grades  # type: ignore[return-value]


# ---------------------------------------------------------------- planning (--dry-run)

# US dollars per million tokens (input, output, and through the Batch API: batch input, batch
# output), list prices of mid-2025; --price-table overrides. A row without batch prices is
# taken at half its synchronous price, the Batch API's discount.
PRICES: dict[str, tuple[float, ...]] = {
    "gpt-3.5-turbo": (0.50, 1.50, 0.25, 0.75),
    "gpt-4o-mini": (0.15, 0.60, 0.075, 0.30),
    "gpt-4o": (2.50, 10.00, 1.25, 5.00),
    "gpt-4.1-nano": (0.10, 0.40, 0.05, 0.20),
    "gpt-4.1-mini": (0.40, 1.60, 0.20, 0.80),
    "gpt-4.1": (2.00, 8.00, 1.00, 4.00),
    "gpt-4-turbo": (10.00, 30.00, 5.00, 15.00),
    "gpt-4": (30.00, 60.00, 15.00, 30.00),
}
BATCH_DISCOUNT = 0.5
CHARS_PER_TOKEN = 4.0  # a rough English average; the estimate says so


@dataclass(frozen=True)
class Plan:
    """What a grading run still has to do."""

    examples: int
    unique: int
    misses: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    price: tuple[float, float, float, float] | None  # input, output, batch input, batch output
    batch_cost_usd: float | None = None
    replies_seen: int = 0  # cached replies of this model that output_tokens is estimated from (0: the budget)
    mean_output_tokens: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "unique": self.unique, "misses": self.misses,
                "estimated_input_tokens": self.input_tokens,
                "max_output_tokens" if not self.replies_seen else "estimated_output_tokens": self.output_tokens,
                "cached_replies_seen": self.replies_seen,
                "mean_output_tokens": None if self.mean_output_tokens is None else round(self.mean_output_tokens, 1),
                "estimated_cost_usd": None if self.cost_usd is None else round(self.cost_usd, 4),
                "estimated_batch_cost_usd": None if self.batch_cost_usd is None else round(self.batch_cost_usd, 4)}


def load_price_table(path: str | Path) -> dict[str, tuple[float, ...]]:
    """A JSON object {"model": [input, output]} or {"model": {"input": x, "output": y}}, USD per 1M tokens,
    optionally with the Batch API's prices: [input, output, batch_input, batch_output] or those keys."""
    from .io import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a price table is a JSON object of model -> [input, output] USD per 1M tokens")
    table = {}
    for name, value in data.items():
        if isinstance(value, dict):
            value = [value.get(k) for k in ("input", "output", "batch_input", "batch_output")
                     if k in value or k in ("input", "output")]
        if not (isinstance(value, list) and len(value) in (2, 4)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)):
            raise BadInputError(f"{path}: the price of '{name}' must be [input, output] or "
                                "[input, output, batch_input, batch_output] USD per 1M tokens")
        table[name] = tuple(float(v) for v in value)
    return table


def price_for(model_name: str, table: dict[str, tuple[float, ...]]) -> tuple[float, float, float, float] | None:
    """The longest table entry the model name starts with ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini"),
    as (input, output, batch input, batch output); batch prices default to half the synchronous ones."""
    matches = [k for k in table if model_name == k or model_name.startswith(k + "-")]
    if not matches:
        return None
    price = table[max(matches, key=len)]
    if len(price) == 2:
        price = (*price, price[0] * BATCH_DISCOUNT, price[1] * BATCH_DISCOUNT)
    return price  # type: ignore[return-value]


def plan_grading(examples: Sequence[Example], model: CachedModel, *, prompt: GradingPrompt, mode: str,
                 prices: dict[str, tuple[float, ...]] | None = None, max_tokens: int | None = None,
                 thinking: str = "auto") -> Plan:
    """Cache misses of a run and, for an API grader, estimated tokens and cost. Calls no model.

    Output tokens are the mean completion tokens of the replies the cache holds from this model
    (a reasoning grader's thinking included) when it holds any, else the budget of every call.
    """
    requests = _Requests(prompt, examples, mode, max_tokens=max_tokens, thinking=thinking)
    keys = model.keys(requests)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    missing = [i for key, i in first.items() if key not in model.cache]
    chars = sum(len(m["content"]) for i in missing for m in requests[i].messages)
    input_tokens = math.ceil(chars / CHARS_PER_TOKEN)
    per_call = 1 if mode == "expected" else int(requests[0].params["max_tokens"]) if requests else 0
    seen, mean = (0, None) if mode == "expected" else seen_completion_tokens(
        model.cache, model.backend.name, model.backend.label)
    output_tokens = math.ceil(mean * len(missing)) if mean is not None else per_call * len(missing)
    price = cost = batch_cost = None
    if model.backend.name == "openai":
        price = price_for(model.backend.target, {**PRICES, **(prices or {})})
        if price is not None:
            cost = (input_tokens * price[0] + output_tokens * price[1]) / 1e6
            batch_cost = (input_tokens * price[2] + output_tokens * price[3]) / 1e6
    return Plan(len(examples), len(first), len(missing), input_tokens, output_tokens, cost, price, batch_cost,
                seen, mean)


# ---------------------------------------------------------------- summaries


def bucket(score: float) -> str:
    """The paper's histogram bucket of a score: below 3, else its half step rounded down.

    >>> [bucket(s) for s in (2.9, 3.0, 3.74, 4.5, 4.99, 5.0)]
    ['<3', '3', '3.5', '4.5', '4.5', '5']
    """
    if score < 3:
        return "<3"
    return f"{math.floor(score * 2) / 2:g}"


def histogram(grades: Sequence[Grade]) -> dict[str, int]:
    counts = Counter(bucket(g.score) for g in grades if g.ok)
    return {b: counts.get(b, 0) for b in BUCKETS}


def status_counts(grades: Sequence[Grade]) -> dict[str, int]:
    counts = Counter(g.status for g in grades)
    return {s: counts.get(s, 0) for s in SCORE_STATUSES}


# Grades the model answered without a usable score: not call failures (those are `error`), but never kept.
UNUSABLE = ("unparsed", "out_of_range", "truncated")
UNUSABLE_WARN_SHARE = 0.1  # above this share of a run, the grades say more about the grader than the data


def unusable_counts(statuses: dict[str, int]) -> dict[str, int]:
    """The `unusable` of a summary: grades that came back without a usable score, by status."""
    return {s: statuses.get(s, 0) for s in UNUSABLE}


def unusable_warning(statuses: dict[str, int], *, mode: str, embedded: bool) -> str | None:
    """A warning when more than UNUSABLE_WARN_SHARE of the grades have no usable score, saying what helps.
    `embedded`: the grader is the embedded SmolLM2-135M, which rarely writes a score line the parser reads.

    >>> unusable_warning({"ok": 1, "unparsed": 2}, mode="generate", embedded=True)[:58]
    '2 of 3 grades have no usable score (2 unparsed) and are ne'
    >>> unusable_warning({"ok": 9, "truncated": 1}, mode="generate", embedded=False) is None
    True
    """
    counts = unusable_counts(statuses)
    unusable = sum(counts.values())
    total = sum(statuses.values())
    if not total or unusable / total <= UNUSABLE_WARN_SHARE:
        return None
    parts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
    advice = []
    if counts["unparsed"] or counts["out_of_range"]:
        if embedded and mode != "expected":
            advice.append("the embedded model rarely writes a score line the parser reads: grade with "
                          "--mode expected (a score for every row from one forward pass)")
        elif mode != "expected":
            advice.append("read their raw text in the scores file; a grader that follows the prompt better, "
                          "or --mode score, gives more")
        else:
            advice.append("the grader put little probability on the scores 0-5; try a grader that follows the prompt")
    if counts["truncated"]:
        advice.append("truncated replies ran out of tokens: raise --max-new-tokens-cap (or --max-new-tokens) "
                      "and rerun with --retry-failed")
    return f"{unusable} of {total} grades have no usable score ({parts}) and are never kept: " + "; ".join(advice)


def write_scores(path: str | Path, grades: Sequence[Grade]) -> int:
    """The scores file (DESIGN.md): one line per input row, in input order, written atomically."""
    from .io import write_jsonl

    return write_jsonl(path, (g.to_dict() for g in grades))
