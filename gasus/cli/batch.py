"""gasus batch: the provider batches a run submitted (`--batch`), from their journals in the cache dir;
and the options and progress display that `grade` and `judge` share for `--batch`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from ..errors import BadInputError
from .common import GasusGroup, console, progress_callback, summary_option

_BATCH_OPTIONS = [
    click.option("--batch", "use_batch", is_flag=True,
                 help="Ask the cache misses through the OpenAI Batch API (openai: models; any server with "
                      "/v1/files and /v1/batches): half the price, answered within 24 hours. Resumable: a rerun "
                      "finds the submitted batches and never submits a request twice."),
    click.option("--no-wait", is_flag=True,
                 help="With --batch: submit and exit; rerun the command (or `gasus batch wait`) to collect."),
    click.option("--batch-split", type=int, default=50_000, show_default=True,
                 help="With --batch: most requests per batch (the API's limit is 50,000 and 200 MB per file)."),
    click.option("--poll-interval", type=float, default=5.0, show_default=True,
                 help="With --batch: seconds before the first poll of a batch's state; grows by half each "
                      "poll, up to 60 s."),
]
_BATCH_OPTION_NAMES = ("use_batch", "no_wait", "batch_split", "poll_interval")


def batch_options(func: Callable) -> Callable:
    """--batch and its companions, passed to the command as one `batch_opts` dict."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, batch_opts={name: kwargs.pop(name) for name in _BATCH_OPTION_NAMES}, **kwargs)

    for option in reversed(_BATCH_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def batch_settings(batch_opts: dict, retry_failed: bool = False):
    """The BatchOptions of a command's --batch options, or None without --batch."""
    from ..batch import BatchOptions

    if not batch_opts["use_batch"]:
        for name, flag in (("no_wait", "--no-wait"),):
            if batch_opts[name]:
                raise BadInputError(f"{flag} needs --batch")
        return None
    if batch_opts["poll_interval"] <= 0:
        raise BadInputError("--poll-interval must be more than 0 seconds")
    try:
        return BatchOptions(wait=not batch_opts["no_wait"], retry_failed=retry_failed,
                            poll_seconds=batch_opts["poll_interval"], max_requests=batch_opts["batch_split"])
    except ValueError as exc:
        raise BadInputError(f"--batch-split: {exc}") from None


class BatchProgress:
    """A rich progress display on stderr: the items done, and each batch's state and counts while waiting."""

    def __init__(self, total: int, description: str):
        self.progress, self.advance = progress_callback(total, description)
        self.batches: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, i, *outcome) -> None:  # on_grade(i, grade, cached) or on_result(i, result)
        self.advance(i, outcome)

    def poll(self, records: list[dict]) -> None:
        for record in records:
            counts = record.get("counts") or {}
            label = f"batch {record.get('batch_id')}: {record.get('status')}, {counts.get('failed', 0)} failed"
            done = counts.get("completed", 0) + counts.get("failed", 0)
            if record["id"] not in self.batches:
                self.batches[record["id"]] = self.progress.add_task(label, total=len(record["keys"]))
            self.progress.update(self.batches[record["id"]], description=label, completed=done)


def report_pending(pending, summary) -> None:
    """What a --no-wait run prints and records: the batches it left running; or what a run without
    --batch left unsent because live batches hold it."""
    from ..batch import BatchHeld, batch_name

    out = console()
    if isinstance(pending, BatchHeld):
        for line in pending.lines:
            out.print(line, soft_wrap=True)
        out.print(f"{sum(pending.held.values())} request(s) pending, not sent again; no output written",
                  soft_wrap=True)
        summary.extra["batches"] = {"held": {batch_name(r): pending.held[r["id"]] for r in pending.journals}}
        return
    requests = sum(len(r["keys"]) for r in pending.journals)
    out.print(f"{pending.submitted} batch(es) submitted, {len(pending.journals)} pending with {requests} "
              "request(s); rerun the same command (or `gasus batch wait`) to collect the results", soft_wrap=True)
    for record in pending.journals:
        out.print(f"  {record.get('batch_id')}: {record.get('status')}, {len(record['keys'])} request(s)",
                  soft_wrap=True)
    summary.extra["batches"] = {"submitted": pending.submitted, "pending": [r.get("batch_id") for r in pending.journals]}


