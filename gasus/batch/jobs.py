"""The batches of one model's cache dir: submit the misses, poll, collect results into the cache."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import CachedModel, Request, TransientError
from ..errors import BackendError, BadInputError
from .client import BatchClient, BatchRefused, backend_for, request_counts
from .journal import (
    _on_disk,
    _public,
    is_live,
    load_journals,
    remove_journal,
    save_journal,
    skip_foreign,
)

MAX_REQUESTS = 50_000  # the Batch API's limit of requests per input file
MAX_BYTES = 200 * 1024 * 1024  # and of an input file's size
COLLECT = "batch:"  # + a journal's id: the claim of the run that collects that batch (BatchJobs.poll)
ENDED = ("completed", "failed", "expired", "cancelled")  # a batch in any other state is live


@dataclass(frozen=True)
class BatchOptions:
    """How a run uses batches (`--batch` and the options beside it)."""

    wait: bool = field(default=True, metadata={"help": "wait for the batches and collect them (else submit and return)"})
    retry_failed: bool = field(default=False, metadata={"help": "resubmit requests that failed in a finished batch"})
    poll_seconds: float = field(default=5.0, metadata={"help": "first wait between polls; grows by half each poll"})
    poll_max: float = field(default=60.0, metadata={"help": "longest wait between polls"})
    max_requests: int = field(default=MAX_REQUESTS, metadata={"help": "most requests in one batch"})
    max_bytes: int = field(default=MAX_BYTES, metadata={"help": "largest input file in bytes"})
    completion_window: str = field(default="24h", metadata={"help": "the batch's completion window"})

    def __post_init__(self):
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise ValueError(f"a batch holds 1 to {MAX_REQUESTS:,} requests, not {self.max_requests}")
        if self.poll_seconds <= 0 or self.poll_max <= 0:
            raise ValueError("batch polling waits must be more than 0 seconds")


def batch_lines(backend: Any, keyed: dict[str, Request]) -> dict[tuple[str, str, bool], list[tuple[str, bytes]]]:
    """(endpoint, mode, raw) -> [(key, JSONL line)]: each line the body the synchronous path would send."""
    groups: dict[tuple[str, str, bool], list[tuple[str, bytes]]] = {}
    for key, request in keyed.items():
        path, body = backend.request_body(request)
        endpoint = "/v1" + path
        line = json.dumps({"custom_id": key, "method": "POST", "url": endpoint, "body": body},
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        mode = request.params.get("mode", "generate")
        groups.setdefault((endpoint, mode, request.is_raw), []).append((key, line))
    return groups


def split_lines(lines: Sequence[tuple[str, bytes]], max_requests: int, max_bytes: int) -> list[list[tuple[str, bytes]]]:
    """Consecutive chunks of at most max_requests lines and max_bytes bytes.

    >>> [len(c) for c in split_lines([(str(i), b"x" * 10) for i in range(7)], 3, 25)]
    [2, 2, 2, 1]
    """
    chunks: list[list[tuple[str, bytes]]] = []
    size = 0
    for key, line in lines:
        if len(line) > max_bytes:
            raise BadInputError(f"one request is {len(line):,} bytes, more than a batch file may hold ({max_bytes:,})")
        if not chunks or len(chunks[-1]) >= max_requests or size + len(line) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append((key, line))
        size += len(line)
    return chunks


class BatchJobs:
    """The batches of one model's cache dir: submit misses, wait, collect results into the cache."""

    def __init__(self, model: CachedModel, options: BatchOptions | None = None,
                 requests: dict[str, Request] | None = None):
        self.model = model
        self.options = options or BatchOptions()
        self.requests = requests or {}  # key -> request, to upload again a file a killed run never sent
        self.cache_dir = model.cache.directory
        self._clients: dict[str, BatchClient] = {}  # by model, all on this backend's server
        self.collected: dict[str, dict[str, Any]] = {}  # key -> value, this run
        self.failed: dict[str, tuple[str, str]] = {}  # key -> (kind, message), this run or a journal's
        self.submitted = 0  # batches this run created
        self.skipped_lines = 0  # lines of output files that named no request of their batch
        self.token = uuid.uuid4().hex  # this run's claims on collecting batches
        self.claimed: set[str] = set()  # the claims this run took

    def client(self, record: dict[str, Any]) -> BatchClient:
        backend = backend_for(record, self.model.backend)  # refuses a journal of another server or key
        if record["model"] not in self._clients:
            self._clients[record["model"]] = BatchClient(backend)
        return self._clients[record["model"]]

    # ------------------------------------------------------------ submit

    def submit(self, keyed: dict[str, Request], refresh: Collection[str] = ()) -> list[dict[str, Any]]:
        """The live batches that hold the requests, submitting those no batch holds. Requests that
        failed in a finished batch are resubmitted only with retry_failed; until then they are failed."""
        latest: dict[str, dict[str, Any]] = {}
        # Another server's journal is never contacted: what it holds is asked here as if it were not there.
        for record in skip_foreign(load_journals(self.cache_dir), self.model.backend,
                                   lambda r: not keyed.keys().isdisjoint(r["keys"])):
            for key in record["keys"]:
                latest[key] = record
        live: dict[str, dict[str, Any]] = {}
        new: dict[str, Request] = {}
        for key, request in keyed.items():
            record = latest.get(key)
            if record is not None and is_live(record):
                live[record["id"]] = record
                continue
            failure = None if record is None else record.get("failed", {}).get(key)
            if failure is not None and not self.options.retry_failed and key not in refresh:
                self.failed[key] = (failure[0], f"batch {record.get('batch_id')}: {failure[1]}")
                continue
            new[key] = request
        for record in live.values():
            self._resume(record)
        for (endpoint, mode, raw), lines in batch_lines(self.model.backend, new).items():
            for chunk in split_lines(lines, self.options.max_requests, self.options.max_bytes):
                record = self._submit(endpoint, mode, raw, chunk)
                live[record["id"]] = record
        return list(live.values())

    def _record(self, endpoint: str, mode: str, raw: bool, keys: list[str]) -> dict[str, Any]:
        backend = self.model.backend
        return {"journal": 1, "id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}",
                "created": time.time(), "state": "preparing", "base_url": _public(backend),
                "api_key_env": backend.options.api_key_env, "model": backend.target, "label": backend.label,
                "endpoint": endpoint, "mode": mode, "raw": raw, "keys": keys, "input_file_id": None,
                "batch_id": None, "status": None, "counts": {}, "failed": {}}

    def _submit(self, endpoint: str, mode: str, raw: bool, chunk: list[tuple[str, bytes]]) -> dict[str, Any]:
        record = self._record(endpoint, mode, raw, [key for key, _ in chunk])
        # The run that pays for a batch collects it while it lives: a call is counted once, by that run.
        self.model.cache.claim([COLLECT + record["id"]], self.token)
        self.claimed.add(COLLECT + record["id"])
        save_journal(self.cache_dir, record)  # before the upload: a rerun knows what this file was for
        client = self.client(record)
        try:
            record["input_file_id"] = client.upload(f"gasus-{record['id']}.jsonl", b"".join(line for _, line in chunk))
        except BatchRefused:
            remove_journal(self.cache_dir, record)  # refused outright: no file exists, so nothing is left to resume
            raise
        save_journal(self.cache_dir, record)
        self._create(record, client)
        return record

    def _create(self, record: dict[str, Any], client: BatchClient) -> None:
        batch = client.create(record["input_file_id"], record["endpoint"], self.options.completion_window, record["id"])
        self.submitted += 1
        self._update(record, batch)

    def _update(self, record: dict[str, Any], batch: Any) -> None:
        record.update(state="submitted", batch_id=batch.id, status=batch.status, counts=request_counts(batch))
        save_journal(self.cache_dir, record)

    def _resume(self, record: dict[str, Any]) -> None:
        """A batch journaled before it existed (the run was killed mid-way): find it on the server by
        its input file, or create it now; a file that was never uploaded is uploaded again."""
        if record["state"] != "preparing":
            return
        client = self.client(record)
        if record.get("input_file_id"):
            batch = client.find_by_input_file(record["input_file_id"])
            if batch is not None:
                self._update(record, batch)
                return
        else:
            keyed = {}
            for key in record["keys"]:
                request = self.requests.get(key)
                if request is None:
                    raise BackendError(f"batch journal {record['id']}: the run that prepared it was stopped before "
                                       "its upload; rerun the command that started it to submit its requests, or "
                                       f"`gasus batch cancel {record['id']}` to drop it")
                keyed[key] = request
            lines = [line for key, line in next(iter(batch_lines(self.model.backend, keyed).values()))]
            # The stopped run may have uploaded it after all: its name is the journal's.
            record["input_file_id"] = client.upload(f"gasus-{record['id']}.jsonl", b"".join(lines), look_first=True)
            save_journal(self.cache_dir, record)
        self._create(record, client)

    # ------------------------------------------------------------ wait and collect

    def wait(self, records: list[dict[str, Any]], on_poll: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        """Poll the live batches (with backoff) until each has ended, collecting each as it ends."""
        pending = [r for r in records if is_live(r)]
        delay = self.options.poll_seconds
        while True:
            still = []
            for record in pending:
                if not self.poll(record):
                    still.append(record)
            if on_poll is not None:
                on_poll(records)
            pending = still
            if not pending:
                return
            time.sleep(delay)
            delay = min(self.options.poll_max, delay * 1.5)

    def poll(self, record: dict[str, Any]) -> bool:
        """Read a batch's state; collect it when it has ended. Whether it has ended (and is collected)."""
        if record["state"] == "preparing":
            self._resume(record)
        client = self.client(record)
        batch = client.retrieve(record["batch_id"])
        if batch.status in ENDED and not self._claim_collection(record):
            return self._adopt(record)  # another run collects it: its journal is not ours to write
        if batch.status != record.get("status") or request_counts(batch) != record.get("counts"):
            if self._adopt(record):  # collected by another run since this one read its journal
                return True
            record.update(status=batch.status, counts=request_counts(batch))
            save_journal(self.cache_dir, record)
        if batch.status not in ENDED:
            return False
        try:
            self.collect(record, batch, client)
        finally:
            self.model.cache.release([COLLECT + record["id"]], self.token)
        return True

    def release(self) -> None:
        """Drop this run's claims on collecting batches it leaves (a --no-wait run, an error)."""
        self.model.cache.release(sorted(self.claimed), self.token)

    def _claim_collection(self, record: dict[str, Any]) -> bool:
        """Whether this run collects the ended batch: not while the run that submitted it (or another that
        collects it) lives, nor once its journal says it was collected."""
        claim = COLLECT + record["id"]
        if self.model.cache.claim([claim], self.token)[claim] != "ours":
            return False
        self.claimed.add(claim)
        if _on_disk(self.cache_dir, record).get("state") == "collected":
            self.model.cache.release([claim], self.token)
            return False
        return True

    def _adopt(self, record: dict[str, Any]) -> bool:
        """Take what another run collected of the batch (its answers are in the cache, its failures in
        its journal), once its journal says so; whether it has."""
        current = _on_disk(self.cache_dir, record)
        if current.get("state") != "collected":
            return False
        record.update(current)
        failed = record.get("failed")
        for key, failure in (failed.items() if isinstance(failed, dict) else ()):
            if isinstance(failure, list) and len(failure) == 2:
                self.failed[key] = (str(failure[0]), f"batch {record.get('batch_id')}: {failure[1]}")
        return True

    def collect(self, record: dict[str, Any], batch: Any, client: BatchClient) -> None:
        """Put every answered request in the cache; the rest are failed, by kind."""
        model = self.model
        backend = client.backend
        request = Request.raw("", mode=record["mode"]) if record["raw"] else Request.chat([], mode=record["mode"])
        keys = set(record["keys"])
        failed: dict[str, list[str]] = {}
        skipped = 0
        for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
            if not file_id:
                continue
            for line in client.content(file_id).splitlines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    item = None
                key = item.get("custom_id") if isinstance(item, dict) else None
                if not isinstance(key, str) or key not in keys:
                    skipped += 1  # names no request of this batch: nothing to put anywhere
                    continue
                if key in self.collected:
                    continue
                kind, message = _line_failure(item, backend._scrub)
                if kind is None:
                    try:
                        value = backend.read_reply(request, item["response"]["body"])
                    except TransientError as exc:
                        kind, message = exc.kind, str(exc)
                        if kind == "no_completion":  # in a batch's output that is its line's fault, and final
                            kind = "invalid_line"
                    except BackendError as exc:  # a reply that cannot answer this mode (no logprobs)
                        kind, message = "unusable_reply", str(exc)
                    except (AttributeError, TypeError, ValueError):  # a completion of the wrong shape inside
                        kind, message = "invalid_line", "the output line's response is not a completion"
                    else:
                        model.cache.put(key, value, backend=backend.name, model=backend.label)
                        model.stats.model_calls += 1
                        self.collected[key] = value
                        failed.pop(key, None)
                        continue
                failed[key] = [kind, message]
        unanswered = f"the batch ended {batch.status} without answering it"
        if skipped:
            unanswered += f" ({skipped} line(s) of its output named no request of it and were skipped)"
        for key in record["keys"]:
            if key not in self.collected and key not in failed:
                failed[key] = [f"batch_{batch.status}", unanswered]
        for key, (kind, message) in failed.items():
            self.failed[key] = (kind, f"batch {record['batch_id']}: {message}")
        self.skipped_lines += skipped
        record.update(state="collected", status=batch.status, counts=request_counts(batch), failed=failed,
                      collected=time.time(), skipped_lines=skipped)
        save_journal(self.cache_dir, record)


def _line_failure(item: dict[str, Any], scrub: Callable[[str], str]) -> tuple[str | None, str]:
    """(kind, message) of a failed line of an output or error file, or (None, "") for an answer.
    A line of the wrong shape is its request's failure, `invalid_line`: the lines beside it are still read."""
    error = item.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(error)
        return str(code or "error"), scrub(str(message or code or "failed"))[:200]
    response = item.get("response") or {}
    if not isinstance(response, dict):
        return "invalid_line", "the output line's response is not an object"
    status = response.get("status_code")
    body = response.get("body")
    if status != 200:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return f"http_{status}", scrub(f"HTTP {status}: {message or 'failed'}")[:200]
    if not isinstance(body, dict):
        return "invalid_line", "the output line's response body is not an object"
    return None, ""
