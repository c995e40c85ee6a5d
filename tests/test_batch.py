"""`--batch`: cache misses asked through the Batch API of a fake files/batches server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch_server import FakeBatchServer
from tests.conftest import ROOT, run_cli
from tests.test_openai_backend import KEY, KEY_ENV


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def dataset(tmp_path: Path, *tags: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Task {i}.", "output": tag}) + "\n"
                            for i, tag in enumerate(tags)))
    return path


def grade_args(data: Path, out: Path, server: FakeBatchServer, *extra: str) -> list[str]:
    return ["grade", str(data), "-o", str(out), "--grader", "openai:test-model", "--base-url", server.url,
            "--api-key-env", KEY_ENV, "--batch", "--poll-interval", "0.05", *extra]


def on(server: FakeBatchServer) -> list[str]:
    """The options that name a batch command's server, as the runs that submitted its batches gave them."""
    return ["--base-url", server.url, "--api-key-env", KEY_ENV]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_run_killed_after_submission_and_rerun_submits_no_request_twice(tmp_path):
    data = dataset(tmp_path, "ok", "delay", "ok", "500", "429", "ok", "ok")  # rows 0, 2: the same request
    data.write_text(data.read_text().replace('"Task 2."', '"Task 0."'))
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=2.0) as server:
        args = grade_args(data, out, server, "--batch-split", "3")
        child = subprocess.Popen([sys.executable, "-m", "gasus", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            deadline = time.monotonic() + 60
            while len(server.batches) < 2 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.01)
            assert len(server.batches) == 2  # 6 distinct requests, at most 3 a batch
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert not out.exists()
        assert all(b["status"] in ("validating", "in_progress") for b in server.batches.values())

        summary = tmp_path / "summary.json"
        result = run_cli(*args, "--summary-json", str(summary))
        assert result.exit_code == 0, result.output
        assert len(server.batches) == 2  # the rerun found both batches and submitted none
        assert len(server.submitted) == 6 and set(server.submitted.values()) == {1}
        assert server.requests_total() == 0  # and asked nothing through the chat endpoint
    assert [(r["index"], r["score"], r["status"]) for r in rows(out)] == [
        (0, 4.5, "ok"), (1, 4.0, "ok"), (2, 4.5, "ok"), (3, 5.0, "ok"), (4, 3.0, "ok"), (5, 4.5, "ok"), (6, 4.5, "ok")]
    report = json.loads(summary.read_text())
    assert (report["model_calls"], report["cache_hits"], report["failures"]) == (6, 0, 0)


def test_batch_with_failed_requests_retries_only_those(tmp_path):
    data = dataset(tmp_path, "ok", "fail", "ok", "fail")
    out = tmp_path / "scores.jsonl"
    summary = tmp_path / "summary.json"
    with FakeBatchServer(delay=0.1) as server:
        first = run_cli(*grade_args(data, out, server, "--summary-json", str(summary)))
        assert first.exit_code == 0, first.output
        graded = rows(out)
        assert [g["status"] for g in graded] == ["ok", "error", "ok", "error"]
        assert graded[1]["raw"] == "batch batch_2: HTTP 500: The server had an error"
        report = json.loads(summary.read_text())
        assert (report["model_calls"], report["failures"], report["errors"]) == (2, 2, {"http_500": 2})
        assert "errors: http_500 2" in first.output

        again = run_cli(*grade_args(data, out, server, "--summary-json", str(summary)))
        assert again.exit_code == 0
        assert len(server.batches) == 1  # a plain rerun reports the failures, resubmits nothing
        assert [g["status"] for g in rows(out)] == ["ok", "error", "ok", "error"]
        report = json.loads(summary.read_text())
        assert (report["model_calls"], report["cache_hits"], report["errors"]) == (0, 2, {"http_500": 2})

        retried = run_cli(*grade_args(data, out, server, "--retry-failed", "--summary-json", str(summary)))
        assert retried.exit_code == 0
        assert len(server.batches) == 2
        second = next(b for name, b in server.batches.items() if name != "batch_2")["_lines"]
        assert len(second) == 2 and all(server.submitted[line["custom_id"]] == 2 for line in second)
        assert sorted(server.submitted.values()) == [1, 1, 2, 2]
    assert [(g["score"], g["status"]) for g in rows(out)] == [(4.5, "ok")] * 4
    report = json.loads(summary.read_text())
    assert (report["model_calls"], report["cache_hits"], report["failures"]) == (2, 2, 0)


def test_batch_output_is_identical_to_the_synchronous_path(tmp_path, monkeypatch):
    data = dataset(tmp_path, "ok", "delay", "ok", "delay", "ok")  # no retries on the synchronous path
    answers = {}
    for name, text in (("a", "Paris."), ("b", "It is Paris, the capital.")):
        answers[name] = tmp_path / f"{name}.jsonl"
        answers[name].write_text("".join(json.dumps({"testset": "vicuna", "id": str(i), "question": f"Q{i}?",
                                                     "answer": f"{text} {i}", "model": name}) + "\n"
                                         for i in range(3)))
    outputs = {}
    with FakeBatchServer(delay=0.1) as server:
        for way, flags in (("sync", []), ("batch", ["--batch", "--poll-interval", "0.05"])):
            monkeypatch.setenv("GASUS_CACHE_DIR", str(tmp_path / f"cache-{way}"))
            common = ["--base-url", server.url, "--api-key-env", KEY_ENV, *flags]
            graded = run_cli("grade", str(data), "-o", str(tmp_path / f"scores-{way}.jsonl"),
                             "--grader", "openai:test-model", *common)
            judged = run_cli("judge", str(answers["a"]), str(answers["b"]), "-o", str(tmp_path / f"j-{way}.jsonl"),
                             "--judge", "openai:test-model", *common)
            assert graded.exit_code == 0 and judged.exit_code == 0, graded.output + judged.output
            outputs[way] = [(tmp_path / f"{name}-{way}.jsonl").read_bytes() for name in ("scores", "j")]
        assert len(server.batches) == 2 and sum(server.submitted.values()) == 5 + 6
        assert server.requests_total() == 5 + 6  # the synchronous runs' calls
    assert outputs["batch"] == outputs["sync"]


def test_batch_thinking_cut_off_is_asked_again_in_a_second_batch_with_twice_the_budget(tmp_path):
    data = dataset(tmp_path, "ok", "think")
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=0.05) as server:
        first = run_cli(*grade_args(data, out, server, "--max-new-tokens", "16"))
        assert first.exit_code == 0, first.output
        budgets = [[line["body"]["max_tokens"] for line in b["_lines"]] for b in server.batches.values()]
        assert budgets == [[16, 16], [32]]  # only the reply cut off in its thinking goes again, at 32
        again = run_cli(*grade_args(data, out, server, "--max-new-tokens", "16"))
        assert again.exit_code == 0 and len(server.batches) == 2  # every budget's reply is cached
    graded = rows(out)
    assert [(g["score"], g["status"]) for g in graded] == [(4.5, "ok"), (4.0, "ok")]
    assert graded[1]["reasoning"] == "Score: 1. No, the task is done well, so it is higher."
    assert graded[1]["raw"] == "4\nFine."


