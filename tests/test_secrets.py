"""Secrets (issue 11 item 6): the API key appears nowhere in the cache, outputs, summaries, exports,
logs or terminal output, also when a server quotes it back in a reply or in an error that is recorded."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from tests.conftest import run_cli
from tests.test_openai_backend import KEY, KEY_ENV, FakeServer


class EchoingServer(FakeServer):
    """The fake server, plus replies that quote the request's credentials back."""

    def handle(self, handler):
        raw = handler.rfile.read(int(handler.headers["Content-Length"]))
        handler.rfile = io.BytesIO(raw)
        content = json.loads(raw)["messages"][-1]["content"]
        auth = handler.headers.get("Authorization", "")
        if "echoreply" in content:  # a debugging proxy that puts the headers in the completion
            with self.lock:
                self.calls.setdefault("echoreply", []).append(0.0)
            return self.reply(handler, f"4\nYou sent {auth}; your key {auth.removeprefix('Bearer ')} is fine.",
                              json.loads(raw))
        if "echobare" in content:  # the bare key in a retried error
            message = json.dumps({"error": {"message": f"upstream refused key={auth.removeprefix('Bearer ')}"}})
            return self.send(handler, 503, message.encode())
        return super().handle(handler)


def leaks(root: Path, text: str) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes())


def test_the_api_key_is_never_written_or_shown(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Task {i}.", "output": tag}) + "\n"
                            for i, tag in enumerate(["ok", "echoreply", "echobare", "echo", "echolong"])))
    answers = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path, model in zip(answers, "AB", strict=True):
        path.write_text(json.dumps({"testset": "vicuna", "id": "1", "question": "Q?", "answer": "echoreply",
                                    "model": model}) + "\n")
    model_args = ["--base-url", None, "--api-key-env", KEY_ENV, "--max-attempts", "2", "--timeout", "5"]
    with EchoingServer() as server:
        model_args[1] = server.url
        graded = run_cli("grade", str(data), "-o", str(tmp_path / "scores.jsonl"), "--grader", "openai:m",
                         *model_args, "--summary-json", str(tmp_path / "grade.json"))
        judged = run_cli("judge", *map(str, answers), "-o", str(tmp_path / "j.jsonl"), "--judge", "openai:m",
                         "--verdicts", str(tmp_path / "v.jsonl"), *model_args, "--summary-json",
                         str(tmp_path / "judge.json"))
        assert server.auth == {f"Bearer {KEY}"}
    exported = run_cli("cache", "export", str(tmp_path / "export.jsonl"))
    assert (graded.exit_code, judged.exit_code, exported.exit_code) == (0, 0, 0), graded.output + judged.output
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [(r["status"], r["score"]) for r in rows] == [
        ("ok", 4.5), ("ok", 4.0), ("error", None), ("error", None), ("error", None)]
    assert rows[1]["raw"] == "4\nYou sent Bearer ***; your key *** is fine."
    assert rows[2]["raw"] == "gave up after 2 tries; last: HTTP 503: upstream refused key=***"
    assert rows[3]["raw"] == "HTTP 400: bad request from Bearer ***"
    assert json.loads((tmp_path / "grade.json").read_text())["failures"] == 3
    judgements = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [j["raw"] for j in judgements] == ["4\nYou sent Bearer ***; your key *** is fine."] * 2
    assert (tmp_path / "cache").is_dir() and (tmp_path / "export.jsonl").stat().st_size > 0
    for secret in (KEY, KEY[:12], KEY[-12:]):
        assert leaks(tmp_path, secret) == []
        for text in (graded.output, judged.output, exported.output, caplog.text):
            assert secret not in text
