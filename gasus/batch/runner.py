"""A model's requests through batches (`--batch`), or beside the live batches that hold some of them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..backends.base import CLAIM_POLL_SECONDS, CachedModel, Request, Result
from ..errors import BadInputError, GasusError
from .jobs import BatchJobs, BatchOptions
from .journal import batch_name, is_live, load_journals, never_uploaded, skip_foreign


class BatchPending(Exception):  # noqa: N818 (not an error: a run with --no-wait ends here)
    """Raised instead of returning results when batches are submitted and the run does not wait."""

    def __init__(self, journals: list[dict[str, Any]], submitted: int):
        super().__init__(f"{len(journals)} batch(es) pending")
        self.journals = journals
        self.submitted = submitted  # batches this run submitted


class BatchHeld(BatchPending, GasusError):
    """Raised by a run without `--batch` once it has asked everything but the requests that live
    batches hold: those are pending, neither sent again nor failed. grade and judge report it as
    pending; elsewhere (`gasus run`) it is a one-line error."""

    def __init__(self, journals: list[dict[str, Any]], held: dict[str, int]):
        super().__init__(journals, 0)
        self.held = held  # journal id -> distinct requests of this run it holds
        self.lines = [f"{held[r['id']]} request(s) are in batch journal {r['id']}, never uploaded: rerun with "
                      f"`--batch`, or `gasus batch cancel {r['id']}` to drop it" if never_uploaded(r) else
                      f"{held[r['id']]} request(s) are in live batch {batch_name(r)}: `gasus batch wait`, or rerun "
                      "with `--batch`" for r in journals]
        self.args = ("; ".join(self.lines),)


def claim_and_submit(jobs: BatchJobs, keyed: dict[str, Request], refresh: Collection[str]) -> list[dict[str, Any]]:
    """jobs.submit under the cache's claims, so that two live runs never submit one request: each
    submits what it claimed, journals it and drops the claims, then takes the batches of the keys
    another run held from that run's journals (or their answers from the cache)."""
    cache = jobs.model.cache
    token = uuid.uuid4().hex
    live: dict[str, dict[str, Any]] = {}
    pending, wait, first = list(keyed), CLAIM_POLL_SECONDS, True
    try:
        while pending:
            states = cache.claim(pending, token, refresh=refresh if first else ())
            mine = [key for key in pending if states[key] == "ours"]
            held = [key for key in pending if states[key] == "held"]
            if mine:
                for record in jobs.submit({key: keyed[key] for key in mine}, refresh):
                    live[record["id"]] = record
                cache.release(mine, token)
                wait = CLAIM_POLL_SECONDS
            elif held:
                time.sleep(wait)  # another run is submitting them: its journal will say where
                wait = min(1.0, wait * 1.5)
            pending, first = held, False
    finally:
        cache.release(list(keyed), token)
    return list(live.values())


def batch_runner(model: CachedModel, options: BatchOptions | None,
                 on_poll: Callable[[list[dict[str, Any]]], None] | None = None):
    """A callable shaped like `model.run` that asks the cache misses through batches, or None
    without `options` (the synchronous path), or, when live batches of this backend exist, one that sends
    all but what they hold (`run_beside_batches`). Budget growth (gasus.thinking) runs each round through it."""
    if options is None:
        if getattr(model.backend, "name", None) != "openai":
            return None  # only openai: models have batches
        if not any(is_live(r) for r in skip_foreign(load_journals(model.cache.directory), model.backend,
                                                    warn=lambda r: False)):
            return None

        def run_sync(requests: Sequence[Request], on_result: Callable[[int, Result], None] | None = None,
                     refresh: Collection[int] = (), collect: bool = True) -> list[Result]:
            return run_beside_batches(model, requests, on_result, refresh=refresh, collect=collect)

        return run_sync

    def run(requests: Sequence[Request], on_result: Callable[[int, Result], None] | None = None,
            refresh: Collection[int] = (), collect: bool = True) -> list[Result]:
        return run_batched(model, requests, on_result, refresh=refresh, options=options, on_poll=on_poll,
                           collect=collect)

    return run