def test_no_wait_then_batch_wait_collects_an_expired_batch_counted_by_kind(tmp_path):
    data = dataset(tmp_path, "ok", "ok", "ok")
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=0.1) as server:
        server.expire_next, server.expire_answers = True, 1
        submitted = run_cli(*grade_args(data, out, server, "--no-wait"))
        assert submitted.exit_code == 0, submitted.output
        assert "1 batch(es) submitted, 1 pending with 3 request(s)" in submitted.output
        assert not out.exists()
        status = run_cli("batch", "status", *on(server))
        assert status.exit_code == 0 and "1 batch(es), 1 live" in status.output and "batch_2" in status.output

        summary = tmp_path / "wait.json"
        waited = run_cli("batch", "wait", "--poll-interval", "0.05", "--summary-json", str(summary), *on(server))
        assert waited.exit_code == 0, waited.output
        assert "1 result(s) put in the cache, 2 failed (batch_expired 2)" in waited.output
        assert json.loads(summary.read_text())["errors"] == {"batch_expired": 2}
        assert run_cli("batch", "wait").output.strip() == "no live batches"

        graded = run_cli(*grade_args(data, out, server, "--summary-json", str(summary)))
        assert graded.exit_code == 0
        assert [g["status"] for g in rows(out)] == ["ok", "error", "error"]
        report = json.loads(summary.read_text())
        assert (report["model_calls"], report["cache_hits"], report["errors"]) == (0, 1, {"batch_expired": 2})
        assert len(server.batches) == 1


