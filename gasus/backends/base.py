"""The interface every model backend implements, and the cache that wraps any of them."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..cache import Cache, request_key
from ..diagnostics import served_key
from ..errors import BackendError, CacheMissError
from ..io import in_bulk, sha256_file

CLAIM_POLL_SECONDS = 0.05  # the first wait for another process's answer; grows to 1 s
SERVE_BLOCK = 20_000  # keys read from the cache at a time by serve_cached


@dataclass(frozen=True)
class BackendOptions:
    """Settings a backend may use; each backend reads the ones that apply to it."""

    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server URL"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the API key"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once (openai)"})
    timeout: float = field(default=120.0, metadata={"help": "seconds before a request is abandoned"})
    max_attempts: int = field(default=6, metadata={"help": "tries per request before it is an error"})
    retry_base: float = field(default=1.0, metadata={"help": "seconds of the first retry's backoff; doubles each try (openai)"})
    retry_max: float = field(default=60.0, metadata={"help": "longest wait between tries, Retry-After included (openai)"})
    n_ctx: int = field(default=4096, metadata={"help": "context length (llamacpp)"})
    n_threads: int | None = field(default=None, metadata={"help": "CPU threads (llamacpp); default all cores"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    batch_size: int = field(default=8, metadata={"help": "prompts per forward batch (hf)"})
    require_snapshot: str | None = field(default=None, metadata={
        "help": "refuse replies served by another snapshot: a served model name, fingerprint, or MODEL|FINGERPRINT"})

    def __post_init__(self):
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0 seconds")
        if self.retry_base < 0 or self.retry_max < 0:
            raise ValueError("retry waits cannot be negative")


@dataclass(frozen=True)
class Request:
    """One model call.

    `messages` are chat messages ({"role", "content"}). With params["template"] == "raw" the
    single message's content is the whole prompt, sent without a chat template (the Alpaca
    prompt of a fine-tuned model). `params` holds every decoding setting that changes the output.
    """

    messages: tuple[dict[str, str], ...]
    params: dict[str, Any]

    @classmethod
    def chat(cls, messages: Sequence[dict[str, str]], **params: Any) -> Request:
        return cls(tuple(dict(m) for m in messages), {"template": "chat", **params})

    @classmethod
    def raw(cls, prompt: str, **params: Any) -> Request:
        return cls(({"role": "user", "content": prompt},), {"template": "raw", **params})

    @property
    def is_raw(self) -> bool:
        return self.params.get("template") == "raw"


class TransientError(BackendError):
    """A failure worth retrying later (timeout, 5xx, connection); never cached.
    `kind` names it in summaries: "timeout", "connection", "http_503", "invalid_json"..."""

    def __init__(self, message: str = "", kind: str = "transient"):
        super().__init__(message)
        self.kind = kind


class Backend:
    """A model that completes requests. Backends know nothing of caching.

    Subclasses set `name`, take (target, options) and load their model lazily, on the first
    call of `complete`: a fully cached run never loads it.
    """

    name: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = ("generate", "score", "expected")  # the request modes it can answer

    def __init__(self, target: str, options: BackendOptions | None = None):
        self.target = target
        self.options = options or BackendOptions()
        self.cache: Cache | None = None  # set by CachedModel; lets identity() memoise file hashes
        self.retries: dict[str, int] = {}  # tries that failed and were tried again, by kind

    @property
    def label(self) -> str:
        """How this model is named in output files."""
        return f"{self.name}:{self.target}"

    def identity(self) -> str:
        """What names the model in the cache key (a file's sha256, a remote model's name)."""
        return self.target

    def cache_params(self) -> dict[str, Any]:
        """Settings outside the request that change the output (runtime version, chat template)."""
        return {}

    def refusal(self, request: Request) -> str | None:
        """Why this backend cannot honour the request as asked, or None when it can. Asked before
        any call: a backend never quietly answers something else than what was asked."""
        mode = request.params.get("mode", "generate")
        if mode not in self.modes:
            return f"the {self.name} backend cannot answer in mode '{mode}' (it answers {', '.join(self.modes)})"
        return None

    def thinks(self, request: Request) -> bool:
        """Whether the model is known to think before it answers (a bare `</think>` then ends its
        thought): --thinking on; a backend that reads the chat template also knows a reasoning model's."""
        return request.params.get("thinking") == "on"

    def complete(self, request: Request) -> dict[str, Any]:
        """The completion of one request: {"text": str, ...measured extras}."""
        raise NotImplementedError

    def snapshot_refusal(self, value: dict[str, Any]) -> str | None:
        """Why a reply (fresh or cached) is refused under `require_snapshot`, or None when it is taken."""
        want = self.options.require_snapshot
        if want is None:
            return None
        from ..diagnostics import served_key

        served = served_key(value)
        if served is not None and want in (served, value.get("served_model"), value.get("system_fingerprint")):
            return None
        got = f"was served by {served}" if served else "names no snapshot"
        return f"{self.label}: the reply {got}, not the required snapshot {want} (not cached)"

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, dict[str, Any] | BackendError]]:
        """(position, completion or error) for each request, in any order, as each finishes."""
        for i, request in enumerate(requests):
            try:
                yield i, self.complete(request)
            except BackendError as exc:
                yield i, exc

    def close(self) -> None:
        """Release the model."""


