"""The openai backend against a real chat-completions server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gasus.backends import BackendOptions, CachedModel, Request
from gasus.backends.openai import OpenAIBackend, public_url
from gasus.cache import Cache
from gasus.errors import BackendError
from gasus.grade import grade_examples, grading_prompt
from gasus.records import Example
from tests.conftest import run_cli

KEY = "sk-test-0123456789-SECRET"
KEY_ENV = "GASUS_TEST_API_KEY"


class FakeServer:
    """A chat-completions server; what it does depends on a tag in the response being graded."""

    def __init__(self, logprobs: bool = True):
        self.logprobs = logprobs
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: dict[str, list[float]] = {}  # tag -> arrival times
        self.auth: set[str] = set()
        self.bodies: list[dict] = []
        self.delays: dict[str, float] = {}  # tag -> seconds before a normal reply
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server.handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64  # the default 5 drops connections beyond it: a 1 s SYN retry, a timeout

            def handle_error(self, request, client_address):  # a connection reset on purpose
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests_total(self) -> int:
        return sum(len(v) for v in self.calls.values())

    @staticmethod
    def send(handler, status: int, body: bytes, headers: dict | None = None):
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(body)

    def reply(self, handler, text: str, body: dict):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if body.get("logprobs"):
            if not self.logprobs:
                choice["logprobs"] = None
            else:
                choice["logprobs"] = {"content": [{"token": "4", "logprob": -0.5, "top_logprobs": [
                    {"token": "4", "logprob": -0.5}, {"token": " 5", "logprob": -1.5},
                    {"token": "5", "logprob": -3.0}, {"token": "The", "logprob": -2.0}]}]}
        data = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
                "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}
        self.send(handler, 200, json.dumps(data).encode())

    def handle(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.auth.add(handler.headers.get("Authorization", ""))
        content = body["messages"][-1]["content"]
        tag = content.split("### Response:\n", 1)[1].split("\n", 1)[0] if "### Response:\n" in content else "ok"
        with self.lock:
            self.bodies.append(body)
            self.calls.setdefault(tag, []).append(time.monotonic())
            n = len(self.calls[tag])
        if tag in self.delays:
            time.sleep(self.delays[tag])
        if tag == "delay":
            time.sleep(0.3)
            return self.reply(handler, "4\nFine.", body)
        if tag == "429" and n == 1:
            return self.send(handler, 429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"})
        if tag == "500" and n <= 2:
            return self.send(handler, 500, b'{"error": {"message": "boom"}}')
        if tag == "badjson":
            return self.send(handler, 200, b'{"choices": [{"message": ')
        if tag == "hang":
            time.sleep(3)
            return self.reply(handler, "1", body)
        if tag == "401":
            return self.send(handler, 401, b'{"error": {"message": "Incorrect API key provided"}}')
        if tag == "echo":  # a server that quotes the request's credentials back in an error
            message = json.dumps({"error": {"message": "bad request from " + handler.headers["Authorization"]}})
            return self.send(handler, 400, message.encode())
        if tag == "echolong":  # the credentials quoted past the 200th character, then a token of its own
            message = "x" * 190 + " " + handler.headers["Authorization"] + " retry with Bearer tok-OTHER-999"
            return self.send(handler, 500, json.dumps({"error": {"message": message}}).encode())
        return self.reply(handler, {"429": "3", "500": "5"}.get(tag, "4.5\nAccurate."), body)


def examples_for(*tags: str) -> list[Example]:
    return [Example(i, f"Task {i}.", "", tag) for i, tag in enumerate(tags)]


def options(server: FakeServer, **kw) -> BackendOptions:
    base = dict(base_url=server.url, api_key_env=KEY_ENV, concurrency=3, timeout=0.5, max_attempts=3,
                retry_base=0.05, retry_max=2.0)
    return BackendOptions(**{**base, **kw})


def files_contain(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def test_every_example_ends_graded_or_with_an_explicit_error(tmp_path, key):
    tags = ("ok", "delay", "429", "500", "badjson", "hang", "ok2", "echo")
    examples = examples_for(*tags)
    cache_dir = tmp_path / "cache"
    with FakeServer() as server:
        model = CachedModel(OpenAIBackend("test-model", options(server)), Cache(cache_dir))
        grades = grade_examples(examples, model, prompt=grading_prompt("accuracy"))
        assert [(g.score, g.status) for g in grades] == [
            (4.5, "ok"), (4.0, "ok"), (3.0, "ok"), (5.0, "ok"), (None, "error"), (None, "error"),
            (4.5, "ok"), (None, "error")]
        assert grades[4].raw == "gave up after 3 tries; last: the server's reply is not valid JSON"
        assert grades[5].raw == "gave up after 3 tries; last: no reply within 0.5 s"
        assert grades[7].raw == "HTTP 400: bad request from Bearer ***"
        assert {t: len(v) for t, v in server.calls.items()} == {
            "ok": 1, "delay": 1, "429": 2, "500": 3, "badjson": 3, "hang": 3, "ok2": 1, "echo": 1}
        first, second = server.calls["429"]
        assert second - first >= 1.0  # Retry-After: 1 was honoured
        assert 2 <= server.max_in_flight <= 3
        assert server.auth == {f"Bearer {key}"}
        assert model.stats.model_calls == 5 and model.stats.failures == 3
        assert server.bodies[0]["temperature"] == 0.0 and server.bodies[0]["max_tokens"] == 256

        before = server.requests_total()
        again = CachedModel(OpenAIBackend("test-model", options(server)), Cache(cache_dir))
        regraded = grade_examples(examples, again, prompt=grading_prompt("accuracy"))
        assert again.stats.cache_hits == 5
        assert server.requests_total() - before == 3 + 3 + 1  # only the failures were asked again
        assert [g.status for g in regraded] == [g.status for g in grades]
    assert files_contain(cache_dir, key) == []
    assert all(key not in (g.raw or "") for g in grades)


def test_concurrency_is_never_exceeded(tmp_path, key):
    with FakeServer() as server:
        model = CachedModel(OpenAIBackend("m", options(server, concurrency=4)), Cache(tmp_path / "c2"))
        examples = [Example(i, f"Task {i}.", "", "delay") for i in range(12)]
        started = time.monotonic()
        grades = grade_examples(examples, model, prompt=grading_prompt("accuracy"))
        elapsed = time.monotonic() - started
    assert [g.score for g in grades] == [4.0] * 12
    assert server.max_in_flight == 4
    assert elapsed < 12 * 0.3 / 2  # the requests really overlapped


def test_usage_is_recorded_in_the_cache(tmp_path, key):
    with FakeServer() as server:
        backend = OpenAIBackend("m", options(server))
        model = CachedModel(backend, Cache(tmp_path / "c"))
        [result] = model.run([Request.chat([{"role": "user", "content": "hi"}], max_tokens=4)])
    assert result.value == {"text": "4.5\nAccurate.", "finish_reason": "stop",
                            "usage": {"prompt_tokens": 50, "completion_tokens": 5},
                            "served_model": "m"}  # the reply's model; this server sends no system_fingerprint
    assert backend.usage == {"prompt_tokens": 50, "completion_tokens": 5}


def test_expected_mode_reads_top_logprobs(tmp_path, key):
    with FakeServer() as server:
        model = CachedModel(OpenAIBackend("m", options(server)), Cache(tmp_path / "c"))
        [grade] = grade_examples(examples_for("ok"), model, prompt=grading_prompt("accuracy"), mode="expected")
    p4, p5 = math.exp(-0.5), math.exp(-1.5) + math.exp(-3.0)  # " 5" and "5" are the same score
    assert grade.status == "ok"
    assert grade.probs == {"0": 0.0, "1": 0.0, "2": 0.0, "3": 0.0, "4": round(p4 / (p4 + p5), 6),
                           "5": round(p5 / (p4 + p5), 6)}
    assert grade.score == round((4 * p4 + 5 * p5) / (p4 + p5), 6)
    assert grade.top_score == 4.0
    assert server.bodies[0]["logprobs"] is True and server.bodies[0]["top_logprobs"] == 20
    assert server.bodies[0]["max_tokens"] == 1


def test_cli_grades_through_a_server_and_never_writes_the_key(tmp_path, key, monkeypatch):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": i, "output": t}) + "\n"
                            for i, t in [("A.", "ok"), ("B.", "429"), ("C.", "delay"), ("A.", "ok")]))
    out, summary = tmp_path / "scores.jsonl", tmp_path / "summary.json"
    with FakeServer() as server:
        result = run_cli("grade", str(data), "-o", str(out), "--grader", "openai:test-model", "--base-url",
                         server.url, "--api-key-env", KEY_ENV, "--concurrency", "2", "--timeout", "5",
                         "--summary-json", str(summary))
        assert result.exit_code == 0, result.output
        assert server.max_in_flight <= 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["score"], r["status"], r["grader"]) for r in rows] == [
        (0, 4.5, "ok", "openai:test-model"), (1, 3.0, "ok", "openai:test-model"),
        (2, 4.0, "ok", "openai:test-model"), (3, 4.5, "ok", "openai:test-model")]
    data_summary = json.loads(summary.read_text())
    assert (data_summary["model_calls"], data_summary["cache_hits"]) == (3, 0)  # a duplicate row shares a call
    assert rows[0]["id"] == rows[3]["id"]
    for root in (tmp_path, Path(str(tmp_path / "cache"))):
        assert files_contain(root, key) == []
    assert key not in result.output

    with FakeServer() as server:
        dry = run_cli("grade", str(data), "--grader", "openai:gpt-4o-mini", "--base-url", server.url, "--dry-run")
        assert server.requests_total() == 0
    assert dry.exit_code == 0
    assert "4 examples (3 distinct): 0 in the cache, 3 model call(s) needed with openai:gpt-4o-mini" in dry.output
    assert "estimated 445 input tokens (~4 characters each) and at most 768 output tokens: at most about $0.0005 at $0.15/$0.6 per 1M tokens" in dry.output


def test_expected_mode_without_logprobs_is_a_clear_error(tmp_path, key):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Task.", "output": "ok"}) + "\n")
    with FakeServer(logprobs=False) as server:
        result = run_cli("grade", str(data), "-o", str(tmp_path / "s.jsonl"), "--grader", "openai:m", "--base-url",
                         server.url, "--api-key-env", KEY_ENV, "--mode", "expected")
    assert result.exit_code == 2
    assert result.output == ("Error: openai:m: the server returned no top_logprobs, which --mode expected needs; "
                             "use --mode generate or score with this grader\n")


def test_a_rejected_key_stops_the_run_with_one_line(tmp_path, key):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"T{i}.", "output": "401"}) + "\n" for i in range(5)))
    with FakeServer() as server:
        result = run_cli("grade", str(data), "-o", str(tmp_path / "s.jsonl"), "--grader", "openai:m", "--base-url",
                         server.url, "--api-key-env", KEY_ENV, "--concurrency", "1")
        assert server.requests_total() == 1
    assert result.exit_code == 2
    assert result.output == (f"Error: openai:m: HTTP 401 from {server.url}: Incorrect API key provided\n")


def test_key_fragments_never_leak_from_long_error_texts(tmp_path, key):
    """Issue 18 item 4: the error text was cut to 200 characters before the key was scrubbed."""
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Task.", "output": "echolong"}) + "\n")
    out, summary = tmp_path / "scores.jsonl", tmp_path / "summary.json"
    with FakeServer() as server:
        result = run_cli("grade", str(data), "-o", str(out), "--grader", "openai:m", "--base-url", server.url,
                         "--api-key-env", KEY_ENV, "--max-attempts", "1", "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["status"] == "error"
    # scrubbed, cut to 200 characters (a cut "Bearer **" is scrubbed whole again on the way out)
    assert row["raw"] == "gave up after 1 tries; last: HTTP 500: " + "x" * 190 + " Bearer ***"
    for text in (out.read_text(), summary.read_text(), result.output):
        assert "sk-test" not in text and "tok-OTHER" not in text


def test_the_openai_api_needs_a_key():
    with pytest.raises(BackendError, match="the OpenAI API needs a key: set OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini").complete(Request.chat([{"role": "user", "content": "hi"}]))


def test_nothing_listens(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend("m", BackendOptions(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2,
                                                retry_base=0.01, timeout=1))
    with pytest.raises(BackendError, match="gave up after 2 tries; last: connection error: ConnectError"):
        backend.complete(Request.chat([{"role": "user", "content": "hi"}]))


def test_cache_key_has_no_credentials():
    backend = OpenAIBackend("m", BackendOptions(base_url="https://user:pw@example.com:8443/v1/"))
    assert backend.cache_params() == {"base_url": "https://example.com:8443/v1", "seed": 0}
    assert public_url("http://h/v1") == "http://h/v1"


def test_docstring_examples():
    import doctest

    from gasus.backends import openai

    assert doctest.testmod(openai).failed == 0


def test_ctrl_c_keeps_every_reply_already_received(tmp_path, key):
    """Replies that arrived while the main thread was busy are still queued when Ctrl-C comes: they
    go into the cache before the interrupt goes on; the request still in flight is abandoned."""
    examples = examples_for("ok", "delay", "delay2", "delay3", "hang")
    cache = Cache(tmp_path / "c")
    seen = []

    def slow_consumer(i, grade, from_cache):
        seen.append(i)
        if len(seen) == 1:
            time.sleep(0.8)  # meanwhile the three delayed replies arrive
            raise KeyboardInterrupt

    with FakeServer() as server:
        server.delays = {"delay2": 0.3, "delay3": 0.3}
        model = CachedModel(OpenAIBackend("m", options(server, concurrency=5, timeout=5)), cache)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            grade_examples(examples, model, prompt=grading_prompt("accuracy"), on_grade=slow_consumer)
        assert time.monotonic() - started < 2.5  # the hanging request was not waited for
    assert len(cache) == 4
    assert sorted(seen) == [0, 1, 2, 3]
    assert model.stats.model_calls == 4 and model.stats.failures == 0


class MalformedServer(FakeServer):
    """Answers every row well except two, whose replies have a number for the content or a list for the usage."""

    def reply(self, handler, text: str, body: dict):
        content = body["messages"][-1]["content"]
        if "### Response:\nnumber" in content or "### Response:\nusage" in content:
            message = {"role": "assistant", "content": 5 if "number" in content else "4\nFine."}
            usage = {"prompt_tokens": 50, "completion_tokens": 5} if "number" in content else [50, 5]
            data = {"id": "x", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}
            return self.send(handler, 200, json.dumps(data).encode())
        return super().reply(handler, text, body)


def test_one_malformed_reply_is_that_rows_transient_failure(tmp_path, key):
    """Review item 9: a reply whose content is a number, or whose usage is a list, fails its own row
    (no_completion, retried, never cached); the other rows are graded."""
    examples = examples_for("ok", "number", "usage", "ok2")
    with MalformedServer() as server:
        model = CachedModel(OpenAIBackend("test-model", options(server)), Cache(tmp_path / "c"))
        grades = grade_examples(examples, model, prompt=grading_prompt("accuracy"))
        assert [(g.score, g.status, g.raw) for g in grades] == [
            (4.5, "ok", "4.5\nAccurate."),
            (None, "error", "gave up after 3 tries; last: the server's reply is not a completion "
                            "(choices[0] content is not text)"),
            (None, "error", "gave up after 3 tries; last: the server's reply is not a completion "
                            "(usage is not an object)"),
            (4.5, "ok", "4.5\nAccurate.")]
        assert {t: len(v) for t, v in server.calls.items()} == {"ok": 1, "number": 3, "usage": 3, "ok2": 1}
        assert (model.stats.model_calls, model.stats.failures, model.stats.errors) == (2, 2, {"no_completion": 2})
        again = CachedModel(OpenAIBackend("test-model", options(server)), Cache(tmp_path / "c"))
        grade_examples(examples, again, prompt=grading_prompt("accuracy"))
        assert (again.stats.cache_hits, again.stats.failures) == (2, 2)  # the failures were not cached
        assert {t: len(v) for t, v in server.calls.items()} == {"ok": 1, "number": 6, "usage": 6, "ok2": 1}