def test_batch_cancel_then_wait_counts_the_cancelled_requests(tmp_path):
    data = dataset(tmp_path, "ok", "ok")
    with FakeBatchServer(delay=30) as server:
        assert run_cli(*grade_args(data, tmp_path / "s.jsonl", server, "--no-wait")).exit_code == 0
        cancelled = run_cli("batch", "cancel", "--all", *on(server))
        assert cancelled.exit_code == 0, cancelled.output
        assert cancelled.output.splitlines() == ["batch_2: cancelled", "1 batch(es) cancelled"]
        waited = run_cli("batch", "wait", "--poll-interval", "0.05", *on(server))
        assert "0 result(s) put in the cache, 2 failed (batch_cancelled 2)" in waited.output
        assert run_cli("batch", "cancel", "--all").output.splitlines() == ["0 batch(es) cancelled"]


def test_cancel_needs_ids_or_all(tmp_path):
    result = run_cli("batch", "cancel")
    assert result.exit_code == 2
    assert result.output.strip() == "Error: name the batches to cancel, or give --all"
    result = run_cli("batch", "cancel", "batch_nope")
    assert result.exit_code == 2
    assert result.output.strip().startswith("Error: no batch batch_nope in ")


@pytest.mark.parametrize(("args", "message"), [
    (["--no-wait"], "Error: --no-wait needs --batch"),
    (["--batch", "--batch-split", "0"], "Error: --batch-split: a batch holds 1 to 50,000 requests, not 0"),
    (["--batch", "--grader", "replay:REPLAY"],
     "Error: batches need an openai: model (the OpenAI Batch API or a server with /v1/files and /v1/batches), "
     "not replay:REPLAY"),
])
def test_batch_options_refuse_bad_input(tmp_path, args, message):
    data = dataset(tmp_path, "ok")
    replay = tmp_path / "r.jsonl"
    replay.write_text("")
    args = [a.replace("REPLAY", str(replay)) for a in args]
    result = run_cli("grade", str(data), "-o", str(tmp_path / "s.jsonl"), *args)
    assert result.exit_code == 2
    assert result.output.strip() == message.replace("REPLAY", str(replay))
    assert not (tmp_path / "s.jsonl").exists()


def test_dry_run_shows_the_batch_price_beside_the_synchronous_one(tmp_path):
    data = dataset(tmp_path, "ok", "fine", "good")
    result = run_cli("grade", str(data), "--grader", "openai:gpt-4o-mini", "--base-url", "http://127.0.0.1:9/v1",
                     "--dry-run")
    assert result.exit_code == 0
    # 448 tokens in, 3 x 256 out: $0.000528 at $0.15/$0.60, half that ($0.000264) through the Batch API
    assert result.output.splitlines()[1] == (
        "estimated 448 input tokens (~4 characters each) and at most 768 output tokens: at most about $0.0005 at "
        "$0.15/$0.6 per 1M tokens; with --batch at most about $0.0003 at $0.075/$0.3")


def test_run_config_batch_needs_an_openai_model(tmp_path, monkeypatch):
    from gasus.errors import BadInputError
    from gasus.pipeline import load_run_config

    config = tmp_path / "run.toml"
    config.write_text("[data]\npath = 'run.toml'\n[grade]\ngrader = 'openai:gpt-4o-mini'\nbatch = true\n"
                      f"api_key_env = '{KEY_ENV}'\n[judge]\njudge = 'openai:gpt-4o'\nbatch = true\n"
                      f"api_key_env = '{KEY_ENV}'\n")
    loaded = load_run_config(config)
    assert (loaded.grade.batch, loaded.judge.batch) == (True, True)
    config.write_text("[data]\npath = 'run.toml'\n[grade]\nbatch = true\n[judge]\nbatch = 'yes'\n")
    with pytest.raises(BadInputError) as error:
        load_run_config(config)
    assert str(error.value) == (
        f"{config}: 2 problems in the config:\n  [grade] batch = true needs an openai: model (the Batch API), "
        "not the embedded model\n  [judge] batch must be true or false, got 'yes'")