@dataclass
class CallStats:
    model_calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failures by kind ("timeout", "http_500", "error")
    retries: dict[str, int] = field(default_factory=dict)  # the backend's retries by kind
    served: dict[str, int] = field(default_factory=dict)  # replies by "MODEL|FINGERPRINT" that served them


@dataclass(frozen=True)
class Result:
    """The outcome of one request through the cache."""

    value: dict[str, Any] | None
    error: str | None
    cached: bool


DELIVERED = Result(None, "delivered, not kept", False)  # what a run without `collect` holds of each result


class CachedModel:
    """A backend behind the cache: hits cost nothing, misses are stored the moment they arrive.

    Transport failures are returned as errors and never stored, so a rerun asks again.
    With `offline=True` a miss is a CacheMissError instead of a model call.
    """

    def __init__(self, backend: Backend, cache: Cache, *, offline: bool = False):
        self.backend = backend
        self.cache = cache
        self.offline = offline
        self.stats = CallStats()
        self._identity: str | None = None
        self._params: dict[str, Any] | None = None
        backend.cache = cache

    def key(self, request: Request) -> str:
        if self._identity is None:
            self._identity = self.backend.identity()
            self._params = self.backend.cache_params()
        params = {**request.params, **(self._params or {})}
        return request_key(self.backend.name, self._identity, list(request.messages), params)

    def misses(self, requests: Sequence[Request]) -> list[int]:
        """Positions of the requests the cache cannot answer."""
        return [i for i, r in enumerate(requests) if self.key(r) not in self.cache]

    @in_bulk
    def keys(self, requests: Sequence[Request]) -> list[str]:
        """The cache key of each request."""
        return [self.key(r) for r in requests]

    def deliver(self, results: list[Result | None], i: int, result: Result,
                on_result: Callable[[int, Result], None] | None, collect: bool) -> None:
        """Record request i's result (counted as a hit when cached, by the snapshot that served it)
        and tell `on_result`. Without `collect` the list keeps only that it was delivered."""
        results[i] = result if collect else DELIVERED
        if result.cached:
            self.stats.cache_hits += 1
        served = None if result.value is None else served_key(result.value)
        if served is not None:
            self.stats.served[served] = self.stats.served.get(served, 0) + 1
        if on_result:
            on_result(i, result)

    @in_bulk
    def serve_cached(self, requests: Sequence[Request], keys: Sequence[str], refresh_keys: set[str],
                     results: list[Result | None], on_result: Callable[[int, Result], None] | None = None,
                     collect: bool = True) -> dict[str, list[int]]:
        """Deliver what the cache answers (read in blocks of keys, counted as hits) and return the
        rest by key (identical requests are asked once). A cached reply from a refused snapshot
        joins `refresh_keys`. A request the backend refuses, or any miss offline, raises before
        anything is asked."""
        todo: dict[str, list[int]] = {}
        for start in range(0, len(keys), SERVE_BLOCK):  # a block's replies at a time, not a million
            block = keys[start:start + SERVE_BLOCK]
            cached = self.cache.get_many([key for key in block if key not in refresh_keys])
            for i, key in enumerate(block, start):
                value = None if key in refresh_keys else cached.get(key)
                if value is not None and self.backend.snapshot_refusal(value):
                    refresh_keys.add(key)  # served by a snapshot the run refuses: ask again
                    value = None
                if value is not None:
                    self.deliver(results, i, Result(value, None, True), on_result, collect)
                else:
                    todo.setdefault(key, []).append(i)
        for positions in todo.values():
            reason = self.backend.refusal(requests[positions[0]])
            if reason:
                raise BackendError(f"{self.backend.label}: {reason}")
        if todo and self.offline:
            raise CacheMissError(f"{len(todo)} request(s) are not in the cache and the run is offline")
        return todo

    def run(self, requests: Sequence[Request],
            on_result: Callable[[int, Result], None] | None = None,
            refresh: Collection[int] = (), *, collect: bool = True) -> list[Result]:
        """Results for all requests in order; `on_result` is told of each as it is known.

        Positions in `refresh` are asked again even when cached (a grade that did not parse);
        a new answer replaces the cached one, a failure leaves it in place.
        Each request is claimed in the cache before it is sent: one that another live process
        has claimed is waited for and read from the cache, never paid for twice.
        Without `collect`, results go to `on_result` only and are not held (the list returned
        holds DELIVERED): a cached rerun of a million rows need not hold a million replies.
        """
        results: list[Result | None] = [None] * len(requests)
        keys = self.keys(requests)
        refresh_keys = {keys[i] for i in refresh}
        todo: dict[str, list[int]] = {}

        def deliver(key: str, result: Result) -> None:
            for k in todo[key]:
                self.deliver(results, k, result, on_result, collect)

        todo.update(self.serve_cached(requests, keys, refresh_keys, results, on_result, collect))
        token = uuid.uuid4().hex
        pending, wait, first = list(todo), CLAIM_POLL_SECONDS, True
        try:
            while pending:
                mine, held = [], []
                # Once another process held a key, its answer (even a refreshed one) is taken.
                states = self.cache.claim(pending, token, refresh=refresh_keys if first else ())
                for key in pending:
                    if states[key] == "cached":
                        deliver(key, Result(self.cache.get(key), None, True))
                    else:
                        (mine if states[key] == "ours" else held).append(key)
                if mine:
                    self._ask(mine, todo, requests, token, deliver)
                    wait = CLAIM_POLL_SECONDS
                elif held:
                    time.sleep(wait)  # another process is asking: its answer will be in the cache
                    wait = min(1.0, wait * 1.5)
                pending, first = held, False
        finally:
            self.cache.release([key for key in todo if results[todo[key][0]] is None], token)
        return results  # type: ignore[return-value]

    def _ask(self, keys: list[str], todo: dict[str, list[int]], requests: Sequence[Request], token: str,
             deliver: Callable[[str, Result], None]) -> None:
        """Send the claimed requests; each answer is cached the moment it arrives, then its claim dropped."""

        def take(j: int, outcome: dict[str, Any] | BaseException) -> None:
            key = keys[j]
            refusal = None if isinstance(outcome, BaseException) else self.backend.snapshot_refusal(outcome)
            if refusal:
                outcome = BackendError(refusal)
                outcome.kind = "snapshot"  # type: ignore[attr-defined]
            if isinstance(outcome, BaseException):
                self.stats.failures += 1
                kind = getattr(outcome, "kind", "error")
                self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
                result = Result(None, str(outcome) or type(outcome).__name__, False)
            else:
                self.stats.model_calls += 1
                self.cache.put(key, outcome, backend=self.backend.name, model=self.backend.label)
                result = Result(outcome, None, False)
            self.cache.release([key], token)
            deliver(key, result)

        stream = self.backend.complete_many([requests[todo[key][0]] for key in keys])
        try:
            for j, outcome in stream:
                take(j, outcome)
        except KeyboardInterrupt:
            keep_received(stream, take)
            raise
        finally:
            self.stats.retries = dict(sorted(self.backend.retries.items()))


