"""The four test sets by name: fields, sizes, ids, where they are read from, and the download."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from gasus import testsets
from gasus.errors import BadInputError
from gasus.testsets import TestQuestion, load_testsets, resolve_names
from tests.conftest import FIXTURES

TOY = FIXTURES / "testsets"


@pytest.fixture
def sets_dir(shared_data) -> Path:
    """The paper's four test sets (real data: skipped where ../shared is absent)."""
    return shared_data / "alpagasus" / "test_sets"


def _paper_sized_vicuna(directory: Path) -> Path:
    """A file of 80 made-up questions in Vicuna's layout: the paper's size, no real data."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vicuna_test_set.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "text": f"Question {i}?"}) + "\n" for i in range(1, 81)))
    return path


def test_the_toy_sets_read_in_all_four_layouts():
    questions = load_testsets("all", TOY)
    assert [(q.testset, q.id) for q in questions] == [
        ("vicuna", "1"), ("vicuna", "2"), ("vicuna", "3"), ("vicuna", "4"),
        ("koala", "toy_koala_0"), ("koala", "toy_koala_1"), ("koala", "toy_koala_2"),
        ("wizardlm", "1"), ("wizardlm", "2"), ("wizardlm", "3"),
        ("sinstruct", "toy_task_0"), ("sinstruct", "toy_task_1"), ("sinstruct", "toy_task_2")]
    first = questions[10]
    assert (first.instruction, first.input) == ("Make this email more polite.", "Send me the report now.")
    assert first.question == "Make this email more polite. Input: Send me the report now."
    assert questions[12].question == questions[12].instruction  # an empty input adds nothing


def test_declared_sizes_are_checked(tmp_path):
    shutil.copytree(TOY, tmp_path / "toy")
    lines = (tmp_path / "toy" / "koala_test_set.jsonl").read_text().splitlines()
    (tmp_path / "toy" / "koala_test_set.jsonl").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(BadInputError) as err:
        load_testsets("koala", tmp_path / "toy")
    assert str(err.value) == f"{tmp_path / 'toy' / 'koala_test_set.jsonl'}: the koala test set has 3 questions, this file has 2"
    (tmp_path / "toy" / "gasus-testsets.json").write_text('{"sizes": {"vicuna": 4}}')
    with pytest.raises(BadInputError) as err:
        load_testsets("koala", tmp_path / "toy")
    assert str(err.value) == (f"{tmp_path / 'toy' / 'gasus-testsets.json'}: 'sizes' must give the koala test set "
                              "a positive whole number")
    (tmp_path / "toy" / "gasus-testsets.json").write_text("[1")
    with pytest.raises(BadInputError, match=r"gasus-testsets\.json: not a test-set sizes file"):
        load_testsets("koala", tmp_path / "toy")


def test_all_four_from_a_directory(sets_dir):
    questions = load_testsets("all", sets_dir)
    counts = {name: sum(q.testset == name for q in questions) for name in testsets.NAMES}
    assert counts == {"vicuna": 80, "koala": 180, "wizardlm": 218, "sinstruct": 252}
    assert all(isinstance(q.id, str) for q in questions)
    by_set = {name: [q for q in questions if q.testset == name] for name in testsets.NAMES}
    assert by_set["vicuna"][0] == TestQuestion("vicuna", "1", "How can I improve my time management skills?")
    assert by_set["koala"][0].id == "koala_0"
    assert by_set["wizardlm"][0] == TestQuestion(
        "wizardlm", "1", "If a car travels 120 miles in 2 hours, what is its average speed in miles per hour?")
    first = by_set["sinstruct"][0]
    assert first.id == "user_oriented_task_0"
    assert first.input == ("If you have any questions about my rate or if you find it necessary to increase or "
                           "decrease the scope for this project, please let me know.")
    assert first.question == f"{first.instruction} Input: {first.input}"
    assert sum(bool(q.input) for q in by_set["sinstruct"]) == SINSTRUCT_WITH_INPUT
    without = next(q for q in by_set["sinstruct"] if not q.input)
    assert without.question == without.instruction


SINSTRUCT_WITH_INPUT = 208  # of 252 Self-Instruct tasks, 208 come with an input


def test_limit_and_names():
    questions = load_testsets(["koala,vicuna"], TOY, limit=2)
    assert [(q.testset, q.id) for q in questions] == [("vicuna", "1"), ("vicuna", "2"), ("koala", "toy_koala_0"),
                                                       ("koala", "toy_koala_1")]
    assert resolve_names(["wizardlm", "ALL"]) == ["vicuna", "koala", "wizardlm", "sinstruct"]
    with pytest.raises(BadInputError, match="unknown test set 'mmlu': choose from vicuna, koala, wizardlm, sinstruct or all"):
        resolve_names("mmlu")
    with pytest.raises(BadInputError, match="--limit must be at least 1"):
        load_testsets("vicuna", TOY, limit=0)


def test_gasus_data_dir(monkeypatch):
    monkeypatch.setenv("GASUS_DATA_DIR", str(TOY))
    assert len(load_testsets("koala")) == 3


def test_missing_file_in_given_dir(tmp_path):
    with pytest.raises(BadInputError) as err:
        load_testsets("vicuna", tmp_path)
    assert str(err.value) == f"{tmp_path / 'vicuna_test_set.jsonl'}: no such file (the vicuna test set, looked for in --testsets-dir)"


def test_size_is_checked(tmp_path):
    lines = _paper_sized_vicuna(tmp_path / "full").read_text().splitlines()[:79]
    (tmp_path / "vicuna_test_set.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as err:
        load_testsets("vicuna", tmp_path)
    assert str(err.value) == f"{tmp_path / 'vicuna_test_set.jsonl'}: the vicuna test set has 80 questions, this file has 79"


def test_bad_row(tmp_path):
    (tmp_path / "koala_test_set.jsonl").write_text(json.dumps({"id": "k", "text": "wrong field"}) + "\n")
    with pytest.raises(BadInputError, match="line 1: a koala question needs 'id' and a string 'prompt'"):
        load_testsets("koala", tmp_path)


class _Server:
    """A real HTTP server on 127.0.0.1 serving a folder, counting requests."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_once_into_the_user_data_dir(tmp_path, monkeypatch):
    root = tmp_path / "remote" / "test_data"
    source = _paper_sized_vicuna(root)
    server = _Server(tmp_path / "remote")
    try:
        monkeypatch.setattr(testsets, "RAW_BASE_URL", f"{server.url}/test_data")
        first = load_testsets("vicuna", limit=3)
        again = load_testsets("vicuna")
    finally:
        server.close()
    assert server.requests == ["/test_data/vicuna_test_set.jsonl"]
    assert [q.id for q in first] == ["1", "2", "3"] and len(again) == 80
    stored = tmp_path / "xdg-data" / "gasus" / "test_sets" / "vicuna_test_set.jsonl"
    assert stored.read_bytes() == source.read_bytes()
    assert [p.name for p in stored.parent.iterdir()] == ["vicuna_test_set.jsonl"]  # no temporary left


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    server = _Server(tmp_path)  # serves nothing under test_data: 404
    try:
        monkeypatch.setattr(testsets, "RAW_BASE_URL", f"{server.url}/test_data")
        with pytest.raises(BadInputError) as err:
            load_testsets("koala")
    finally:
        server.close()
    message = str(err.value)
    assert message.startswith(f"the koala test set is not here and cannot be downloaded from {server.url}/test_data/koala_test_set.jsonl (HTTP 404); ")
    assert message.endswith("give --testsets-dir DIR or set GASUS_DATA_DIR to a folder holding the test-set files")
    assert "\n" not in message
    assert not (tmp_path / "xdg-data" / "gasus" / "test_sets" / "koala_test_set.jsonl").exists()


def test_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(testsets, "RAW_BASE_URL", "http://127.0.0.1:9/test_data")  # discard port: refused
    with pytest.raises(BadInputError, match=r"\(ConnectError: .*\); give --testsets-dir DIR"):
        load_testsets("wizardlm")
