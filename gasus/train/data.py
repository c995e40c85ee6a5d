"""The training data: Alpaca prompt-completion rows, their tokenized features with the loss
mask, the check that each prompt leaves room for its response, and the data's fingerprint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BadInputError
from ..io import sha256_file
from ..prompts import alpaca_prompt
from ..records import Example, canonical_json, sha256_text


def training_rows(examples: Sequence[Example]) -> list[dict[str, str]]:
    """Prompt-completion rows: Alpaca's prompt, and the response the loss is taken on.

    As in Stanford Alpaca, the response follows "### Response:" directly; TRL appends EOS.

    >>> training_rows([Example(0, "Say hi.", "", "Hi.")])[0]["completion"]
    'Hi.'
    """
    return [{"prompt": alpaca_prompt(e.instruction, e.input), "completion": e.output} for e in examples]


def training_features(examples: Sequence[Example], tokenizer: Any) -> list[dict[str, list[int]]]:
    """The rows as trained on: `input_ids` (prompt, response, EOS) and `completion_mask` (1 on the
    response and EOS), as TRL would tokenize them, except that data is always text.

    TRL appends the EOS *text* and tokenizes with special tokens parsed, so a response holding
    "</s>" or "<|im_end|>" would put a real EOS (or turn marker) inside the loss. Here the data
    is tokenized with special tokens split into plain text, and the one EOS is appended by id.
    """
    features = []
    for row in training_rows(examples):
        prompt_ids = tokenizer(row["prompt"], split_special_tokens=True)["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"], split_special_tokens=True)["input_ids"]
        ids = ids + [tokenizer.eos_token_id]
        # The response starts where the two tokenizations part (a token may merge across the boundary).
        n = next((i for i, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))
        features.append({"input_ids": ids, "completion_mask": [0] * n + [1] * (len(ids) - n)})
    return features


def check_prompt_lengths(examples: Sequence[Example], tokenizer: Any, max_length: int) -> dict[str, int]:
    """Token counts of the prompts; an error when any prompt leaves no room for its response
    within max_length (TRL would drop such an example without a word)."""
    prompts = [row["prompt"] for row in training_rows(examples)]
    lengths = [len(ids) for ids in tokenizer(prompts, split_special_tokens=True)["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    too_long = sum(1 for n in lengths if n >= max_length)
    if too_long:
        raise BadInputError(
            f"the max length {max_length} is below the prompt length of {too_long} of {len(lengths)} examples "
            f"(longest prompt: {lengths[longest]} tokens, row {examples[longest].index}), leaving no room for "
            f"the response: use a max length of at least {lengths[longest] + 1}")
    return {"longest_prompt_tokens": lengths[longest], "prompt_tokens": sum(lengths)}


def data_fingerprint(examples: Sequence[Example], source: str | Path | None = None) -> dict[str, Any]:
    """Row count and sha256 of the training data: of the file's bytes when it is a local file,
    and always of the examples as trained on (their content ids, in order)."""
    info: dict[str, Any] = {"source": str(source) if source is not None else None, "rows": len(examples)}
    if source is not None and Path(source).is_file():
        info["sha256"] = sha256_file(source)
    else:
        info["sha256"] = None
    info["examples_sha256"] = sha256_text(canonical_json([e.id for e in examples]))
    return info
