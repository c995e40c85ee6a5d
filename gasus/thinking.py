"""Reasoning models: their thinking kept apart from their answer, and budgets that grow until it fits.

A reasoning grader or judge (Qwen3, DeepSeek-R1 distills, gpt-oss, o-series) thinks before it
answers: inline, as a leading `<think>...</think>` block, or in a separate reasoning field of an
OpenAI-compatible reply (`reasoning_content`, kept by the openai backend as "reasoning"). Every
backend's cached value goes through `split_reply` before the paper's parsers run, so nothing the
model wrote while thinking is ever read as a score, and the thinking is written beside the result.

A reply cut off inside its thinking is asked again with twice the token budget, up to a cap
(`run_growing`); each budget is its own cache entry, so a rerun pays for none of them. One still
cut off at the cap has the status "truncated".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

THINKING_CHOICES = ("auto", "on", "off")  # auto: whatever the model does
DEFAULT_TOKEN_CAP = 4096
OPEN, CLOSE = "<think>", "</think>"
_OPEN = re.compile(r"\A\s*<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    """A completion split into the model's thinking and its answer.

    `cut` is True when the reply ended inside the thinking (an unclosed `<think>`, or the token
    budget spent before the answer began): the answer is then empty and no score can be read.
    """

    answer: str
    reasoning: str | None
    cut: bool


def split_text(text: str | None, thinks: bool = False) -> tuple[str, str | None, bool]:
    """(answer, thinking, unclosed) of a completion text with an optional leading thought.

    A reply whose chat template opened the `<think>` itself (DeepSeek-R1's) starts inside the
    thought and shows only the closing tag. Such a bare `</think>` ends a thought only when the
    model is known to think (`thinks`): in a plain model's reply it is text the model wrote (a
    quoted row ending `</think>\\n5`), and what follows it is no answer of its own.

    >>> split_text("<think>\\nIt says 5 somewhere.\\n</think>\\n\\n4.5\\nAccurate.")
    ('4.5\\nAccurate.', 'It says 5 somewhere.', False)
    >>> split_text("Maybe 3.\\n</think>\\n4", thinks=True)
    ('4', 'Maybe 3.', False)
    >>> split_text("1\\nIt quotes </think>\\n5")
    ('1\\nIt quotes </think>\\n5', None, False)
    >>> split_text("<think>\\nScore: 5, or")
    ('', 'Score: 5, or', True)
    >>> split_text("4.5\\nAccurate.")
    ('4.5\\nAccurate.', None, False)
    """
    text = text or ""
    opened = _OPEN.match(text)
    if not opened and not thinks:
        return text, None, False
    body = text[opened.end():] if opened else text
    close = _CLOSE.search(body)  # the first one: a later tag is part of the answer
    if close is None:
        if opened:
            return "", body.strip(), True
        return text, None, False
    return body[close.end():].lstrip(), body[:close.start()].strip(), False


def split_reply(value: dict[str, Any], thinks: bool = False) -> Reply:
    """The answer and thinking of one cached completion, whatever backend wrote it.

    `thinks`: the model is known to think before it answers (`model_thinks`), so a bare `</think>`
    ends its thought. A reply whose thinking came in a reasoning field has had its thought taken
    out already: its text is all answer, and a `</think>` in it is never a thought's end.

    >>> split_reply({"text": "4", "reasoning": "Looks right.", "finish_reason": "stop"})
    Reply(answer='4', reasoning='Looks right.', cut=False)
    >>> split_reply({"text": "", "reasoning": "First, the", "finish_reason": "length"})
    Reply(answer='', reasoning='First, the', cut=True)
    >>> split_reply({"text": "1\\n</think>\\n5", "reasoning": "Hm.", "finish_reason": "stop"}, thinks=True)
    Reply(answer='1\\n</think>\\n5', reasoning='Hm.', cut=False)
    """
    field = value.get("reasoning")
    field = field if isinstance(field, str) and field else None
    answer, inline, unclosed = split_text(value.get("text"), thinks and field is None)
    parts = [p for p in (field, inline) if p]
    reasoning = "\n\n".join(parts) if parts else None
    # The budget ran out before any answer: the thinking took it all (a plain model always answers).
    spent = value.get("finish_reason") == "length" and reasoning is not None and not answer.strip()
    return Reply(answer, reasoning, unclosed or spent)


def model_thinks(model: Any, request: Any) -> bool:
    """Whether the model behind a request is known to think before it answers: --thinking on, or
    (auto) a backend that sees a reasoning model's chat template; never with --thinking off."""
    thinking = request.params.get("thinking", "auto")
    if thinking != "auto":
        return thinking == "on"
    thinks = getattr(model.backend, "thinks", None)
    return bool(thinks(request)) if thinks is not None else False


# GBNF rules of an optional thinking block ahead of what a grammar asks for (`admit_thinking`).
# GBNF has no lookahead: the thought is spelled as text in which "</think>" never occurs whole.
THOUGHT_RULES = r'''thinking-block ::= "<think>" thinking-text "</think>" [ \t\n]*
thinking-text ::= ([^<] | "<"+ thinking-not-close)*
thinking-not-close ::= [^/<] | "/" ([^t<] | "t" ([^h<] | "h" ([^i<] | "i" ([^n<] | "n" ([^k<] | "k" [^><])))))
'''


