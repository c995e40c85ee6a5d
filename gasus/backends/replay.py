"""Recorded responses: reproduce someone else's run offline, call for call."""

from __future__ import annotations

from typing import Any

from ..errors import BadInputError, CacheMissError
from ..io import iter_jsonl
from ..records import canonical_json
from .base import Backend, BackendOptions, Request, file_sha256


def messages_key(messages: Any) -> str:
    return canonical_json([{"role": m["role"], "content": m["content"]} for m in messages])


class ReplayBackend(Backend):
    """`replay:FILE.jsonl`, lines {"messages": [...], "text": "..."}, looked up by the exact messages."""

    name = "replay"
    modes = ("generate", "score")  # a recording holds text, not the score probabilities of "expected"

    def __init__(self, target: str, options: BackendOptions | None = None):
        super().__init__(target, options)
        self._table: dict[str, str] | None = None

    def identity(self) -> str:
        return file_sha256(self.target, self.cache)

    def _load(self) -> dict[str, str]:
        if self._table is None:
            table = {}
            for lineno, row in iter_jsonl(self.target):
                if not (isinstance(row, dict) and isinstance(row.get("messages"), list)
                        and isinstance(row.get("text"), str)):
                    raise BadInputError(
                        f"{self.target}: line {lineno}: a replay line needs 'messages' (a list) and 'text' (a string)"
                    )
                try:
                    table[messages_key(row["messages"])] = row["text"]
                except (KeyError, TypeError):
                    raise BadInputError(
                        f"{self.target}: line {lineno}: each message needs 'role' and 'content'"
                    ) from None
            self._table = table
        return self._table

    def complete(self, request: Request) -> dict[str, Any]:
        text = self._load().get(messages_key(request.messages))
        if text is None:
            first = request.messages[-1]["content"][:60].replace("\n", " ")
            raise CacheMissError(f"{self.target}: no recorded response for the prompt beginning '{first}...'")
        return {"text": text}