def keep_received(stream: Iterator[tuple[int, Any]], take: Callable[[int, Any], None]) -> None:
    """On Ctrl-C, take the replies a backend already received before the interrupt goes on.

    The interrupt is thrown into the backend's iterator (unless it came from there): a backend
    that holds received replies (the openai one queues them) yields them, then lets it go on.
    """
    try:
        item = stream.throw(KeyboardInterrupt)  # type: ignore[attr-defined]
        while True:
            take(*item)
            item = next(stream)
    except (KeyboardInterrupt, StopIteration):
        pass


def single_token_ids(tokenize: Callable[[str], list[int]], texts: Sequence[str], model: str) -> list[int]:
    """The vocabulary id of each text ("0".."5" for expected mode); each must be a single token."""
    ids = []
    for text in texts:
        tokens = tokenize(text)
        if len(tokens) != 1:
            raise BackendError(f"{model}: the score '{text}' is not a single token; "
                               "expected mode needs a tokenizer with digit tokens")
        ids.append(tokens[0])
    return ids


# ---------------------------------------------------------------- data is text


def chat_fragments(render: Callable[[list[dict[str, str]]], str], messages: Sequence[dict[str, str]],
                   specials: Collection[str]) -> list[tuple[str, bool]]:
    r"""The rendered chat as (text, is_special) pieces, in which only the template's own text may
    hold special tokens: the messages' contents are always text, whatever they say.

    Tokenizing the whole rendered chat with special tokens enabled would turn "<|im_end|>" in a
    response into a real end of turn. Here the template is rendered once with placeholders in
    place of the contents; its text is cut at the special tokens in `specials`, and the contents
    join the plain text around them, so that a run of text is tokenized as one piece, exactly
    as in the whole rendered chat.

    >>> render = lambda ms: "".join(f"<s>{m['role']}\n{m['content']}</s>\n" for m in ms)
    >>> chat_fragments(render, [{"role": "user", "content": "hi</s><s>assistant"}], ["<s>", "</s>"])
    [('<s>', True), ('user\nhi</s><s>assistant', False), ('</s>', True), ('\n', False)]
    """
    messages = [dict(m) for m in messages]
    holders = [f"\ue000gasus-content-{i}\ue001" for i in range(len(messages))]
    try:
        skeleton = render([{**m, "content": h} for m, h in zip(messages, holders)])
        rendered = render(messages)
    except Exception as exc:  # jinja2 errors, raise_exception() in the template
        raise BackendError(f"the chat template cannot render these messages: {exc}") from None
    pieces: list[tuple[str, bool]] = []  # (text, is_content)
    rest = skeleton
    for holder in holders:
        before, found, rest = rest.partition(holder)
        if not found or holder in rest:
            raise BackendError("the chat template does not write each message's content once; "
                               "gasus cannot keep data apart from the template's markers")
        pieces += [(before, False), ("", True)]
    pieces.append((rest, False))
    for transform in (str, str.strip):  # some templates trim the contents (Llama 3's)
        contents = iter(transform(m["content"]) for m in messages)
        filled = [(next(contents) if is_content else text, is_content) for text, is_content in pieces]
        if "".join(text for text, _ in filled) == rendered:
            break
    else:
        raise BackendError("the chat template changes the messages' text; "
                           "gasus cannot keep data apart from the template's markers")
    marker = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True) if s))
    out: list[tuple[str, bool]] = []

    def add_text(text: str) -> None:
        if text and out and not out[-1][1]:
            out[-1] = (out[-1][0] + text, False)
        elif text:
            out.append((text, False))

    for text, is_content in filled:
        if is_content or not marker.pattern:
            add_text(text)
            continue
        pos = 0
        for match in marker.finditer(text):
            add_text(text[pos:match.start()])
            out.append((match.group(), True))
            pos = match.end()
        add_text(text[pos:])
    return out


# ---------------------------------------------------------------- file identity


# A file changed less than this long ago may be rewritten again within the same ctime tick
# (the kernel's clock for ctime is coarse), so its stat cannot vouch for its bytes yet.
SETTLE_SECONDS = 2.0


def file_sha256(path: str | Path, cache: Cache | None = None) -> str:
    """sha256 of a file's bytes, memoised in the cache by what no copy can preserve.

    `cp -p`, `rsync -a` and tar restore size and mtime, but not the inode and ctime: the memo
    is keyed on all of them (in nanoseconds), and a file changed in the last moments is not memoised.
    """
    path = Path(path).resolve()
    try:
        st = path.stat()
    except OSError as exc:
        raise BackendError(f"{path}: cannot read the model file: {exc.strerror}") from None
    memo = f"filehash:{path}:{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}:{st.st_size}:{st.st_mtime_ns}"
    if time.time() - st.st_ctime_ns / 1e9 < SETTLE_SECONDS:
        cache = None
    if cache is not None:
        hit = cache.get(memo)
        if hit is not None:
            return hit["sha256"]
    digest = sha256_file(path)
    if cache is not None:
        cache.put(memo, {"sha256": digest}, backend="filehash", model=str(path))
    return digest


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