def admit_thinking(grammar: str) -> str:
    r"""A llama.cpp grammar that allows an optional `<think>...</think>` block before what
    `grammar` allows, so a reasoning GGUF held to a score line can still think first.

    >>> print(admit_thinking(r'root ::= [0-5] "\n"'))
    root ::= thinking-block? thinking-answer
    thinking-answer ::= [0-5] "\n"
    thinking-block ::= "<think>" thinking-text "</think>" [ \t\n]*
    thinking-text ::= ([^<] | "<"+ thinking-not-close)*
    thinking-not-close ::= [^/<] | "/" ([^t<] | "t" ([^h<] | "h" ([^i<] | "i" ([^n<] | "n" ([^k<] | "k" [^><])))))
    <BLANKLINE>
    """
    body = re.sub(r"^root(\s*::=)", r"thinking-answer\1", grammar, count=1, flags=re.MULTILINE)
    return "root ::= thinking-block? thinking-answer\n" + body.rstrip("\n") + "\n" + THOUGHT_RULES


def template_thinks(template: str | None) -> bool:
    """Whether a chat template is a reasoning model's (it writes or strips `<think>` blocks)."""
    return OPEN in (template or "")


def template_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """What a local chat template is given for a request's thinking setting: Qwen3's
    `enable_thinking` (vLLM and llama.cpp server pass the same through `chat_template_kwargs`).
    Templates that do not know it ignore it.

    >>> template_kwargs({"thinking": "off"}), template_kwargs({})
    ({'enable_thinking': False}, {})
    """
    thinking = params.get("thinking", "auto")
    return {} if thinking == "auto" else {"enable_thinking": thinking == "on"}


def with_budget(request: Any, max_tokens: int) -> Any:
    """The same request with another token budget (a key of its own). A score-mode request no
    longer stops at the first newline: the model evidently thinks, and thoughts span lines."""
    params = {**request.params, "max_tokens": max_tokens}
    if params.get("mode") == "score":
        params.pop("stop", None)
    return type(request)(request.messages, params)


def run_growing(model: Any, requests: Sequence[Any], *, cap: int = DEFAULT_TOKEN_CAP,
                on_result: Callable[[int, Any], None] | None = None,
                refresh: Collection[int] = (), run: Callable[..., list[Any]] | None = None,
                collect: bool = True, thinks: bool = False) -> list[Any]:
    """`model.run(requests)`, asking each reply cut off inside its thinking again with twice its
    budget until it fits or the budget reaches `cap`. Returns each request's last result;
    `on_result` hears of it once it is final. Positions in `refresh` are asked again at every budget.
    `run` stands in for `model.run` (a batch runner: each round is then its own batch).
    Without `collect`, results go to `on_result` only and none is held (the list returned is empty).
    `thinks`: the model is known to think (`model_thinks`), as `split_reply` takes it.
    """
    run = run or model.run
    results: list[Any] = [None] * len(requests) if collect else []
    current = list(range(len(requests)))
    round_requests = requests  # a lazy sequence stays lazy: the first round renders each request when asked
    round_refresh = set(refresh)
    while current:
        grow: list[int] = []

        def take(j: int, result: Any, current=current, round_requests=round_requests, grow=grow) -> None:
            i = current[j]
            if collect:
                results[i] = result
            if result.value is not None and split_reply(result.value, thinks).cut and \
                    0 < int(round_requests[j].params.get("max_tokens") or 0) < cap:
                grow.append(j)
            elif on_result is not None:
                on_result(i, result)

        # each result reaches `take`: the round's own list need not hold them
        run(round_requests, take, refresh={j for j, i in enumerate(current) if i in round_refresh}, collect=False)
        grow.sort()
        round_requests = [with_budget(round_requests[j], min(cap, 2 * int(round_requests[j].params["max_tokens"])))
                          for j in grow]
        current = [current[j] for j in grow]
    return results


def final_value(model: Any, request: Any, *, cap: int = DEFAULT_TOKEN_CAP,
                thinks: bool = False) -> dict[str, Any] | None:
    """The cached value `run_growing` would end on for one request (None when the cache lacks a step)."""
    value = model.cache.get(model.key(request))
    while value is not None and split_reply(value, thinks).cut:
        budget = int(request.params.get("max_tokens") or 0)
        if not 0 < budget < cap:
            break
        request = with_budget(request, min(cap, 2 * budget))
        value = model.cache.get(model.key(request))
    return value


def seen_completion_tokens(cache: Any, backend: str, label: str) -> tuple[int, float | None]:
    """(how many, mean completion tokens) of the replies the cache holds from one model: what a
    reasoning model really writes per call (its thinking included), for a dry run's estimate."""
    count = total = 0
    for _, entry in cache.entries():
        if entry.get("backend") != backend or entry.get("model") != label:
            continue
        value = entry.get("value")
        usage = value.get("usage") if isinstance(value, dict) else None
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            count += 1
            total += tokens
    return count, (total / count if count else None)
