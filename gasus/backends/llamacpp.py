"""A local GGUF model through llama-cpp-python: greedy, seeded, the GGUF's own chat template.

Three ways to answer a request (`params["mode"]`):
- "generate" (default): sample up to `max_tokens` tokens greedily;
- "score": the same, under a grammar that lets the model write only a 0-5 score line (or
  the grammar the request names in params["grammar"], such as the judge's score pair);
- "expected": no sampling at all: one forward pass and the log-probabilities of the score
  tokens "0".."5" at the answer position. The KV cache of the longest prefix shared with the
  previous prompt is kept, so a batch of grading prompts pays only for its unshared tokens.

`llama_cpp` is imported on the first call, never at import time: a fully cached run does
not even load the model (identity and chat template come from the file without llama.cpp).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import threading
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import BackendError, MissingDependencyError
from ..parsing import SCORE_TOKENS
from ..records import sha256_text
from ..thinking import THOUGHT_RULES, admit_thinking, template_kwargs, template_thinks
from .base import (
    Backend,
    BackendOptions,
    Request,
    chat_fragments,
    cpu_count,
    file_sha256,
    single_token_ids,
)

# A 0-5 score written the way the paper's graders write it (a whole or a half/decimal step),
# then the end of the line; the grammar then allows nothing but the end of the text.
# Prompts are decoded in blocks of this many tokens starting at multiples of it (see evaluate_prompt).
PREFIX_BLOCK = 32

SCORE_GRAMMAR = r'''root ::= score "\n"
score ::= [0-4] ("." [0-9])? | "5" (".0")?
'''


def runtime_version() -> str:
    """The installed llama-cpp-python version, read without importing it (that loads llama.cpp)."""
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "not installed"


def gguf_chat_template(path: str | Path, cache: Any = None) -> str | None:
    """The chat template stored in a GGUF file's metadata (None when it has none).

    Read from the file's header alone (no llama.cpp, no tensors), and memoised in the cache by
    the file's hash, so a fully cached rerun costs two cache lookups.
    """
    digest = file_sha256(path, cache)
    memo = f"chat-template:{digest}"
    if cache is not None:
        hit = cache.get(memo)
        if hit is not None:
            return hit["template"]
    try:
        with open(path, "rb") as handle:
            template = read_gguf_string(handle, "tokenizer.chat_template")
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path}: not a readable GGUF file: {exc}") from None
    if cache is not None:
        cache.put(memo, {"template": template}, backend="gguf", model=str(path))
    return template


# GGUF metadata value types -> struct format of one value (8: string, 9: array).
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_string(handle: BinaryIO, wanted: str) -> str | None:
    """One string value from a GGUF header (little-endian, version 2 or later), skipping the
    rest. The `gguf` package's reader parses every field, seconds for a 49k-token vocabulary."""

    def unpack(fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, handle.read(size))[0]

    def read_str() -> bytes:
        return handle.read(unpack("Q"))

    def skip(kind: int) -> None:
        if kind in _GGUF_SCALARS:
            handle.seek(struct.calcsize("<" + _GGUF_SCALARS[kind]), 1)
        elif kind == 8:
            handle.seek(unpack("Q"), 1)
        elif kind == 9:
            inner, count = unpack("I"), unpack("Q")
            if inner in _GGUF_SCALARS:
                handle.seek(count * struct.calcsize("<" + _GGUF_SCALARS[inner]), 1)
            else:
                for _ in range(count):
                    skip(inner)
        else:
            raise ValueError(f"unknown GGUF value type {kind}")

    if handle.read(4) != b"GGUF":
        raise ValueError("no GGUF magic number")
    if unpack("I") < 2:
        raise ValueError("GGUF version 1 is not supported")
    unpack("Q")  # tensor count
    for _ in range(unpack("Q")):
        key = read_str().decode("utf-8")
        kind = unpack("I")
        if key == wanted and kind == 8:
            return read_str().decode("utf-8")
        skip(kind)
    return None


