"""Nothing lost, nothing paid twice: `gasus grade` against a local OpenAI-compatible server that
counts every request, killed with SIGKILL, run twice at once, and failing in every way a real one does."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from gasus.cache import Cache
from tests.conftest import ROOT, run_cli
from tests.test_openai_backend import FakeServer

KEY_ENV = "GASUS_TEST_API_KEY"
FAULTS = ("http_429", "http_500", "http_503", "reset", "timeout", "truncated", "invalid_json", "no_choices",
          "content_filter")
CLIENT_TIMEOUT = 1.0  # long enough that a busy machine's replies are never late


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


class CountingServer(FakeServer):
    """A chat-completions server that answers each prompt the same way, whenever and whoever asks.

    It logs every request's prompt and arrival time, numbers its replies (the number travels in
    usage.prompt_tokens, so a cached entry tells which request it came from), and with `fault_rate`
    fails that share of tries, each prompt's n-th try always the same way.
    """

    def __init__(self, delay: float = 0.0, fault_rate: float = 0.0):
        super().__init__()
        self.delay, self.fault_rate = delay, fault_rate
        self.arrivals: list[tuple[str, float]] = []
        self.serials: dict[int, str] = {}  # reply number -> prompt
        self.faults: Counter = Counter()

    def counts(self, since: int = 0) -> Counter:
        with self.lock:
            return Counter(prompt for prompt, _ in self.arrivals[since:])

    @staticmethod
    def answer(prompt: str) -> str:
        return f"{_digest(prompt) % 6}\nGraded."

    def fault(self, prompt: str, attempt: int) -> str | None:
        """Whether a prompt's try fails is fixed by the prompt and try; how, by turns through FAULTS."""
        if _digest(f"{prompt}|{attempt}") % 1000 < self.fault_rate * 1000:
            return FAULTS[sum(self.faults.values()) % len(FAULTS)]
        return None

    def handle(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        with self.lock:
            attempt = sum(1 for p, _ in self.arrivals if p == prompt)
            self.arrivals.append((prompt, time.time()))
            serial = len(self.arrivals)
            fault = self.fault(prompt, attempt)
            if fault:
                self.faults[fault] += 1
            else:
                self.serials[serial] = prompt
        time.sleep(self.delay)
        choice = {"index": 0, "message": {"role": "assistant", "content": self.answer(prompt)}, "finish_reason": "stop"}
        reply = {"id": f"r{serial}", "object": "chat.completion", "model": body["model"], "choices": [choice],
                 "usage": {"prompt_tokens": serial, "completion_tokens": 3}}
        if fault in ("http_429", "http_500", "http_503"):
            return self.send(handler, int(fault[5:]), b'{"error": {"message": "try later"}}', {"Retry-After": "0"})
        if fault == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()  # linger 0: the client sees a connection reset
            return None
        if fault == "timeout":
            time.sleep(CLIENT_TIMEOUT + 0.2)
        if fault == "truncated":
            data = json.dumps(reply).encode()
            return self.send(handler, 200, data[:len(data) // 2])
        if fault == "invalid_json":
            return self.send(handler, 200, b"<html>502 Bad Gateway</html>")
        if fault == "no_choices":
            reply["choices"] = []
        if fault == "content_filter":
            choice.update(message={"role": "assistant", "content": None}, finish_reason="content_filter")
        return self.send(handler, 200, json.dumps(reply).encode())


def write_dataset(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"instruction": f"Task {i}: name a prime above {i}.", "input": "",
                                        "output": f"Answer {i}."}) + "\n" for i in range(n)))
    return path


def grade_args(server: CountingServer, data: Path, out: Path, *extra: str) -> list[str]:
    return ["grade", str(data), "-o", str(out), "--grader", "openai:test-model", "--base-url", server.url,
            "--api-key-env", KEY_ENV, *extra]


