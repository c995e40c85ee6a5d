"""The openai tests' loopback server, grown the Batch API: /v1/files and /v1/batches.

Batches finish `delay` seconds after they are created. A request whose graded response is
"fail" fails (HTTP 500 in the error file) the first time it is submitted; `expire_next` makes
the next batch expire after answering only its first `expire_answers` requests, the rest going
to the error file as `batch_expired`, as OpenAI's do. Every custom_id submitted is counted.

Faults on purpose: `lost_replies["files"|"batches"]` answers that many uploads or batch creations
with a 502 after making the file or batch (a reply lost on its way back), `failed_posts` with a 502
before making anything; `garble` rewrites an output file's lines (a list of dicts) into the text
lines the file holds. `pollers` holds the Authorization of every client that read a batch.
`batch_routes_status` answers every files and batches route with that HTTP status: 404 or 405 as a
server without the Batch API (vLLM's, Ollama's), 503 as one whose batch service is down; the chat
endpoint still answers.
"""

from __future__ import annotations

import email.parser
import email.policy
import http
import itertools
import json
import re
import time
import urllib.parse
from collections import Counter

from tests.test_openai_backend import FakeServer

_BATCH = re.compile(r"^/v1/batches/([\w-]+)(/cancel)?$")
_FILE = re.compile(r"^/v1/files/([\w-]+)(/content)?$")


