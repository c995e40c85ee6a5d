"""Answers to the test questions: each model answers with the Alpaca prompt, greedily.

The prompt is the one training uses (gasus/prompts/alpaca_*.txt), sent without a chat
template, as the paper's generation script does; Self-Instruct tasks with an input use the
"with input" variant. `prompt_style="chat"` sends the bare question as a chat message instead,
for chat models (an OpenAI model, an instruct GGUF) used as a baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .backends.base import CachedModel, Request, Result
from .errors import BadInputError
from .prompts import alpaca_prompt
from .records import Answer
from .testsets import TestQuestion

# The paper generates up to 1024 tokens (generation.py: max_length=1024).
DEFAULT_MAX_NEW_TOKENS = 1024
PROMPT_STYLES = ("alpaca", "chat")


def answer_request(question: TestQuestion, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                   prompt_style: str = "alpaca") -> Request:
    """The greedy request that answers one question."""
    if prompt_style == "alpaca":
        return Request.raw(alpaca_prompt(question.instruction, question.input),
                           temperature=0, max_tokens=max_new_tokens)
    if prompt_style == "chat":
        return Request.chat([{"role": "user", "content": question.question}],
                            temperature=0, max_tokens=max_new_tokens)
    raise BadInputError(f"unknown prompt style '{prompt_style}': choose alpaca or chat")


@dataclass(frozen=True)
class GenerationResult:
    """The answers that came back, in question order, and the questions whose call failed."""

    answers: list[Answer]
    failed: list[tuple[TestQuestion, str]]


def generate_answers(model: CachedModel, questions: Sequence[TestQuestion], *, model_name: str | None = None,
                     max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, prompt_style: str = "alpaca",
                     on_result: Callable[[int, Result], None] | None = None) -> GenerationResult:
    """Answer every question through the cache; `model_name` is what the answers file calls the model."""
    if max_new_tokens < 1:
        raise BadInputError("--max-new-tokens must be at least 1")
    requests = [answer_request(q, max_new_tokens=max_new_tokens, prompt_style=prompt_style) for q in questions]
    results = model.run(requests, on_result)
    name = model_name or model.backend.label
    answers, failed = [], []
    for q, result in zip(questions, results):
        if result.value is None:
            failed.append((q, result.error or "unknown error"))
        else:
            answers.append(Answer(q.testset, q.id, q.question, result.value.get("text", "").strip(), name))
    return GenerationResult(answers, failed)
