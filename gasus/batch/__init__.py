"""Provider batch jobs that fill cache entries by key: OpenAI's Batch API, or any server that
implements `/v1/files` and `/v1/batches`, at half the price of the chat API and with larger limits.

The cache misses of a run become JSONL input files (split at the API's request-count and size
limits) whose lines carry the request body the synchronous path would send and, as `custom_id`,
the request's cache key: results land in the cache by key, whatever order they come back in.

Every batch is journaled in the cache dir (`batches/*.json`, each written whole through a
rename) before its file is uploaded, again once the file exists and again the moment the batch
exists, so a rerun after Ctrl-C, SIGKILL or a reboot finds it: a request that a live batch holds
is never submitted again, and finished batches are collected. A batch that ended with failed
requests keeps them in its journal; they are reported, and resubmitted only with `retry_failed`.

`journal` reads, checks and writes the journals and says whose server they belong to; `client`
talks to one server's files and batches; `jobs` submits, polls and collects the batches of one
model's cache dir; `runner` runs a model's requests through them (or beside live ones). Each
imports only the ones listed before it.
"""

from .client import NO_BATCH_API, BatchClient, BatchRefused, backend_for, request_counts
from .jobs import (
    COLLECT,
    ENDED,
    MAX_BYTES,
    MAX_REQUESTS,
    BatchJobs,
    BatchOptions,
    batch_lines,
    split_lines,
)
from .journal import (
    JOURNAL_DIR,
    batch_name,
    is_live,
    journal_dir,
    journal_matches,
    journal_problem,
    live_journals,
    load_journals,
    never_uploaded,
    remove_journal,
    save_journal,
    skip_foreign,
    skipped_message,
)
from .runner import (
    BatchHeld,
    BatchPending,
    batch_runner,
    claim_and_submit,
    run_batched,
    run_beside_batches,
)

__all__ = [
    "BatchClient",
    "BatchHeld",
    "BatchJobs",
    "BatchOptions",
    "BatchPending",
    "BatchRefused",
    "COLLECT",
    "ENDED",
    "JOURNAL_DIR",
    "MAX_BYTES",
    "MAX_REQUESTS",
    "NO_BATCH_API",
    "backend_for",
    "batch_lines",
    "batch_name",
    "batch_runner",
    "claim_and_submit",
    "is_live",
    "journal_dir",
    "journal_matches",
    "journal_problem",
    "live_journals",
    "load_journals",
    "never_uploaded",
    "remove_journal",
    "request_counts",
    "run_batched",
    "run_beside_batches",
    "save_journal",
    "skip_foreign",
    "skipped_message",
    "split_lines",
]