def run_batched(model: CachedModel, requests: Sequence[Request],
                on_result: Callable[[int, Result], None] | None = None, refresh: Collection[int] = (),
                options: BatchOptions | None = None,
                on_poll: Callable[[list[dict[str, Any]]], None] | None = None, collect: bool = True) -> list[Result]:
    """What `CachedModel.run` returns (and holds, as it does, without `collect`), with the cache misses
    asked through batches.

    Hits are delivered at once; misses are submitted (or found in a live batch), waited for and
    collected. With options.wait False, raises BatchPending once they are submitted.
    """
    options = options or BatchOptions()
    if model.backend.name != "openai":
        raise BadInputError(f"batches need an openai: model (the OpenAI Batch API or a server with /v1/files and "
                            f"/v1/batches), not {model.backend.label}")
    keys = model.keys(requests)
    refresh_keys = {keys[i] for i in refresh}
    results: list[Result | None] = [None] * len(requests)
    todo = model.serve_cached(requests, keys, refresh_keys, results, on_result, collect)
    keyed = {key: requests[positions[0]] for key, positions in todo.items()}
    jobs = BatchJobs(model, options, keyed)
    try:
        live = claim_and_submit(jobs, keyed, refresh_keys)
        if live and not options.wait:
            raise BatchPending(live, jobs.submitted)
        jobs.wait(live, on_poll)
    finally:
        jobs.release()
    for key, positions in todo.items():
        if key in jobs.collected:
            result = Result(jobs.collected[key], None, False)
        elif key in jobs.failed:
            kind, message = jobs.failed[key]
            model.stats.failures += 1
            model.stats.errors[kind] = model.stats.errors.get(kind, 0) + 1
            result = Result(None, message, False)
        else:  # answered by a batch another process (or `gasus batch wait`) collected
            value = model.cache.get(key)
            result = Result(value, None, True) if value is not None else Result(None, "no batch answered it", False)
        for i in positions:
            model.deliver(results, i, result, on_result, collect)
    return results  # type: ignore[return-value]


def run_beside_batches(model: CachedModel, requests: Sequence[Request],
                       on_result: Callable[[int, Result], None] | None = None, refresh: Collection[int] = (),
                       collect: bool = True) -> list[Result]:
    """`model.run` without `--batch`, except that a request a live batch of this backend holds is not
    sent again (that would pay for it twice): the rest are asked, then BatchHeld names the batches."""
    keys = model.keys(requests)
    wanted = set(keys)
    latest: dict[str, dict[str, Any]] = {}  # as BatchJobs.submit reads them: the newest journal of a key
    for record in skip_foreign(load_journals(model.cache.directory), model.backend,
                               lambda r: is_live(r) and not wanted.isdisjoint(r["keys"])):
        for key in record["keys"]:
            latest[key] = record
    waiting = {i for i, key in enumerate(keys) if key in latest and is_live(latest[key]) and key not in model.cache}
    if not waiting:
        return model.run(requests, on_result, refresh, collect=collect)
    rest = [i for i in range(len(requests)) if i not in waiting]

    def take(j: int, result: Result) -> None:
        if on_result is not None:
            on_result(rest[j], result)

    again = set(refresh)
    model.run([requests[i] for i in rest], take, {j for j, i in enumerate(rest) if i in again}, collect=False)
    held: dict[str, int] = {}
    journals: dict[str, dict[str, Any]] = {}
    for key in sorted({keys[i] for i in waiting}):
        record = latest[key]
        held[record["id"]] = held.get(record["id"], 0) + 1
        journals[record["id"]] = record
    raise BatchHeld(sorted(journals.values(), key=lambda r: (r["created"], r["id"])), held)