@pytest.mark.parametrize("killed", ["after the batch was created", "before the file was uploaded"])
def test_batch_journaled_before_it_existed_is_found_or_submitted_once(tmp_path, killed):
    from gasus.backends import BackendOptions, CachedModel
    from gasus.backends.openai import OpenAIBackend
    from gasus.batch import (
        BatchOptions,
        BatchPending,
        journal_dir,
        load_journals,
        run_batched,
        save_journal,
    )
    from gasus.cache import Cache
    from gasus.grade import grade_request, grading_prompt
    from gasus.records import Example

    requests = [grade_request(grading_prompt(), Example(i, f"Task {i}.", "", "ok"), "generate") for i in range(3)]
    options = BatchOptions(poll_seconds=0.05)
    with FakeBatchServer(delay=0.5) as server:
        def model():
            backend = OpenAIBackend("test-model", BackendOptions(base_url=server.url, api_key_env=KEY_ENV))
            return CachedModel(backend, Cache(tmp_path / "c"))

        with pytest.raises(BatchPending, match="1 batch\\(es\\) pending"):
            run_batched(model(), requests, options=BatchOptions(wait=False))
        [record] = load_journals(tmp_path / "c")
        # The journal as a run killed at that moment left it: the batch's id never written, or not even the file's.
        record.update(state="preparing", batch_id=None, status=None)
        if killed == "before the file was uploaded":
            record["input_file_id"] = None
            del server.batches[next(iter(server.batches))]
            server.submitted.clear()
        save_journal(tmp_path / "c", record)
        again = model()
        results = run_batched(again, requests, options=options)
        assert len(server.batches) == 1 and sorted(server.submitted.values()) == [1, 1, 1]
    assert [r.value["text"] for r in results] == ["4.5\nAccurate."] * 3
    assert again.stats.model_calls == 3
    assert len(list(journal_dir(tmp_path / "c").glob("*.json"))) == 1


@pytest.mark.parametrize("lost", ["the reply after the file and the batch were made", "the request before either"])
def test_batch_created_twice_after_an_ambiguous_502_is_found_and_made_once(tmp_path, lost):
    from gasus.batch import load_journals
    from gasus.cache import Cache

    data = dataset(tmp_path, "ok", "ok", "ok")
    out = tmp_path / "scores.jsonl"
    summary = tmp_path / "summary.json"
    with FakeBatchServer(delay=0.1) as server:
        faults = server.lost_replies if lost.startswith("the reply") else server.failed_posts
        faults.update({"files": 1, "batches": 1})
        result = run_cli(*grade_args(data, out, server, "--summary-json", str(summary)))
        assert result.exit_code == 0, result.output
        inputs = [f["meta"]["id"] for f in server.files.values() if f["meta"]["purpose"] == "batch"]
        assert len(inputs) == 1 and len(server.batches) == 1  # one file, one batch: the requests paid once
        assert sorted(server.submitted.values()) == [1, 1, 1]
        assert (+server.lost_replies, +server.failed_posts) == ({}, {})  # the faults did happen
        [batch] = server.batches.values()
    [record] = load_journals(Cache().directory)
    assert (record["batch_id"], record["input_file_id"], record["state"]) == (batch["id"], inputs[0], "collected")
    assert batch["input_file_id"] == inputs[0] and batch["metadata"] == {"gasus_journal": record["id"]}
    assert [(g["score"], g["status"]) for g in rows(out)] == [(4.5, "ok")] * 3
    report = json.loads(summary.read_text())
    assert (report["model_calls"], report["cache_hits"], report["failures"]) == (3, 0, 0)


def test_concurrent_batch_runs_count_each_call_once_for_the_run_that_submitted_it(tmp_path):
    data = dataset(tmp_path, *["ok"] * 40)
    with FakeBatchServer(delay=1e9) as server:  # no batch ends until all three runs wait on it
        children = []
        for i in range(3):
            env = {**os.environ, "PYTHONPATH": str(ROOT), "GASUS_TEST_KEY": f"{KEY}-{i}"}
            args = ["grade", str(data), "-o", str(tmp_path / f"scores-{i}.jsonl"), "--grader", "openai:test-model",
                    "--base-url", server.url, "--api-key-env", "GASUS_TEST_KEY", "--batch",
                    "--poll-interval", "0.05", "--summary-json", str(tmp_path / f"summary-{i}.json")]
            with open(tmp_path / f"stderr-{i}.txt", "wb") as stderr:
                children.append(subprocess.Popen([sys.executable, "-m", "gasus", *args], cwd=ROOT, env=env,
                                                 stdout=subprocess.DEVNULL, stderr=stderr))
        try:
            deadline = time.monotonic() + 120
            while len(server.pollers) < 3 and time.monotonic() < deadline:  # each run polls with its own key value
                time.sleep(0.05)
            assert len(server.pollers) == 3
            server.delay = 0
            codes = [child.wait(timeout=120) for child in children]
        finally:
            for child in children:
                child.kill()
                child.wait()
        assert codes == [0, 0, 0], [(tmp_path / f"stderr-{i}.txt").read_text()[-2000:] for i in range(3)]
        assert len(server.batches) == 1 and len(server.submitted) == 40 and set(server.submitted.values()) == {1}
    reports = [json.loads((tmp_path / f"summary-{i}.json").read_text()) for i in range(3)]
    assert sum(r["model_calls"] for r in reports) == 40  # not 120: each run saw the whole batch end
    assert sorted((r["model_calls"], r["cache_hits"], r["failures"]) for r in reports) == [
        (0, 40, 0), (0, 40, 0), (40, 0, 0)]
    for i in range(3):
        assert [g["score"] for g in rows(tmp_path / f"scores-{i}.jsonl")] == [4.5] * 40


