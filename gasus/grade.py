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
from typing import Any

from .backends.base import CachedModel, Request, Result
from .errors import BadInputError
from .parsing import parse_score, score_distribution
from .prompts import Template, load_template, template_from_file
from .records import Example, Grade

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


def grade_request(prompt: GradingPrompt, example: Example, mode: str) -> Request:
    """The model call that grades one example. The template's hash is part of the request."""
    messages = prompt.messages(example)
    if mode == "generate":
        return Request.chat(messages, temperature=0, max_tokens=PAPER_MAX_TOKENS, prompt=prompt.version)
    if mode == "score":
        return Request.chat(messages, mode="score", temperature=0, max_tokens=SCORE_MAX_TOKENS,
                            stop=["\n"], prompt=prompt.version)
    if mode == "expected":
        return Request.chat(messages, mode="expected", prompt=prompt.version)
    raise BadInputError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")


def grade_from_value(value: dict[str, Any], mode: str) -> dict[str, Any]:
    """score, status, raw, probs and top_score of one cached completion (parsing happens here)."""
    if mode == "expected":
        dist = score_distribution(value.get("logprobs"))
        probs = None if dist.probs is None else {k: round(p, 6) for k, p in dist.probs.items()}
        return {"score": None if dist.expected is None else round(dist.expected, 6), "status": dist.status,
                "raw": value.get("text"), "probs": probs, "top_score": dist.top}
    parsed = parse_score(value.get("text"))
    return {"score": parsed.score if parsed.ok else None, "status": parsed.status,
            "raw": value.get("text"), "probs": None, "top_score": None}


def make_grade(example: Example, result: Result, *, grader: str, dimension: str, mode: str) -> Grade:
    if result.value is None:
        fields = {"score": None, "status": "error", "raw": result.error, "probs": None, "top_score": None}
    else:
        fields = grade_from_value(result.value, mode)
    return Grade(id=example.id, index=example.index, grader=grader, dimension=dimension, mode=mode, **fields)


class _Requests(Sequence[Request]):
    """The grading request of each example, rendered when asked for: a cached rerun of a million rows
    needs each one's key once, and holding every rendered prompt would take gigabytes."""

    def __init__(self, prompt: GradingPrompt, examples: Sequence[Example], mode: str):
        self.prompt, self.examples, self.mode = prompt, examples, mode
        if examples:
            grade_request(prompt, examples[0], mode)  # an unknown mode fails now, as before

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):  # type: ignore[override]
        return grade_request(self.prompt, self.examples[i], self.mode)


def grade_examples(examples: Sequence[Example], model: CachedModel, *, prompt: GradingPrompt,
                   dimension: str = "accuracy", mode: str = "generate", retry_failed: bool = False,
                   on_grade: Callable[[int, Grade, bool], None] | None = None) -> list[Grade]:
    """One grade per example, in order. Identical examples share one call; cached ones cost nothing.

    With `retry_failed`, examples whose cached answer did not parse or was out of range are asked
    again (failed calls are never cached, so they are always asked again).
    `on_grade(position, grade, from_cache)` is told of each grade as it is known.
    """
    requests = _Requests(prompt, examples, mode)
    refresh: set[int] = set()
    if retry_failed:
        for i, request in enumerate(requests):
            value = model.cache.get(model.key(request))
            if value is not None and grade_from_value(value, mode)["status"] != "ok":
                refresh.add(i)
    grader = model.backend.label
    grades: list[Grade | None] = [None] * len(examples)

    def on_result(i: int, result: Result) -> None:
        grades[i] = make_grade(examples[i], result, grader=grader, dimension=dimension, mode=mode)
        if on_grade is not None:
            on_grade(i, grades[i], result.cached)

    model.run(requests, on_result, refresh=refresh)
    return grades  # type: ignore[return-value]


# ---------------------------------------------------------------- planning (--dry-run)

# US dollars per million tokens (input, output), list prices of mid-2025; --price-table overrides.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
}
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
    price: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "unique": self.unique, "misses": self.misses,
                "estimated_input_tokens": self.input_tokens, "max_output_tokens": self.output_tokens,
                "estimated_cost_usd": None if self.cost_usd is None else round(self.cost_usd, 4)}


def load_price_table(path: str | Path) -> dict[str, tuple[float, float]]:
    """A JSON object {"model": [input, output]} or {"model": {"input": x, "output": y}}, USD per 1M tokens."""
    from .io import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a price table is a JSON object of model -> [input, output] USD per 1M tokens")
    table = {}
    for name, value in data.items():
        if isinstance(value, dict):
            value = [value.get("input"), value.get("output")]
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)):
            raise BadInputError(f"{path}: the price of '{name}' must be [input, output] USD per 1M tokens")
        table[name] = (float(value[0]), float(value[1]))
    return table


def price_for(model_name: str, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The longest table entry the model name starts with ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini")."""
    matches = [k for k in table if model_name == k or model_name.startswith(k + "-")]
    return table[max(matches, key=len)] if matches else None


def plan_grading(examples: Sequence[Example], model: CachedModel, *, prompt: GradingPrompt, mode: str,
                 prices: dict[str, tuple[float, float]] | None = None) -> Plan:
    """Cache misses of a run and, for an API grader, estimated tokens and cost. Calls no model."""
    requests = [grade_request(prompt, e, mode) for e in examples]
    keys = [model.key(r) for r in requests]
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    missing = [i for key, i in first.items() if key not in model.cache]
    chars = sum(len(m["content"]) for i in missing for m in requests[i].messages)
    input_tokens = math.ceil(chars / CHARS_PER_TOKEN)
    per_call = {"generate": PAPER_MAX_TOKENS, "score": SCORE_MAX_TOKENS, "expected": 1}[mode]
    output_tokens = per_call * len(missing)
    price = cost = None
    if model.backend.name == "openai":
        price = price_for(model.backend.target, {**PRICES, **(prices or {})})
        if price is not None:
            cost = (input_tokens * price[0] + output_tokens * price[1]) / 1e6
    return Plan(len(examples), len(first), len(missing), input_tokens, output_tokens, cost, price)


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
    return {s: counts.get(s, 0) for s in ("ok", "unparsed", "out_of_range", "error")}


def write_scores(path: str | Path, grades: Sequence[Grade]) -> int:
    """The scores file (DESIGN.md): one line per input row, in input order, written atomically."""
    from .io import write_jsonl

    return write_jsonl(path, (g.to_dict() for g in grades))
