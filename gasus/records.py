"""The records that flow between stages: frozen dataclasses, no I/O."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

import orjson


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every hash in gasus is taken over."""
    if no_floats(obj):  # orjson writes these as json.dumps does; floats it may write otherwise (1e16)
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:  # an integer beyond 64 bits, a lone surrogate: json below
            pass
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def no_floats(obj: Any) -> bool:
    """Whether a value is built of dicts, lists, tuples, strings, integers, booleans and None only."""
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:  # keys: orjson refuses any but strings, and json below writes them
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is not str and kind is not int and kind is not bool and item is not None:
            return False
    return True


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def example_id(instruction: str, input: str, output: str) -> str:
    """The content id of a triplet (DESIGN.md): identical rows share one id and one grade.

    >>> example_id("Say hi.", "", "Hi.")[:12]
    'f25ff450dad5'
    """
    if type(instruction) is str and type(input) is str and type(output) is str:
        # canonical_json of three strings through orjson, which escapes every character as json.dumps
        # (ensure_ascii=False) does: the same bytes, keys in sorted order, at a fraction of the cost
        try:
            return hashlib.sha256(orjson.dumps({"input": input, "instruction": instruction,
                                                "output": output})).hexdigest()
        except orjson.JSONEncodeError:  # a lone surrogate: fails below as it always did
            pass
    return sha256_text(canonical_json({"instruction": instruction, "input": input, "output": output}))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class _Record:
    """to_dict / from_dict shared by the records below."""

    def to_dict(self) -> dict[str, Any]:
        """What dataclasses.asdict gives, without its generic recursion and deep copy of every value
        (a cost at a million rows): records hold plain values, so only containers are copied."""
        values = ((name, getattr(self, name)) for name in _field_names(type(self)))
        return {name: copy.deepcopy(v) if isinstance(v, (dict, list, tuple)) else v for name, v in values}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


class _ContentId:
    """Example.id: computed the first time it is asked for (by every join), then kept on the instance.
    functools.cached_property does the same but takes a lock on each first read (Python 3.11): a
    second per example, at a million examples."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, example: Example | None, owner: type | None = None) -> Any:
        if example is None:
            return self
        value = example.__dict__[self.name] = example_id(example.instruction, example.input, example.output)
        return value


@dataclass(frozen=True)
class Example(_Record):
    """One instruction-tuning triplet, with its row index and any extra fields of the source."""

    index: int
    instruction: str
    input: str
    output: str
    extra: dict[str, Any] = field(default_factory=dict)

    id = _ContentId()  # not a field: the content id of the three texts (example_id)

    def to_dict(self) -> dict[str, Any]:
        """The Alpaca record: the three fields first, extra fields kept after them."""
        return {"instruction": self.instruction, "input": self.input, "output": self.output, **self.extra}


SCORE_STATUSES = ("ok", "unparsed", "out_of_range", "error", "truncated")


@dataclass(frozen=True)
class Grade(_Record):
    """One line of a scores file (DESIGN.md)."""

    id: str
    index: int
    score: float | None
    status: str
    grader: str
    dimension: str
    mode: str
    raw: str | None
    probs: dict[str, float] | None = None
    top_score: float | None = None
    reasoning: str | None = None  # a reasoning grader's thinking, never parsed

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.score is not None


@dataclass(frozen=True)
class Answer(_Record):
    """One model's answer to one test-set question."""

    testset: str
    id: str
    question: str
    answer: str
    model: str


@dataclass(frozen=True)
class Judgement(_Record):
    """A judge's score pair for one question in one answer order ("ab": A shown first)."""

    testset: str
    id: str
    order: str
    scores: list[float] | None
    status: str
    raw: str | None
    reasoning: str | None = None  # a reasoning judge's thinking, never parsed


@dataclass(frozen=True)
class Verdict(_Record):
    """Model A's result on one question after both orders are combined."""

    testset: str
    id: str
    verdict: str
