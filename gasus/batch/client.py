"""One server's files and batches through the openai SDK, with lookups after an ambiguous failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import BackendError
from .journal import journal_matches, skipped_message

# What a 404 or 405 on a files or batches route most likely means: OpenAI-compatible servers that
# serve only the chat endpoints (vLLM's, Ollama's) have neither route.
NO_BATCH_API = ("the server may not offer the Batch API (/v1/files and /v1/batches; vLLM and Ollama do not): "
                "run without --batch")


class BatchRefused(BackendError):
    """The server refused to make a file or a batch outright (a 4xx other than 408, 409 or 429): it made nothing."""


def backend_for(record: dict[str, Any], backend: Any):
    """A client for the journal's model on `backend`'s own server with its own key: a journal
    names neither the host nor the key a request goes to (it may come from anyone's cache dir)."""
    from ..backends.openai import OpenAIBackend

    if not journal_matches(record, backend):
        raise BackendError(skipped_message(record, backend))
    if record["model"] == backend.target:
        return backend
    return OpenAIBackend(record["model"], backend.options)


class BatchClient:
    """The openai SDK's files and batches client for one backend; its errors become BackendErrors
    scrubbed of the key."""

    def __init__(self, backend: Any):
        import openai

        self.backend = backend
        # The SDK refuses to start without a key; a local server may need none.
        key = backend._api_key() or "none"
        self.client = openai.OpenAI(api_key=key, base_url=backend.base_url, timeout=backend.options.timeout,
                                    max_retries=max(0, backend.options.max_attempts - 1))
        # Creating a file or a batch is not idempotent: the SDK's retry after a reply lost on its way back
        # (a 502, a timeout) would make and bill a second one. Those calls go out once each, and `_make`
        # looks for what an ambiguous failure may have made before it sends another.
        self.once = self.client.with_options(max_retries=0)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, route: bool = False, **kwargs: Any) -> Any:
        """fn(*args, **kwargs); `route` when it lists a files or batches route, which a server may lack."""
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.APIError as exc:
            raise BackendError(self._failure(what, exc, route)) from None

    def _failure(self, what: str, exc: Exception, route: bool) -> str:
        message = f"{self.backend.label}: {what}: {exc}"
        if route and getattr(exc, "status_code", None) in (404, 405):
            message += f"; {NO_BATCH_API}"
        return self.backend._scrub(message)

    def _make(self, what: str, make: Callable[[], Any], find: Callable[[], Any | None]) -> Any:
        """make(), tried up to max_attempts times; after a failure that may have happened on the server
        (no reply, a timeout, 408, 409 or 5xx), what `find` finds there is taken instead of a second one."""
        import openai

        attempts = self.backend.options.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return make()
            except openai.APIConnectionError as exc:  # timeouts too: the request may have been served
                last: Exception = exc
            except openai.APIStatusError as exc:
                last = exc
                if exc.status_code == 429:
                    if attempt < attempts:
                        time.sleep(self.backend._backoff(attempt, None))
                    continue  # refused before anything was made
                if exc.status_code not in (408, 409) and exc.status_code < 500:
                    raise BatchRefused(self._failure(what, exc, route=True)) from None
            except openai.APIError as exc:
                raise BackendError(self.backend._scrub(f"{self.backend.label}: {what}: {exc}")) from None
            found = find()
            if found is not None:
                return found
            if attempt < attempts:
                time.sleep(self.backend._backoff(attempt, None))
        raise BackendError(self.backend._scrub(f"{self.backend.label}: {what}: {last}")) from None

    def upload(self, name: str, data: bytes, look_first: bool = False) -> str:
        """The id of a new batch file of `data`, or of the one already uploaded under that name (a journal's
        names are unique) when an earlier try may have made it."""
        def find() -> str | None:
            return self.find_file(name, len(data))

        if look_first:
            found = find()
            if found is not None:
                return found
        return self._make("uploading a batch file",
                          lambda: self.once.files.create(file=(name, data), purpose="batch").id, find)

    def create(self, file_id: str, endpoint: str, window: str, journal: str) -> Any:
        return self._make("creating a batch",
                          lambda: self.once.batches.create(input_file_id=file_id, endpoint=endpoint,
                                                           completion_window=window,
                                                           metadata={"gasus_journal": journal}),
                          lambda: self.find_by_input_file(file_id, journal))

    def retrieve(self, batch_id: str) -> Any:
        return self.call(f"reading batch {batch_id}", self.client.batches.retrieve, batch_id)

    def cancel(self, batch_id: str) -> Any:
        return self.call(f"cancelling batch {batch_id}", self.client.batches.cancel, batch_id)

    def content(self, file_id: str) -> str:
        return self.call(f"reading file {file_id}", self.client.files.content, file_id).text

    def find_by_input_file(self, file_id: str, journal: str | None = None) -> Any | None:
        """The batch made from the input file, or tagged with the journal's id."""
        for batch in self.call("listing batches", self.client.batches.list, limit=100, route=True):
            metadata = getattr(batch, "metadata", None)
            tag = metadata.get("gasus_journal") if isinstance(metadata, dict) else None
            if batch.input_file_id == file_id or (journal is not None and tag == journal):
                return batch
        return None

    def find_file(self, name: str, size: int) -> str | None:
        """The id of the whole batch file uploaded under `name`, if the server holds one."""
        for item in self.call("listing files", self.client.files.list, purpose="batch", route=True):
            if getattr(item, "filename", None) == name and getattr(item, "bytes", None) == size:
                return item.id
        return None


def request_counts(batch: Any) -> dict[str, int]:
    counts = getattr(batch, "request_counts", None)
    return {name: int(getattr(counts, name, 0) or 0) for name in ("total", "completed", "failed")}