class FakeBatchServer(FakeServer):
    def __init__(self, delay: float = 0.3, **kw):
        super().__init__(**kw)
        self.delay = delay
        self.files: dict[str, dict] = {}  # id -> {"meta": file object, "data": bytes}
        self.batches: dict[str, dict] = {}
        self.submitted: Counter[str] = Counter()  # custom_id -> times submitted in a batch
        self.expire_next = False
        self.expire_answers = 0
        self.ids = itertools.count(1)
        self.lost_replies: Counter[str] = Counter()
        self.failed_posts: Counter[str] = Counter()
        self.garble = None
        self.pollers: set[str] = set()
        self.batch_routes_status: int | None = None
        server = self
        base = self.httpd.RequestHandlerClass

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self):
                try:
                    server.handle_get(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd.RequestHandlerClass = Handler

    # ------------------------------------------------------------ routing

    def handle(self, handler):
        path = handler.path.split("?")[0]
        if self.no_route(handler, path):
            return None
        if path in ("/v1/files", "/v1/batches"):
            what = path.rsplit("/", 1)[1]
            with self.lock:
                fail = self.failed_posts[what] > 0
                self.failed_posts[what] -= fail
            if fail:
                handler.rfile.read(int(handler.headers["Content-Length"]))
                return self.send(handler, 502, b'{"error": {"message": "bad gateway"}}')
            return self.upload(handler) if what == "files" else self.create(handler)
        match = _BATCH.match(path)
        if match and match.group(2):
            return self.cancel(handler, match.group(1))
        return super().handle(handler)

    def handle_get(self, handler):
        path = handler.path.split("?")[0]
        if self.no_route(handler, path):
            return None
        if path == "/v1/batches":
            with self.lock:
                data = [self.advance(b) for b in self.batches.values()]
            return self.json(handler, {"object": "list", "data": data, "has_more": False,
                                       "first_id": None, "last_id": None})
        if path == "/v1/files":
            query = urllib.parse.parse_qs(handler.path.partition("?")[2])
            with self.lock:
                data = [f["meta"] for f in self.files.values()
                        if f["meta"]["purpose"] in query.get("purpose", [f["meta"]["purpose"]])]
            return self.json(handler, {"object": "list", "data": data, "has_more": False})
        match = _BATCH.match(path)
        if match and match.group(1) in self.batches:
            with self.lock:
                self.pollers.add(handler.headers.get("Authorization", ""))
                return self.json(handler, self.advance(self.batches[match.group(1)]))
        match = _FILE.match(path)
        if match and match.group(1) in self.files:
            entry = self.files[match.group(1)]
            if match.group(2):
                return self.send(handler, 200, entry["data"], {"Content-Type": "application/octet-stream"})
            return self.json(handler, entry["meta"])
        return self.send(handler, 404, b'{"error": {"message": "no such object"}}')

    def no_route(self, handler, path: str) -> bool:
        """Whether the path is a Batch API route answered with `batch_routes_status` (and now is)."""
        status = self.batch_routes_status
        if status is None or not path.startswith(("/v1/files", "/v1/batches")):
            return False
        with self.lock:
            self.auth.add(handler.headers.get("Authorization", ""))
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        self.send(handler, status, json.dumps({"detail": http.HTTPStatus(status).phrase}).encode())
        return True

    def json(self, handler, data, status: int = 200):
        self.send(handler, status, json.dumps(data).encode())

    # ------------------------------------------------------------ files and batches

    def new_file(self, data: bytes, name: str, purpose: str) -> dict:
        file_id = f"file-{next(self.ids)}"
        meta = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}
        self.files[file_id] = {"meta": meta, "data": data}
        return meta

    def upload(self, handler):
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        head = f"Content-Type: {handler.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        with self.lock:
            self.auth.add(handler.headers.get("Authorization", ""))
            meta = self.new_file(fields["file"][1], fields["file"][0], fields["purpose"][1].decode())
        self.reply_made(handler, "files", meta)

    def reply_made(self, handler, what: str, data: dict):
        with self.lock:
            lost = self.lost_replies[what] > 0
            self.lost_replies[what] -= lost
        if lost:
            return self.send(handler, 502, b'{"error": {"message": "bad gateway"}}')
        self.json(handler, data)

    def create(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        with self.lock:
            lines = [json.loads(line) for line in self.files[body["input_file_id"]]["data"].splitlines()]
            self.submitted.update(line["custom_id"] for line in lines)
            batch_id = f"batch_{next(self.ids)}"
            batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                     "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                     "status": "validating", "output_file_id": None, "error_file_id": None,
                     "created_at": int(time.time()), "metadata": body.get("metadata"),
                     "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                     "_lines": lines, "_created": time.monotonic(), "_expire": self.expire_next,
                     "_expire_answers": self.expire_answers}
            self.expire_next = False
            self.batches[batch_id] = batch
        self.reply_made(handler, "batches", self.public(batch))

    def cancel(self, handler, batch_id: str):
        with self.lock:
            batch = self.batches[batch_id]
            if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                self.finish(batch, "cancelled", answer=0)
            self.json(handler, self.public(batch))

    @staticmethod
    def public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def advance(self, batch: dict) -> dict:
        """The batch's state now: in progress, then ended `delay` seconds after its creation."""
        if batch["status"] in ("validating", "in_progress"):
            if time.monotonic() - batch["_created"] < self.delay:
                batch["status"] = "in_progress"
            elif batch["_expire"]:
                self.finish(batch, "expired", answer=batch["_expire_answers"])
            else:
                self.finish(batch, "completed", answer=len(batch["_lines"]))
        return self.public(batch)

    def finish(self, batch: dict, status: str, answer: int):
        out, errors = [], []
        for n, line in enumerate(batch["_lines"]):
            ident = {"id": f"req_{batch['id']}_{n}", "custom_id": line["custom_id"]}
            if n >= answer:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                errors.append({**ident, "response": None,
                               "error": {"code": code, "message": f"This request could not be executed: {code}"}})
                continue
            body = line["body"]
            content = body["messages"][-1]["content"]
            tag = content.split("### Response:\n", 1)[1].split("\n", 1)[0] if "### Response:\n" in content else "ok"
            if tag == "fail" and self.submitted[line["custom_id"]] == 1:
                errors.append({**ident, "error": None, "response": {
                    "status_code": 500, "request_id": ident["id"],
                    "body": {"error": {"message": "The server had an error", "type": "server_error"}}}})
                continue
            out.append({**ident, "error": None, "response": {
                "status_code": 200, "request_id": ident["id"], "body": self.completion(body, tag)}})
        for name, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                lines = self.garble(rows) if self.garble and name == "output_file_id" else map(json.dumps, rows)
                data = "".join(line + "\n" for line in lines).encode()
                batch[name] = self.new_file(data, f"{batch['id']}_{name}.jsonl", "batch_output")["id"]
        batch["status"] = status
        batch["request_counts"] = {"total": len(batch["_lines"]), "completed": len(out), "failed": len(errors)}

    def completion(self, body: dict, tag: str) -> dict:
        """What the chat endpoint answers for the same request (FakeServer.reply's body)."""
        text = {"429": "3", "500": "5", "delay": "4\nFine."}.get(tag, "4.5\nAccurate.")
        finish = "stop"
        if tag == "think":  # a reasoning grader: its thought needs 32 tokens, cut off below that
            thought = "<think>Score: 1. No, the task is done well, so it is higher."
            text, finish = (f"{thought}</think>\n4\nFine.", "stop") if body["max_tokens"] >= 32 else (thought, "length")
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": "4", "logprob": -0.5, "top_logprobs": [
                {"token": "4", "logprob": -0.5}, {"token": " 5", "logprob": -1.5},
                {"token": "5", "logprob": -3.0}, {"token": "The", "logprob": -2.0}]}]}
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
                "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}