def start(args: list[str], cache_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GASUS_CACHE_DIR": str(cache_dir), KEY_ENV: "sk-test-key"}
    return subprocess.Popen([sys.executable, "-m", "gasus", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cached_prompts(server: CountingServer, cache_dir: Path) -> set[str]:
    """The prompts whose answers the cache holds, told by the reply numbers stored with them."""
    if not (cache_dir / "cache.db").exists():
        return set()
    cache = Cache(cache_dir)
    try:
        return {server.serials[e["value"]["usage"]["prompt_tokens"]] for k, e in cache.entries()
                if not k.startswith(("claim:", "filehash:"))}
    finally:
        cache.close()


def verify(cache_dir: Path) -> subprocess.CompletedProcess:
    proc = start(["cache", "verify"], cache_dir)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_crash_safety_sigkill_at_ten_random_moments(tmp_path):
    """Issue 11 item 1: a run killed at any moment and rerun ends as an uninterrupted one, and
    never sends a prompt whose answer was already cached."""
    data = write_dataset(tmp_path / "data.jsonl", 60)
    rng = random.Random(11)
    with CountingServer(delay=0.05) as server:
        reference = start(grade_args(server, data, tmp_path / "ref.jsonl", "--concurrency", "2"), tmp_path / "ref")
        assert reference.wait(timeout=120) == 0, reference.stderr.read()
        kills = 0
        cache_dir, out = tmp_path / "cache", tmp_path / "scores.jsonl"
        while kills < 10:
            before, since = cached_prompts(server, cache_dir), len(server.arrivals)
            proc = start(grade_args(server, data, out, "--concurrency", "2"), cache_dir)
            wanted = rng.randint(0, 3)  # new requests before the kill (0: during start-up)
            while sum(server.counts(since).values()) < wanted and proc.poll() is None:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.1))
            proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=60)
            assert rc == -signal.SIGKILL, f"the run ended before its kill ({rc}): make the data set longer"
            kills += 1
            resent = set(server.counts(since)) & before
            assert resent == set(), f"kill {kills}: {len(resent)} prompt(s) sent again after their answer was cached"
            assert not out.exists()
        before, since = cached_prompts(server, cache_dir), len(server.arrivals)
        assert 0 < len(before) < 60  # the kills fell during the run
        last = start(grade_args(server, data, out, "--concurrency", "2"), cache_dir)
        assert last.wait(timeout=120) == 0, last.stderr.read()
        assert set(server.counts(since)) & before == set()
        assert set(server.counts(since)) | before == {p for p, _ in server.arrivals}
    assert out.read_text() == (tmp_path / "ref.jsonl").read_text()
    checked = verify(cache_dir)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "checked 60 entries: all readable\n", "")


def test_two_processes_at_once_pay_for_each_request_once(tmp_path):
    """Issue 11 item 4: two runs grading one data set into one cache send each prompt once between
    them (the other waits for the answer in the cache) and write the same scores."""
    data = write_dataset(tmp_path / "data.jsonl", 30)
    cache_dir = tmp_path / "cache"
    with CountingServer(delay=0.1) as server:
        procs = [start(grade_args(server, data, tmp_path / f"scores{i}.jsonl", "--concurrency", "3",
                                  "--summary-json", str(tmp_path / f"summary{i}.json")), cache_dir)
                 for i in (1, 2)]
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
        counts = server.counts()
    assert len(counts) == 30
    assert max(counts.values()) == 1, f"{sum(counts.values()) - 30} request(s) were paid for twice"
    assert (tmp_path / "scores1.jsonl").read_text() == (tmp_path / "scores2.jsonl").read_text()
    summaries = [json.loads((tmp_path / f"summary{i}.json").read_text()) for i in (1, 2)]
    assert sum(s["model_calls"] for s in summaries) == 30
    assert [s["model_calls"] + s["cache_hits"] for s in summaries] == [30, 30]
    checked = verify(cache_dir)
    assert (checked.returncode, checked.stdout) == (0, "checked 30 entries: all readable\n")