def test_malformed_line_in_a_batch_output_file_fails_its_key_and_the_rest_is_collected(tmp_path):
    from gasus.batch import load_journals
    from gasus.cache import Cache

    def garble(lines: list[dict]) -> list[str]:
        lines[0]["response"] = "oops"  # a response that is a string
        lines[1]["response"]["body"] = "oops"  # a body that is a string
        lines[2]["custom_id"] = [lines[2]["custom_id"]]  # names no key: skipped, its request unanswered
        lines[4]["response"]["body"]["choices"][0]["message"]["content"] = 5  # a completion of the wrong shape
        return ["not json", "[1, 2]", "", *map(json.dumps, lines)]

    data = dataset(tmp_path, "ok", "ok", "ok", "ok", "ok")
    out = tmp_path / "scores.jsonl"
    summary = tmp_path / "summary.json"
    reports = []
    with FakeBatchServer(delay=0.1) as server:
        server.garble = garble
        for _ in range(2):  # the rerun reads the failures from the journal: no traceback, nothing asked again
            result = run_cli(*grade_args(data, out, server, "--summary-json", str(summary)))
            assert result.exit_code == 0, result.output
            graded = rows(out)
            assert [g["status"] for g in graded] == ["error", "error", "error", "ok", "error"]
            assert [g["raw"] for g in graded] == [
                "batch batch_2: the output line's response is not an object",
                "batch batch_2: the output line's response body is not an object",
                "batch batch_2: the batch ended completed without answering it "
                "(3 line(s) of its output named no request of it and were skipped)",
                "4.5\nAccurate.",
                "batch batch_2: the server's reply is not a completion (choices[0] content is not text)"]
            report = json.loads(summary.read_text())
            reports.append((report["model_calls"], report["cache_hits"], report["failures"], report["errors"]))
        assert len(server.batches) == 1
    assert reports == [(1, 0, 4, {"batch_completed": 1, "invalid_line": 3}),
                       (0, 1, 4, {"batch_completed": 1, "invalid_line": 3})]
    [record] = load_journals(Cache().directory)
    assert record["skipped_lines"] == 3


# ---------------------------------------------------------------- untrusted journals (issue 23)

SECRET_ENV, SECRET = "MY_SECRET_DB_PASSWORD", "hunter2-db-password-0451"


