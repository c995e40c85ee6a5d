"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server) over HTTP with httpx.

`--concurrency N` requests are in flight at once (N asyncio workers on a private event loop).
429, 5xx, connection errors, timeouts and malformed replies are retried with exponential
backoff and jitter, honouring Retry-After, at most `max_attempts` tries. The API key is read
from the environment when the client is made, sent only in the Authorization header, and
scrubbed from every error message and completion: it never reaches a cache key, a cached value or a file.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import BackendError
from ..parsing import SCORE_TOKENS
from .base import Backend, BackendOptions, Request, TransientError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TOP_LOGPROBS = 20  # the most the chat-completions API returns
_BEARER = re.compile(r"\bBearer\s+[^\s\"',;]+", re.IGNORECASE)


class FatalError(BackendError):
    """A reply that no retry or other request will change (bad key, unknown model, no logprobs)."""


def public_url(url: str) -> str:
    """The URL without any user:password part (which must not reach a cache key)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    >>> retry_after_seconds("2")
    2.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480.0)
    5.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OpenAIBackend(Backend):
    """`openai:MODEL` against `--base-url` (default the OpenAI API)."""

    name = "openai"

    def __init__(self, target: str, options: BackendOptions | None = None):
        super().__init__(target, options)
        self.base_url = (self.options.base_url or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendError(f"--base-url must start with http:// or https://, got '{self.base_url}'")
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.attempts = 0  # HTTP requests sent, retries included

    def cache_params(self) -> dict[str, Any]:
        # Two servers may serve different weights under one model name; the seed goes in every body.
        return {"base_url": public_url(self.base_url), "seed": self.options.seed}

    # -------------------------------------------------------------- secrets

    def _api_key(self) -> str | None:
        key = os.environ.get(self.options.api_key_env) or None
        if key is None and self.base_url == DEFAULT_BASE_URL:
            raise BackendError(f"the OpenAI API needs a key: set {self.options.api_key_env} "
                               "(or name another variable with --api-key-env)")
        return key

    def _scrub(self, text: str) -> str:
        """The text without the API key or any bearer token; scrub before cutting, so no fragment is left."""
        key = os.environ.get(self.options.api_key_env)
        if key:
            text = text.replace(key, "***")
        return _BEARER.sub("Bearer ***", text)

    # -------------------------------------------------------------- one request

    def request_body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of a request."""
        p = request.params
        mode = p.get("mode", "generate")
        body: dict[str, Any] = {"model": self.target, "temperature": float(p.get("temperature", 0)),
                                "seed": self.options.seed}
        if request.is_raw:
            if mode != "generate":
                raise BackendError(f"mode '{mode}' needs a chat request")
            body.update(prompt=request.messages[0]["content"], max_tokens=int(p.get("max_tokens", 256)))
            return "/completions", body
        body["messages"] = [{"role": m["role"], "content": m["content"]} for m in request.messages]
        if mode == "expected":
            body.update(max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        elif mode in ("generate", "score"):
            body["max_tokens"] = int(p.get("max_tokens", 8 if mode == "score" else 256))
            if p.get("stop"):
                body["stop"] = list(p["stop"])
        else:
            raise BackendError(f"unknown mode '{mode}' (generate, score or expected)")
        body.update(thinking_fields(self.target, self.base_url, p.get("thinking", "auto")))
        return "/chat/completions", body

    def read_reply(self, request: Request, data: Any) -> dict[str, Any]:
        """The cached value of a reply: text, usage, and for expected mode the score logprobs.
        A reply not shaped as a completion (a number for the text, a list for the usage) is that
        request's transient failure ("no_completion"): retried, never cached, the other requests go on."""
        try:
            choice = data["choices"][0]
            text = choice["text"] if request.is_raw else choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _malformed("no choices[0] text") from None
        usage = data.get("usage")  # data is an object: data["choices"] worked
        usage = {} if usage is None else usage
        message = {} if request.is_raw else choice["message"]
        if not isinstance(choice, dict) or not isinstance(message, dict):
            raise _malformed("choices[0] is not an object")
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if not isinstance(text, str | None):
            raise _malformed("choices[0] content is not text")
        if not isinstance(usage, dict):
            raise _malformed("usage is not an object")
        if not all(_count(usage.get(k)) for k in self.usage):
            raise _malformed("usage token counts are not whole numbers")
        if not isinstance(choice.get("finish_reason"), str | None):
            raise _malformed("finish_reason is not text")
        if choice.get("finish_reason") == "content_filter":
            # The provider withheld the answer: nothing to cache, another try may pass.
            raise TransientError("the server's content filter withheld the reply", kind="content_filter")
        # A server (or a proxy before it) that quotes the request's credentials in the completion
        # must not get them into the cache or the outputs either.
        value: dict[str, Any] = {
            "text": self._scrub(text or ""), "finish_reason": choice.get("finish_reason"),
            "usage": {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens")},
        }
        # What the server says served the reply (a dated snapshot, its fingerprint): kept in the value,
        # never the key, so a model swapped behind one name shows up in the summaries.
        for name, field_ in (("served_model", "model"), ("system_fingerprint", "system_fingerprint")):
            if isinstance(data.get(field_), str):
                value[name] = data[field_]
        # vLLM, llama.cpp server and DeepSeek return the thinking apart from the answer.
        if isinstance(reasoning, str) and reasoning:
            value["reasoning"] = self._scrub(reasoning)
        if request.params.get("mode") == "expected":
            value["logprobs"] = self._score_logprobs(choice)
        for k in self.usage:  # counted once the reply is taken
            self.usage[k] += usage.get(k) or 0
        return value

    def _score_logprobs(self, choice: dict[str, Any]) -> dict[str, float]:
        try:
            top = choice["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise FatalError(
                f"{self.label}: the server returned no top_logprobs, which --mode expected needs; "
                "use --mode generate or score with this grader"
            ) from None
        if not isinstance(top, list) or not all(
                isinstance(e, dict) and isinstance(e.get("token", ""), str)
                and isinstance(e.get("logprob"), int | float | None) and not isinstance(e.get("logprob"), bool)
                for e in top):
            raise _malformed("top_logprobs are not token and logprob pairs")
        # " 4" and "4" both mean the score 4: their probabilities add up.
        mass: dict[str, float] = {}
        for entry in top:
            token = str(entry.get("token", "")).strip()
            if token in SCORE_TOKENS and entry.get("logprob") is not None:
                mass[token] = mass.get(token, 0.0) + math.exp(min(0.0, float(entry["logprob"])))
        return {k: math.log(v) for k, v in mass.items() if v > 0}

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.options.retry_max, retry_after) + random.uniform(0, 0.1 * self.options.retry_base)
        ceiling = min(self.options.retry_max, self.options.retry_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in lockstep

    async def _call(self, client: Any, request: Request) -> dict[str, Any]:
        import httpx

        path, body = self.request_body(request)
        last, kind = "no attempt made", "none"
        for attempt in range(1, self.options.max_attempts + 1):
            retry_after = None
            self.attempts += 1
            try:
                response = await asyncio.wait_for(client.post(self.base_url + path, json=body),
                                                  timeout=self.options.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                last, kind = f"no reply within {self.options.timeout:g} s", "timeout"
            except httpx.TransportError as exc:
                last, kind = f"connection error: {type(exc).__name__}: {exc}", "connection"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return self.read_reply(request, response.json())
                    except ValueError:
                        last, kind = "the server's reply is not valid JSON", "invalid_json"
                    except TransientError as exc:
                        last, kind = str(exc), exc.kind
                elif status in (401, 403, 404):
                    raise FatalError(f"{self.label}: HTTP {status} from {public_url(self.base_url)}: "
                                     f"{_error_message(response, self._scrub)}")
                elif status == 429 or status == 408 or status >= 500:
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                    last, kind = f"HTTP {status}: {_error_message(response, self._scrub)}", f"http_{status}"
                else:
                    error = BackendError(f"HTTP {status}: {_error_message(response, self._scrub)}")
                    error.kind = f"http_{status}"  # type: ignore[attr-defined]
                    raise error
            if attempt < self.options.max_attempts:
                self.retries[kind] = self.retries.get(kind, 0) + 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
        raise TransientError(f"gave up after {self.options.max_attempts} tries; last: {last}", kind=kind)

    # -------------------------------------------------------------- many requests

    def complete(self, request: Request) -> dict[str, Any]:
        for _, outcome in self.complete_many([request]):
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        raise BackendError("no result")  # unreachable: complete_many yields once per request

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, dict[str, Any] | BackendError]]:
        """Results as they arrive, from `concurrency` workers on an event loop in a helper thread.

        A fatal reply (bad key, unknown model, no logprobs) stops the run with a BackendError.
        Closing the iterator (Ctrl-C) cancels what is in flight.
        """
        if not requests:
            return
        headers = {"Content-Type": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        done: queue.Queue = queue.Queue()
        loop = asyncio.new_event_loop()
        main: dict[str, asyncio.Task] = {}

        async def run_all() -> None:
            import httpx

            todo: asyncio.Queue = asyncio.Queue()
            for i in range(len(requests)):
                todo.put_nowait(i)
            limits = httpx.Limits(max_connections=self.options.concurrency)
            async with httpx.AsyncClient(headers=headers, limits=limits, timeout=self.options.timeout) as client:

                async def worker() -> None:
                    while True:
                        try:
                            i = todo.get_nowait()
                        except asyncio.QueueEmpty:
                            return
                        try:
                            done.put((i, await self._call(client, requests[i])))
                        except FatalError as exc:
                            done.put((i, FatalError(self._scrub(str(exc)))))
                            return
                        except BackendError as exc:
                            scrubbed = type(exc)(self._scrub(str(exc)))
                            scrubbed.kind = getattr(exc, "kind", "error")  # type: ignore[attr-defined]
                            done.put((i, scrubbed))

                workers = [asyncio.ensure_future(worker()) for _ in range(min(self.options.concurrency, len(requests)))]
                try:
                    await asyncio.gather(*workers)
                finally:
                    for w in workers:
                        w.cancel()

        def thread_main() -> None:
            asyncio.set_event_loop(loop)
            main["task"] = loop.create_task(run_all())
            try:
                loop.run_until_complete(main["task"])
            except BaseException as exc:  # cancelled, or a bug: the consumer must not wait forever
                done.put((None, exc))
            finally:
                done.put((None, None))
                loop.close()

        thread = threading.Thread(target=thread_main, name="gasus-openai", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    i, outcome = done.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if i is None:
                    if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                        raise BackendError(f"the HTTP client failed: {outcome!r}")
                    if outcome is None:
                        return
                    continue
                if isinstance(outcome, FatalError):
                    raise outcome
                yield i, outcome
        except KeyboardInterrupt:
            # Ctrl-C: stop what is in flight, then hand over the replies already received (and
            # paid for) that still wait in the queue, so the caller caches them; then go on.
            self._cancel(loop, main, thread)
            while True:
                try:
                    i, outcome = done.get_nowait()
                except queue.Empty:
                    break
                if i is not None and not isinstance(outcome, BaseException):
                    yield i, outcome
            raise
        finally:
            self._cancel(loop, main, thread)

    @staticmethod
    def _cancel(loop: asyncio.AbstractEventLoop, main: dict[str, asyncio.Task], thread: threading.Thread) -> None:
        task = main.get("task")
        if task is not None and not task.done() and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed in between
                pass
        thread.join(timeout=5)


def thinking_fields(model: str, base_url: str, thinking: str) -> dict[str, Any]:
    """The request fields that switch a reasoning model's thinking on or off, by each server's convention:
    `reasoning_effort` for OpenAI's reasoning models (which cannot stop thinking altogether; "off" asks
    for the least), `chat_template_kwargs` for the chat template of vLLM and llama.cpp server.

    >>> thinking_fields("Qwen/Qwen3-8B", "http://localhost:8000/v1", "off")
    {'chat_template_kwargs': {'enable_thinking': False}}
    >>> thinking_fields("o4-mini", DEFAULT_BASE_URL, "off")
    {'reasoning_effort': 'low'}
    >>> thinking_fields("gpt-4o-mini", DEFAULT_BASE_URL, "off")
    {}
    """
    if thinking == "auto":
        return {}
    if base_url == DEFAULT_BASE_URL:
        if thinking == "off" and model.startswith("gpt-5"):
            return {"reasoning_effort": "minimal"}
        if thinking == "off" and re.match(r"o\d", model):
            return {"reasoning_effort": "low"}
        return {}  # a model that does not reason takes no such field; one that does always thinks
    return {"chat_template_kwargs": {"enable_thinking": thinking == "on"}}


def _malformed(what: str) -> TransientError:
    return TransientError(f"the server's reply is not a completion ({what})", kind="no_completion")


def _count(value: Any) -> bool:
    """Whether a usage field is a token count (or absent)."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _error_message(response: Any, scrub: Callable[[str], str]) -> str:
    """The server's error message, scrubbed of secrets and then cut short (a cut key would escape scrubbing)."""
    try:
        data = response.json()
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("error")
        if message:
            return scrub(str(message))[:200]
    except (ValueError, AttributeError):
        pass
    return scrub(response.text or response.reason_phrase or "")[:200].replace("\n", " ")