def test_fault_injection_every_example_graded_with_bounded_attempts(tmp_path, monkeypatch):
    """Issue 11 item 2: a server that fails 20% of tries in every way a real one does; every example
    ends graded, no prompt is tried more than --max-attempts times, and the summary counts the
    retries by kind, exactly as the server injected them."""
    monkeypatch.setenv(KEY_ENV, "sk-test-key")
    data = write_dataset(tmp_path / "data.jsonl", 60)
    with CountingServer(fault_rate=0.2) as server:
        result = run_cli(*grade_args(server, data, tmp_path / "scores.jsonl", "--concurrency", "8",
                                     "--timeout", str(CLIENT_TIMEOUT), "--max-attempts", "5",
                                     "--summary-json", str(tmp_path / "s.json")))
        counts, faults = server.counts(), dict(server.faults)
    assert result.exit_code == 0, result.output
    grades = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [g["status"] for g in grades] == ["ok"] * 60
    assert [g["raw"] for g in grades] == [CountingServer.answer(p) for p in _prompts_in_order(server, grades)]
    assert set(faults) == set(FAULTS)  # every kind of failure happened at least once
    assert max(counts.values()) <= 5
    assert sum(counts.values()) == 60 + sum(faults.values())
    summary = json.loads((tmp_path / "s.json").read_text())
    as_kind = {"reset": "connection", "truncated": "invalid_json", "no_choices": "no_completion"}
    expected = Counter()
    for fault, n in faults.items():
        expected[as_kind.get(fault, fault)] += n
    assert summary["retries"] == dict(sorted(expected.items()))
    assert (summary["errors"], summary["failures"], summary["model_calls"]) == ({}, 0, 60)
    retried = ", ".join(f"{k} {n}" for k, n in sorted(expected.items()))
    assert f"retries: {retried}; errors: none" in result.output

    # With one try each, the same failures are errors, counted by kind, and nothing is cached for them.
    monkeypatch.setenv("GASUS_CACHE_DIR", str(tmp_path / "cache2"))
    with CountingServer(fault_rate=0.2) as server:
        result = run_cli(*grade_args(server, data, tmp_path / "once.jsonl", "--concurrency", "8",
                                     "--timeout", str(CLIENT_TIMEOUT), "--max-attempts", "1",
                                     "--summary-json", str(tmp_path / "once.json")))
        first_faults = Counter()
        for fault, n in server.faults.items():
            first_faults[as_kind.get(fault, fault)] += n
    assert result.exit_code == 0, result.output
    assert len(Cache()) == 60 - first_faults.total()
    summary = json.loads((tmp_path / "once.json").read_text())
    assert (summary["retries"], summary["errors"]) == ({}, dict(sorted(first_faults.items())))
    assert (summary["failures"], summary["statuses"]["error"]) == (first_faults.total(), first_faults.total())


def _prompts_in_order(server: CountingServer, grades: list[dict]) -> list[str]:
    """Each grade's prompt, found by the task number it quotes."""
    by_task = {}
    for prompt, _ in server.arrivals:
        by_task[int(prompt.split("Task ", 1)[1].split(":", 1)[0])] = prompt
    return [by_task[g["index"]] for g in grades]


def test_ctrl_c_exits_130_keeps_received_replies_and_releases_claims(tmp_path):
    """Issue 11 item 5: a real SIGINT in the middle of a run: exit code 130, no scores file, every
    reply the server sent is in the cache, no claim is left behind, and a rerun sends only the rest."""
    data = write_dataset(tmp_path / "data.jsonl", 12)
    cache_dir, out = tmp_path / "cache", tmp_path / "scores.jsonl"
    with CountingServer(delay=0.4) as server:
        proc = start(grade_args(server, data, out, "--concurrency", "2"), cache_dir)
        while len(server.serials) < 3 and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.45)  # the first replies are received (and more requests are in flight)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.endswith("Interrupted: everything finished so far is in the cache; rerun to continue.\n")
        assert not out.exists()
        cached = cached_prompts(server, cache_dir)
        assert len(cached) >= 3
        assert not [k for k in Cache(cache_dir)._store.iterkeys() if k.startswith("claim:")]
        since = len(server.arrivals)
        rerun = start(grade_args(server, data, out, "--concurrency", "2"), cache_dir)
        assert rerun.wait(timeout=60) == 0
        assert set(server.counts(since)) == {p for p, _ in server.arrivals} - cached