@contextlib.contextmanager
def _plain_weight_buffers(llama_cpp: Any) -> Iterator[None]:
    """Load weights without llama.cpp's "extra buffer types" (AMX tiles, runtime repacking).

    A native build on a host whose CPU advertises AMX enables AMX kernels, but virtual
    machines (Firecracker among them) may not run them: the first batched prompt dies with
    SIGILL in `tilezero`. Plain buffers run everywhere and give the same results on every
    machine; GASUS_LLAMACPP_EXTRA_BUFFERS=1 turns the faster kernels back on.
    """
    if os.environ.get("GASUS_LLAMACPP_EXTRA_BUFFERS") == "1":
        yield
        return
    module = llama_cpp.llama.llama_cpp  # the name Llama.__init__ calls
    original = module.llama_model_default_params

    def default_params():
        params = original()
        params.use_extra_bufts = False
        return params

    with _PATCH_LOCK:
        module.llama_model_default_params = default_params
        try:
            yield
        finally:
            module.llama_model_default_params = original


_PATCH_LOCK = threading.Lock()


class LlamaCppBackend(Backend):
    """`llamacpp:PATH.gguf`: a GGUF model run on the CPU (or whatever llama.cpp was built for)."""

    name = "llamacpp"

    def __init__(self, target: str, options: BackendOptions | None = None):
        super().__init__(target, options)
        self._llm: Any = None
        self._formatter: Any = None
        self._eos_text = ""
        self._score_ids: list[int] | None = None
        self._grammars: dict[str, Any] = {}
        self._controls: list[str] | None = None
        self._prompt_end = 0  # how many leading tokens of llm.input_ids are a prompt decoded in blocks
        # What the model did since it was loaded; the speed benchmark reads these.
        self.prompt_tokens = 0        # prompt tokens of the requests answered
        self.evaluated_tokens = 0     # prompt tokens actually run through the model
        self.eval_seconds = 0.0       # time spent in forward passes of prompts (expected mode)

    @property
    def label(self) -> str:
        return f"{self.name}:{Path(self.target).name}"

    def identity(self) -> str:
        return file_sha256(self.target, self.cache)

    def cache_params(self) -> dict[str, Any]:
        template = gguf_chat_template(self.target, self.cache)
        params = {
            "runtime": f"llama-cpp-python {runtime_version()}",
            "chat_template": template,
            "score_grammar": sha256_text(SCORE_GRAMMAR)[:16],
            # other kernels may round differently
            "extra_buffers": os.environ.get("GASUS_LLAMACPP_EXTRA_BUFFERS") == "1",
            # the blocks a prompt is decoded in decide how its KV cache is rounded
            "prefix_block": PREFIX_BLOCK,
            "seed": self.options.seed,
            # Prompts before this held data's marker text as control tokens: their answers may differ.
            "data_as_text": True,
        }
        if template_thinks(template):  # a reasoning model's score grammar admits its thinking
            params["thinking_grammar"] = sha256_text(THOUGHT_RULES)[:16]
        return params

    def thinks(self, request: Request) -> bool:
        """Whether the model will think before it answers: --thinking on, or auto with a
        reasoning model's chat template (off renders the template without thinking)."""
        thinking = request.params.get("thinking", "auto")
        if thinking != "auto" or request.is_raw:
            return thinking == "on"
        return template_thinks(gguf_chat_template(self.target, self.cache))

    def refusal(self, request: Request) -> str | None:
        if request.params.get("mode") == "expected" and self.thinks(request):
            return ("the model thinks before it answers, so its first token is not the score that --mode expected "
                    "reads; use --thinking off (the chat template then writes an empty thought) or --mode score")
        return super().refusal(request)

    # -------------------------------------------------------------- the model

    @property
    def llm(self) -> Any:
        """The llama_cpp.Llama, loaded on first use."""
        if self._llm is None:
            self._load()
        return self._llm

    def _load(self) -> None:
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise MissingDependencyError("llama_cpp", "The llamacpp backend", "llama-cpp-python") from None
        if not Path(self.target).is_file():
            raise BackendError(f"{self.target}: no such model file")
        threads = self.options.n_threads or cpu_count()
        try:
            with _plain_weight_buffers(llama_cpp):
                llm = llama_cpp.Llama(
                    model_path=str(self.target), n_ctx=self.options.n_ctx, n_threads=threads,
                    n_threads_batch=threads, seed=self.options.seed, verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.target}: llama.cpp cannot load the model: {exc}") from None
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            eos, bos = llm.token_eos(), llm.token_bos()
            self._eos_text = llm._model.token_get_text(eos) if eos != -1 else ""
            bos_text = llm._model.token_get_text(bos) if bos != -1 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=self._eos_text,
                                                  bos_token=bos_text, add_generation_prompt=True)
        self._llm = llm

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    # -------------------------------------------------------------- prompts

    def prompt_tokens_of(self, request: Request) -> list[int]:
        """The tokens the model reads for a request: the rendered chat, or the raw text."""
        llm = self.llm
        if request.is_raw:
            return llm.tokenize(request.messages[0]["content"].encode("utf-8"), add_bos=True, special=False)
        if self._formatter is None:
            raise BackendError(f"{self.target}: the GGUF file has no chat template; use a chat model")
        try:
            extra = template_kwargs(request.params)  # --thinking on/off, by Qwen3's convention
            fragments = chat_fragments(lambda ms: self._formatter(messages=ms, **extra).prompt, request.messages,
                                       self._control_texts())
        except BackendError as exc:
            raise BackendError(f"{self.target}: {exc}") from None
        # Like llama-cpp-python's own chat handler: the template writes any BOS itself. Only the
        # template's markers are parsed as special tokens; the data in between is text.
        tokens: list[int] = []
        for text, special in fragments:
            tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        return tokens

    def _control_texts(self) -> list[str]:
        """The texts of the vocabulary's control tokens (what special=True parses and special=False does not)."""
        if self._controls is None:
            import llama_cpp

            model = self.llm._model
            wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
            self._controls = [model.token_get_text(i) for i in range(self.llm.n_vocab())
                              if model.token_get_attr(i) & wanted]
        return self._controls

    def _check_fits(self, tokens: list[int], max_tokens: int) -> None:
        # llama.cpp may pad the context it allocates; llama-cpp-python's buffers hold what was asked.
        n_ctx = min(self.llm.n_ctx(), len(self.llm.input_ids))
        if len(tokens) + max_tokens > n_ctx:
            raise BackendError(
                f"the prompt has {len(tokens)} tokens; with {max_tokens} to generate it exceeds the "
                f"context of {n_ctx} (raise --n-ctx)"
            )

    # -------------------------------------------------------------- completion

    def complete(self, request: Request) -> dict[str, Any]:
        mode = request.params.get("mode", "generate")
        tokens = self.prompt_tokens_of(request)
        self.prompt_tokens += len(tokens)
        if mode == "expected":
            return self._expected(tokens)
        if mode not in ("generate", "score"):
            raise BackendError(f"unknown mode '{mode}' (generate, score or expected)")
        max_tokens = int(request.params.get("max_tokens", 8 if mode == "score" else 256))
        self._check_fits(tokens, max_tokens)
        kwargs: dict[str, Any] = {}
        thinks = mode == "score" and self.thinks(request)
        if mode == "score":
            # A request may bring its own grammar (the judge's score pair); it is then part of the key.
            grammar = request.params.get("grammar") or SCORE_GRAMMAR
            kwargs["grammar"] = self._compiled_grammar(admit_thinking(grammar) if thinks else grammar)
        if not request.is_raw and self._eos_text:
            kwargs["stop"] = [self._eos_text]
        if request.params.get("stop") and not thinks:  # a thought spans lines; the grammar ends the answer
            kwargs["stop"] = kwargs.get("stop", []) + list(request.params["stop"])
        # The prompt goes through evaluate_prompt, so its numbers never depend on what was asked
        # before; create_completion then finds it cached and starts sampling at once.
        self.evaluate_prompt(tokens)
        try:
            out = self.llm.create_completion(
                prompt=tokens, max_tokens=max_tokens, temperature=float(request.params.get("temperature", 0.0)),
                top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.0, seed=self.options.seed, **kwargs,
            )
        except (ValueError, RuntimeError) as exc:
            self._reset()
            raise BackendError(f"llama.cpp failed on the request: {exc}") from None
        choice = out["choices"][0]
        return {"text": choice["text"], "finish_reason": choice.get("finish_reason"),
                "usage": {"prompt_tokens": out["usage"]["prompt_tokens"],
                          "completion_tokens": out["usage"]["completion_tokens"]}}

    def _compiled_grammar(self, text: str) -> Any:
        if text not in self._grammars:
            from llama_cpp import LlamaGrammar

            try:
                self._grammars[text] = LlamaGrammar.from_string(text, verbose=False)
            except ValueError as exc:
                raise BackendError(f"the request's grammar does not compile: {exc}") from None
        return self._grammars[text]

    def score_token_ids(self) -> list[int]:
        """The vocabulary ids of "0".."5"; each must be a single token."""
        if self._score_ids is None:
            self._score_ids = single_token_ids(
                lambda t: self.llm.tokenize(t.encode(), add_bos=False, special=False), SCORE_TOKENS, self.target)
        return self._score_ids

    def evaluate_prompt(self, tokens: list[int]) -> Any:
        """Run the prompt through the model, reusing the KV cache of the prefix it shares with
        the previous prompt; returns the last position's logits (a numpy array).

        Tokens are always decoded in blocks that start at multiples of PREFIX_BLOCK, and only
        whole blocks are reused: the KV cache of a block then depends on the tokens alone, so
        the logits are bit for bit those of a fresh model, whatever was graded before (a rerun
        after a kill, or a run in another order, gives identical grades).
        """
        import llama_cpp
        import numpy as np

        llm = self.llm
        self._check_fits(tokens, 0)
        shared = llm.longest_token_prefix(llm.input_ids[:min(self._prompt_end, llm.n_tokens)].tolist(), tokens)
        keep = min(shared, len(tokens) - 1) // PREFIX_BLOCK * PREFIX_BLOCK  # the last token always runs
        llm.n_tokens = keep  # eval() drops the KV cache from n_tokens on
        self._prompt_end = 0
        started = time.perf_counter()
        try:
            for start in range(keep, len(tokens), PREFIX_BLOCK):
                llm.eval(tokens[start:start + PREFIX_BLOCK])
        except RuntimeError as exc:
            self._reset()
            raise BackendError(f"llama.cpp failed on the request: {exc}") from None
        self._prompt_end = len(tokens)
        pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float64)
        self.eval_seconds += time.perf_counter() - started
        self.evaluated_tokens += len(tokens) - keep
        return logits

    def _reset(self) -> None:
        if self._llm is not None:
            self._llm.reset()
        self._prompt_end = 0

    def _expected(self, tokens: list[int]) -> dict[str, Any]:
        import numpy as np

        ids = self.score_token_ids()
        logits = self.evaluate_prompt(tokens)
        peak = float(np.max(logits))
        log_total = peak + math.log(float(np.sum(np.exp(logits - peak))))
        logprobs = {d: float(logits[i] - log_total) for d, i in zip(SCORE_TOKENS, ids)}
        top_id = int(np.argmax(logits))
        top_text = self.llm.detokenize([top_id]).decode("utf-8", errors="replace")
        return {"text": top_text, "logprobs": logprobs, "usage": {"prompt_tokens": len(tokens), "completion_tokens": 0}}