class WatchedBatchServer(FakeBatchServer):
    """The fake batch server, noting every request it receives: method, path and Authorization header."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[tuple[str, str, str]] = []

    def handle(self, handler):
        with self.lock:
            self.seen.append(("POST", handler.path, handler.headers.get("Authorization", "")))
        return super().handle(handler)

    def handle_get(self, handler):
        with self.lock:
            self.seen.append(("GET", handler.path, handler.headers.get("Authorization", "")))
        return super().handle_get(handler)


def journal_files(cache: Path) -> list[Path]:
    return sorted((cache / "batches").glob("*.json"))


def plant(cache: Path, name: str, record: dict | str) -> Path:
    path = cache / "batches" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


def test_planted_journal_is_skipped_and_never_gets_a_secret_or_a_request(tmp_path, monkeypatch):
    from gasus.cache import Cache

    monkeypatch.setenv(SECRET_ENV, SECRET)
    Cache(tmp_path / "cache")  # the cache dir the journal is planted in
    data = dataset(tmp_path, "ok", "ok")
    out = tmp_path / "scores.jsonl"
    with WatchedBatchServer(delay=0.1) as server, WatchedBatchServer(delay=0.1) as planted:
        # The keys this grade will ask, learnt from a run in another cache dir: what a planted journal holds.
        monkeypatch.setenv("GASUS_CACHE_DIR", str(tmp_path / "elsewhere"))
        assert run_cli(*grade_args(data, out, server, "--no-wait")).exit_code == 0
        [learnt] = journal_files(tmp_path / "elsewhere")
        record = json.loads(learnt.read_text())
        monkeypatch.setenv("GASUS_CACHE_DIR", str(tmp_path / "cache"))
        record.update(id="20260101T000000-planted00000", base_url=planted.url, api_key_env=SECRET_ENV,
                      batch_id="batch_1", status="in_progress")
        plant(tmp_path / "cache", record["id"], record)
        skipped = (f"Warning: skipped batch journal 20260101T000000-planted00000: its batch is on {planted.url} "
                   f"with key variable {SECRET_ENV}, not on ")
        here = on(server)

        status = run_cli("batch", "status")  # the OpenAI API by default: nothing is contacted
        assert status.exit_code == 0, status.output
        assert status.output.splitlines()[0] == skipped + "https://api.openai.com/v1 with key variable " \
                                                          "OPENAI_API_KEY; it was not contacted"
        assert "1 batch(es), 1 live" in status.output and "batch_1" in status.output
        for args in (["batch", "status", *here], ["batch", "wait", "--poll-interval", "0.05", *here],
                     ["batch", "cancel", "--all", *here], ["batch", "cancel", "batch_1", *here]):
            result = run_cli(*args)
            assert result.exit_code == 0, result.output
            assert result.output.splitlines()[0] == skipped + f"{server.url} with key variable {KEY_ENV}; it was " \
                                                              "not contacted"
        assert run_cli("batch", "wait", *here).output.splitlines()[1:] == ["no live batches"]
        assert run_cli("batch", "cancel", "--all", *here).output.splitlines()[1:] == ["0 batch(es) cancelled"]

        seen_before = len(server.seen)
        graded = run_cli(*grade_args(data, out, server))  # an ordinary run asks its requests itself
        assert graded.exit_code == 0, graded.output
        assert graded.output.splitlines()[0] == skipped + f"{server.url} with key variable {KEY_ENV}; it was " \
                                                          "not contacted"
        assert [(g["score"], g["status"]) for g in rows(out)] == [(4.5, "ok"), (4.5, "ok")]
        assert len(server.batches) == 2 and len(server.seen) > seen_before
        assert planted.seen == []  # the planted journal's server heard nothing at all
        assert {auth for _, _, auth in server.seen} == {f"Bearer {KEY}"}
    assert json.loads((tmp_path / "cache" / "batches" / f"{record['id']}.json").read_text()) == record


@pytest.mark.parametrize("ident", ["../../x", "ABSOLUTE"])
def test_journal_id_that_is_a_path_writes_nothing_outside_the_cache(tmp_path, ident):
    import warnings

    from gasus.batch import load_journals, save_journal
    from gasus.errors import BadInputError

    outside = tmp_path / "abs" / "x"
    outside.parent.mkdir()
    ident = str(outside) if ident == "ABSOLUTE" else ident
    cache = tmp_path / "cache"
    data = dataset(tmp_path, "ok")
    with FakeBatchServer(delay=30) as server:
        assert run_cli(*grade_args(data, tmp_path / "s.jsonl", server, "--no-wait")).exit_code == 0
        [path] = journal_files(cache)
        record = json.loads(path.read_text())
        record["id"] = ident
        path.write_text(json.dumps(record))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_journals(cache) == []
        assert [str(w.message) for w in caught] == [f"skipped batch journal {path}: no valid id"]
        assert caught[0].category.__name__ == "GasusWarning"

        status = run_cli("batch", "status", *on(server))
        assert status.exit_code == 0, status.output
        assert status.output.splitlines()[0] == f"Warning: skipped batch journal {path}: no valid id"
        assert "0 batch(es), 0 live" in status.output
        with pytest.raises(BadInputError, match="not a journal id"):
            save_journal(cache, record)
    written = [p for p in tmp_path.rglob("x*.json")]
    assert written == [] and journal_files(cache) == [path]


def test_sync_rerun_sends_nothing_a_live_batch_holds(tmp_path):
    data = dataset(tmp_path, "ok", "ok", "ok")
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=30) as server:
        assert run_cli(*grade_args(data, out, server, "--no-wait")).exit_code == 0
        data.write_text(data.read_text() + json.dumps({"instruction": "Task 3.", "output": "ok"}) + "\n")
        summary = tmp_path / "summary.json"
        sync = run_cli("grade", str(data), "-o", str(out), "--grader", "openai:test-model", "--base-url", server.url,
                       "--api-key-env", KEY_ENV, "--summary-json", str(summary))
        assert sync.exit_code == 0, sync.output
        assert sync.output.splitlines() == [
            "3 request(s) are in live batch batch_2: `gasus batch wait`, or rerun with `--batch`",
            "3 request(s) pending, not sent again; no output written"]
        assert server.requests_total() == 1  # only the row no batch holds went to the chat endpoint
        assert not out.exists()
        report = json.loads(summary.read_text())
        assert (report["model_calls"], report["failures"], report["batches"]) == (1, 0, {"held": {"batch_2": 3}})

        answers = {}
        for name in "ab":
            answers[name] = tmp_path / f"{name}.jsonl"
            answers[name].write_text(json.dumps({"testset": "vicuna", "id": "1", "question": "Q?",
                                                 "answer": f"answer {name}", "model": name}) + "\n")
        judge = ["judge", str(answers["a"]), str(answers["b"]), "-o", str(tmp_path / "j.jsonl"), "--judge",
                 "openai:test-model", "--base-url", server.url, "--api-key-env", KEY_ENV]
        assert run_cli(*judge, "--batch", "--no-wait").exit_code == 0
        judged = run_cli(*judge)
        assert judged.exit_code == 0, judged.output
        assert judged.output.splitlines() == [
            "2 request(s) are in live batch batch_4: `gasus batch wait`, or rerun with `--batch`",
            "2 request(s) pending, not sent again; no output written"]
        assert server.requests_total() == 1 and not (tmp_path / "j.jsonl").exists()


def test_crafted_journals_are_skipped_and_the_others_still_work(tmp_path):
    from gasus.batch import load_journals

    data = dataset(tmp_path, "ok", "ok")
    cache = tmp_path / "cache"
    with FakeBatchServer(delay=0.1) as server:
        assert run_cli(*grade_args(data, tmp_path / "s.jsonl", server, "--no-wait")).exit_code == 0
        [good] = journal_files(cache)
        template = json.loads(good.read_text())
        bad = {
            "deep": plant(cache, "deep", "[" * 100_000 + "]" * 100_000),
            "created": plant(cache, "created", {**template, "id": "created", "created": "yesterday"}),
            "failed": plant(cache, "failed", {**template, "id": "failed", "failed": [["http_500", "boom"]]}),
            "noid": plant(cache, "noid", {k: v for k, v in template.items() if k != "id"}),
        }
        warnings = sorted([
            f"Warning: skipped batch journal {bad['created']}: a time that is not a number",
            f"Warning: skipped batch journal {bad['deep']}: not JSON",
            f"Warning: skipped batch journal {bad['failed']}: failed requests that are not [kind, message] pairs",
            f"Warning: skipped batch journal {bad['noid']}: no valid id"])
        with pytest.warns(UserWarning) as caught:
            assert [r["id"] for r in load_journals(cache)] == [template["id"]]
        assert sorted(f"Warning: {w.message}" for w in caught) == warnings
        here = on(server)
        status = run_cli("batch", "status", *here)
        assert status.exit_code == 0, status.output
        assert sorted(status.output.splitlines()[:4]) == warnings
        assert "1 batch(es), 1 live" in status.output
        waited = run_cli("batch", "wait", "--poll-interval", "0.05", *here)
        assert waited.exit_code == 0, waited.output
        assert sorted(waited.output.splitlines()[:4]) == warnings
        assert waited.output.splitlines()[-1] == "2 result(s) put in the cache, 0 failed"
        cancelled = run_cli("batch", "cancel", "--all", *here)
        assert cancelled.exit_code == 0
        assert cancelled.output.splitlines()[4:] == ["0 batch(es) cancelled"]
        graded = run_cli(*grade_args(data, tmp_path / "s.jsonl", server))  # every answer is in the cache
        assert graded.exit_code == 0 and "skipped batch journal" not in graded.output
        assert len(server.batches) == 1 and [g["status"] for g in rows(tmp_path / "s.jsonl")] == ["ok", "ok"]
    assert sorted(journal_files(cache)) == sorted([good, *bad.values()])


@pytest.mark.parametrize("status", [404, 405])
def test_batch_on_a_server_without_the_batch_api_says_so_and_a_run_without_batch_then_works(tmp_path, status):
    from gasus.batch import journal_dir
    from gasus.cache import Cache

    data = dataset(tmp_path, "ok", "ok")
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=0.1) as server:
        server.batch_routes_status = status  # as vLLM's and Ollama's servers: chat, but no /v1/files
        result = run_cli(*grade_args(data, out, server))
        assert result.exit_code == 2
        assert result.output.splitlines() == [
            f"Error: openai:test-model: uploading a batch file: Error code: {status}; the server may not offer the "
            "Batch API (/v1/files and /v1/batches; vLLM and Ollama do not): run without --batch"]
        assert list(journal_dir(Cache().directory).glob("*.json")) == []  # refused outright: nothing to resume
        sync = run_cli("grade", str(data), "-o", str(out), "--grader", "openai:test-model", *on(server))
        assert sync.exit_code == 0, sync.output
        assert server.requests_total() == 2 and not server.files and not server.batches
    assert [(g["score"], g["status"]) for g in rows(out)] == [(4.5, "ok")] * 2


def never_uploaded_journal(tmp_path: Path, server: FakeBatchServer, data: Path) -> dict:
    """The journal a `--batch` run leaves when the server's batch routes are down (503) at its upload."""
    from gasus.batch import load_journals
    from gasus.cache import Cache

    server.batch_routes_status = 503
    failed = run_cli(*grade_args(data, tmp_path / "scores.jsonl", server, "--max-attempts", "1"))
    assert failed.output.splitlines() == ["Error: openai:test-model: listing files: Error code: 503"]
    [record] = load_journals(Cache().directory)
    assert (record["state"], record["input_file_id"], record["batch_id"]) == ("preparing", None, None)
    return record