# ---------------------------------------------------------------- gasus batch ...


@click.group(cls=GasusGroup)
def batch():
    """The provider batches that `--batch` runs submitted, from their journals in the cache dir.

    \b
    Example:
      gasus grade data.json -o scores.jsonl --grader openai:gpt-4o-mini --batch --no-wait
      gasus batch status
      gasus batch wait                 # collect into the cache; then rerun the grade command
    """


_BACKEND_OPTIONS = [
    click.option("--base-url", help="The OpenAI-compatible server of the batches, as `--batch` runs gave it: only "
                                    "journals of this server and key variable are acted on.  [default: the OpenAI API]"),
    click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                 help="Environment variable holding the API key, as `--batch` runs gave it; the key is never stored."),
]


def backend_options(func: Callable) -> Callable:
    """--base-url and --api-key-env, as grade and judge take them, passed as one `backend` (an OpenAIBackend)."""

    @functools.wraps(func)
    def wrapper(*args, base_url, api_key_env, **kwargs):
        from ..backends import BackendOptions
        from ..backends.openai import OpenAIBackend

        # The model name is each journal's own (BatchJobs.client); the server and key are only these.
        return func(*args, backend=OpenAIBackend("batches", BackendOptions(base_url=base_url, api_key_env=api_key_env)),
                    **kwargs)

    for option in reversed(_BACKEND_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _jobs(backend):
    """A BatchJobs over the cache on the backend the user named."""
    from ..backends.base import CachedModel
    from ..batch import BatchJobs
    from ..cache import Cache

    return BatchJobs(CachedModel(backend, Cache()))


def _tell_server(records, action: str, backend):
    """Retrieve or cancel each live, submitted batch of `records` on `backend`, noting its state in its
    journal; a journal of another server or key variable is skipped, with a warning."""
    from ..batch import is_live, request_counts, save_journal, skip_foreign

    live = skip_foreign([r for r in records if is_live(r) and r.get("batch_id")], backend)
    if live:
        jobs = _jobs(backend)
        for record in live:
            current = getattr(jobs.client(record), action)(record["batch_id"])
            record.update(status=current.status, counts=request_counts(current))
            save_journal(jobs.cache_dir, record)
    return live


def _journals(ids, live_only: bool):
    from ..batch import live_journals, load_journals
    from ..cache import Cache

    cache = Cache()
    return live_journals(cache.directory, ids) if ids or live_only else load_journals(cache.directory)


def _table(records, title: str):
    from rich.table import Table

    from ..batch import batch_name, never_uploaded

    table = Table(title=title)
    for name in ("batch", "model", "state", "requests", "completed", "failed", "failed by kind"):
        table.add_column(name, justify="right" if name in ("requests", "completed", "failed") else "left")
    for r in records:
        counts = r.get("counts") or {}
        kinds: dict[str, int] = {}
        for kind, _ in (r.get("failed") or {}).values():
            kinds[kind] = kinds.get(kind, 0) + 1
        state = f"{r.get('status')}" + ("" if r.get("state") == "collected" else " (live)")
        table.add_row(batch_name(r), str(r.get("label")), "not submitted" if never_uploaded(r) else state,
                      str(len(r["keys"])), str(counts.get("completed", 0)), str(counts.get("failed", 0)),
                      ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return table


@batch.command()
@click.argument("ids", nargs=-1)
@backend_options
@summary_option
def status(ids, backend, summary):
    """Show every batch (or those named by batch id), the live ones on this server (--base-url,
    --api-key-env) as the server reports them now.

    \b
    Example:
      gasus batch status
      gasus batch status batch_abc123 --base-url http://localhost:8000/v1
    """
    from ..batch import is_live, never_uploaded

    records = _journals(ids, live_only=False)
    _tell_server(records, "retrieve", backend)
    unsent = sum(map(never_uploaded, records))
    title = f"{len(records)} batch(es), {sum(map(is_live, records)) - unsent} live"
    console().print(_table(records, title + (f", {unsent} not submitted" if unsent else "")))
    summary.items = len(records)
    summary.extra["batches"] = [{k: r.get(k) for k in ("batch_id", "status", "state", "counts")} for r in records]


@batch.command()
@click.argument("ids", nargs=-1)
@click.option("--poll-interval", type=float, default=5.0, show_default=True,
              help="Seconds before the first poll; grows by half each poll, up to 60 s.")
@backend_options
@summary_option
def wait(ids, poll_interval, backend, summary):
    """Wait for the live batches (or those named) to end and put their results in the cache.

    A rerun of the command that submitted them then reads every answer from the cache.

    \b
    Example:
      gasus batch wait
      gasus grade data.json -o scores.jsonl --grader openai:gpt-4o-mini --batch   # reads the cache
    """
    from ..batch import BatchOptions, never_uploaded, skip_foreign

    if poll_interval <= 0:
        raise BadInputError("--poll-interval must be more than 0 seconds")
    records = skip_foreign(_journals(ids, live_only=True), backend)
    out = console()
    for record in records:  # no batch to wait for: only the run that prepared it knows its requests
        if never_uploaded(record):
            out.print(f"journal {record['id']}: never uploaded; rerun the command that started it with `--batch`, "
                      f"or `gasus batch cancel {record['id']}` to drop it", soft_wrap=True)
    records = [r for r in records if not never_uploaded(r)]
    if not records:
        out.print("no live batches")
        return
    jobs = _jobs(backend)
    jobs.options = BatchOptions(poll_seconds=poll_interval)
    progress = BatchProgress(sum(len(r["keys"]) for r in records), "collecting")
    with progress:
        jobs.wait(records, progress.poll)
    out.print(_table(records, f"{len(records)} batch(es) collected"))
    kinds: dict[str, int] = {}
    for kind, _ in jobs.failed.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    out.print(f"{len(jobs.collected)} result(s) put in the cache, {len(jobs.failed)} failed"
              + (f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else ""), soft_wrap=True)
    summary.items = len(records)
    summary.model_calls = len(jobs.collected)
    summary.failures = len(jobs.failed)
    summary.extra["errors"] = kinds


@batch.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "cancel_all", is_flag=True, help="Cancel every live batch on this server.")
@backend_options
@summary_option
def cancel(ids, cancel_all, backend, summary):
    """Cancel live batches; what they answered before is collected by the next wait or rerun.

    A journal whose file never reached the server (the run was stopped, or the server was down, before its
    upload) holds nothing there: it is removed.

    \b
    Example:
      gasus batch cancel batch_abc123
      gasus batch cancel --all
    """
    from ..batch import never_uploaded, remove_journal, skip_foreign
    from ..cache import Cache

    if not ids and not cancel_all:
        raise BadInputError("name the batches to cancel, or give --all")
    journals = _journals(ids, live_only=True)
    records = _tell_server([r for r in journals if not never_uploaded(r)], "cancel", backend)
    # A journal whose file never reached the server holds nothing there: cancelling it is forgetting it.
    unsent = skip_foreign([r for r in journals if never_uploaded(r)], backend)
    cache_dir = Cache().directory
    out = console()
    for record in records:
        out.print(f"{record['batch_id']}: {record['status']}", soft_wrap=True)
    for record in unsent:
        remove_journal(cache_dir, record)
        out.print(f"journal {record['id']}: never uploaded, removed", soft_wrap=True)
    out.print(f"{len(records)} batch(es) cancelled")
    if unsent:
        out.print(f"{len(unsent)} unsubmitted journal(s) removed")
    summary.items = len(records)
    summary.extra["removed"] = len(unsent)