@pytest.mark.parametrize("how", ["--all", "by journal id"])
def test_never_uploaded_journal_is_shown_not_submitted_and_cancel_removes_it(tmp_path, monkeypatch, how):
    from gasus.batch import journal_dir
    from gasus.cache import Cache

    monkeypatch.setenv("COLUMNS", "200")  # the status table on one line a row
    data = dataset(tmp_path, "ok", "ok")
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=0.1) as server:
        sync = ["grade", str(data), "-o", str(out), "--grader", "openai:test-model", *on(server)]
        record = never_uploaded_journal(tmp_path, server, data)
        ident = record["id"]
        status = run_cli("batch", "status", *on(server))
        assert status.exit_code == 0, status.output
        assert status.output.splitlines()[0].strip() == "1 batch(es), 0 live, 1 not submitted"
        assert f"(journal {ident}, not submitted) │ openai:test-model │ not submitted │" in status.output
        held = run_cli(*sync)
        assert held.output.splitlines() == [
            f"2 request(s) are in batch journal {ident}, never uploaded: rerun with `--batch`, or "
            f"`gasus batch cancel {ident}` to drop it",
            "2 request(s) pending, not sent again; no output written"]
        waited = run_cli("batch", "wait", *on(server))
        assert waited.exit_code == 0, waited.output
        assert waited.output.splitlines() == [
            f"journal {ident}: never uploaded; rerun the command that started it with `--batch`, or "
            f"`gasus batch cancel {ident}` to drop it", "no live batches"]

        cancelled = run_cli("batch", "cancel", *(["--all"] if how == "--all" else [ident]), *on(server))
        assert cancelled.exit_code == 0, cancelled.output
        assert cancelled.output.splitlines() == [
            f"journal {ident}: never uploaded, removed", "0 batch(es) cancelled", "1 unsubmitted journal(s) removed"]
        assert list(journal_dir(Cache().directory).glob("*.json")) == []
        assert run_cli("batch", "status").output.splitlines()[0].strip() == "0 batch(es), 0 live"
        graded = run_cli(*sync)
        assert graded.exit_code == 0, graded.output
        assert server.requests_total() == 2 and not server.batches
    assert [(g["score"], g["status"]) for g in rows(out)] == [(4.5, "ok")] * 2


def test_never_uploaded_journal_is_uploaded_by_a_rerun_of_the_same_command(tmp_path):
    from gasus.batch import load_journals
    from gasus.cache import Cache

    data = dataset(tmp_path, "ok", "ok")
    out = tmp_path / "scores.jsonl"
    with FakeBatchServer(delay=0.1) as server:
        record = never_uploaded_journal(tmp_path, server, data)
        server.batch_routes_status = None  # the batch service is back
        again = run_cli(*grade_args(data, out, server, "--max-attempts", "1"))
        assert again.exit_code == 0, again.output
        [batch] = server.batches.values()
        assert batch["metadata"] == {"gasus_journal": record["id"]}  # the same journal, its file uploaded now
        assert sorted(server.submitted.values()) == [1, 1] and server.requests_total() == 0
    [after] = load_journals(Cache().directory)
    assert (after["id"], after["state"], after["batch_id"]) == (record["id"], "collected", batch["id"])
    assert [(g["score"], g["status"]) for g in rows(out)] == [(4.5, "ok")] * 2
