"""A million rows (issue 13): the fast paths (ids computed once, orjson reading, bulk cache reads,
streamed reading and writing) must give byte for byte what the plain paths gave."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gasus.ahead import can_fork
from tests.conftest import run_cli

# Strings that JSON writers and hashers treat differently if they are not careful.
TRICKY = ["plain", "quote \" and backslash \\", "tab\tnew\nline\r", "control \x01\x1f\x7f", "café 東京 😀",
          "line\u2028sep\u2029para\x85nel", "</script> <<<END>>>", "\\u00e9 is not é", "", " "]


def tricky_rows() -> list[dict]:
    rows = []
    for i in range(40):
        row = {"instruction": f"{TRICKY[i % len(TRICKY)]} task {i}", "output": f"{TRICKY[(i * 3) % len(TRICKY)]} {i}"}
        if i % 4:
            row["input"] = TRICKY[(i * 7) % len(TRICKY)]
        if i % 5 == 0:
            row["meta"] = {"n": i, "f": [0.1, 1e16, -0.0, 2.5e-7], "ok": i % 2 == 0, "none": None}
        if i % 6 == 0:
            row["big"] = 12345678901234567890123  # beyond 64 bits: must stay an integer
        if i % 7 == 0:
            row["tag"] = TRICKY[i % len(TRICKY)]
        rows.append(row)
    rows.append(dict(rows[3]))  # an identical row shares its id and grade
    return rows


def write_inputs(tmp_path: Path) -> dict[str, Path]:
    from gasus.records import example_id

    rows = tricky_rows()
    data = tmp_path / "data.json"
    data.write_text(json.dumps(rows, ensure_ascii=True, indent=4), encoding="utf-8")
    lines, labels, other = [], [], []
    for i, row in enumerate(rows):
        eid = example_id(row["instruction"], row.get("input", ""), row["output"])
        k = 3 if i == len(rows) - 1 else i  # the repeated row has its first's grade
        status = "unparsed" if k % 9 == 4 else "ok"
        score = None if status != "ok" else [2.0, 3.5, 4.0, 4.5, 4.5, 5.0, 4.25][k % 7]
        probs = {"4": 0.25, "5": 0.75} if i % 3 == 0 else None
        top = None if score is None else float(round(score))
        lines.append(json.dumps({"id": eid, "index": i, "score": score, "status": status, "grader": "t",
                                 "dimension": "accuracy", "mode": "expected", "raw": TRICKY[i % len(TRICKY)],
                                 "probs": probs, "top_score": top}, ensure_ascii=i % 2 == 0))
        labels.append(json.dumps({"index": i, "kept_by_test": i % 3 != 1}))
        other.append(json.dumps({"id": eid, "index": i, "score": [5.0, 4.0, 3.0][k % 3], "status": "ok",
                                 "grader": "u", "dimension": "accuracy", "mode": "generate", "raw": "x"}))
    scores = tmp_path / "scores.jsonl"
    # a BOM, CRLF line ends and blank lines, all of which readers meet
    scores.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines[:20]).encode() + b"\r\n\r\n  \n"
                       + "\n".join(lines[20:]).encode() + b"\n")
    (tmp_path / "labels.jsonl").write_text("\n".join(labels) + "\n")
    (tmp_path / "other.jsonl").write_text("\n".join(other) + "\n")
    return {"data": data, "scores": scores, "labels": tmp_path / "labels.jsonl", "other": tmp_path / "other.jsonl"}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_outputs_stay_byte_identical(tmp_path, monkeypatch):
    """select (threshold, top-k, JSON and JSON Lines), the sweep and agree print and write exactly what
    c2bf012 did (the digests below were taken there)."""
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative names: the printed lines do not depend on where tmp_path is
    got = {}
    for name, args in {
        "threshold.json": ["select", "data.json", "scores.jsonl", "--threshold", "4.5", "-o", "threshold.json"],
        "topk.jsonl": ["select", "data.json", "scores.jsonl", "--top-k", "7", "-o", "topk.jsonl"],
        "sweep": ["select", "data.json", "scores.jsonl", "--sweep", "3,3.5,4,4.5,5"],
        "agree-labels": ["agree", "scores.jsonl", "labels.jsonl"],
        "agree-scores": ["agree", "scores.jsonl", "other.jsonl", "--threshold", "4"],
    }.items():
        result = run_cli(*args, "--summary-json", f"{name}.summary.json")
        assert result.exit_code == 0, result.output
        report = json.loads(Path(f"{name}.summary.json").read_text())
        report.pop("seconds")
        report.pop("diagnostics", None)  # issue 17's score health, added since
        got[name] = f"{_digest(result.output.encode())} {_digest(json.dumps(report, sort_keys=True).encode())}"
        if name.endswith(("json", "jsonl")):
            got[name] += " " + _digest(Path(name).read_bytes())
    assert got == GOLDEN


# sha256 prefixes of (printed output, summary less "seconds" and "diagnostics"[, written file]) at
# c2bf012; agree's printed tables were retaken when issue 17 added two score-health rows to them
# (diffed against c2bf012's: those rows, and the value column one space wider, are all that changed).
GOLDEN = {
    "threshold.json": "e22e6dfe32e550d0 a6ae5a839fddb437 0b436416c34f9480",
    "topk.jsonl": "c2d82fea32e6e4d9 ffe0e4582bc58b3d 5064378b8dfe2bac",
    "sweep": "2510ec5e80f8b360 620ac52956f9dcec",
    "agree-labels": "0153ddb0c398a1e1 1a9ad3532b63c22f",
    "agree-scores": "47ad52f6daf56046 f337b62961060211",
}


def test_each_example_id_is_computed_once_per_row(tmp_path, monkeypatch):
    """select --threshold and --sweep hash each row's triplet once, not once per join step."""
    import gasus.records

    write_inputs(tmp_path)
    calls = []
    real = gasus.records.example_id
    monkeypatch.setattr(gasus.records, "example_id", lambda *a: calls.append(a) or real(*a))
    for args in (["--threshold", "4.5", "-o", str(tmp_path / "kept.json")], ["--sweep", "4,4.5"]):
        calls.clear()
        result = run_cli("select", str(tmp_path / "data.json"), str(tmp_path / "scores.jsonl"), *args)
        assert result.exit_code == 0, result.output
        assert len(calls) == 41  # 41 rows


def test_example_id_fast_form_is_the_canonical_json():
    """The id written out by hand hashes the very bytes canonical_json gives (DESIGN.md's definition)."""
    from gasus.records import canonical_json, example_id, sha256_text

    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)  # each character, escaped or not
    for a in [*TRICKY, every]:
        for b in TRICKY:
            triplet = {"instruction": a, "input": b, "output": a + b}
            assert example_id(a, b, a + b) == sha256_text(canonical_json(triplet))


def test_json_files_are_read_with_orjson(tmp_path, monkeypatch):
    """A dataset (JSON array) and a scores file (JSON Lines) are parsed by orjson: json.loads is not
    called once per line, nor for the array."""
    import gasus.io

    p = write_inputs(tmp_path)
    calls = []
    real = gasus.io.fastjson.json.loads
    monkeypatch.setattr(gasus.io.fastjson.json, "loads", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert len(gasus.io.read_jsonl_objects(p["scores"])) == 41
    assert len(gasus.io.read_json(p["data"])) == 41
    assert calls == [1]  # the dataset holds a number beyond 64 bits: json reads it
    p["data"].write_text(p["data"].read_text().replace("12345678901234567890123", "1"))
    hex_like = p["scores"].read_text(encoding="utf-8-sig").replace('"grader": "t"', f'"grader": "{"0" * 40}"')
    p["scores"].write_text(hex_like, encoding="utf-8")
    calls.clear()
    assert len(gasus.io.read_json(p["data"])) == 41 and len(gasus.io.read_jsonl_objects(p["scores"])) == 41
    assert calls == []  # long digit runs in strings (hex ids) alone keep orjson


def test_fast_reading_reads_what_json_reads(tmp_path):
    """What orjson reads differently or refuses goes to json: big integers stay integers, NaN and 1e400 read
    as json reads them, and every error keeps its message."""
    from gasus.errors import BadInputError
    from gasus.io import read_json, read_jsonl_objects

    f = tmp_path / "rows.jsonl"
    f.write_bytes(b'{"a": 123456789012345678901234567890, "b": -0.0}\n\xc2\xa0\n\x1f\n{"c": NaN, "d": 1e400}\r\n')
    rows = read_jsonl_objects(f)
    assert rows[0] == {"a": 123456789012345678901234567890, "b": -0.0} and type(rows[0]["a"]) is int
    assert rows[1]["c"] != rows[1]["c"] and rows[1]["d"] == float("inf") and len(rows) == 2
    arr = tmp_path / "rows.json"
    arr.write_bytes(b'\xef\xbb\xbf[{"n": 99999999999999999999}]')
    assert read_json(arr) == [{"n": 99999999999999999999}]
    cases = {
        b'{"a": 1}\n{"a": "\\ud800"}\n': "line 2: a string holds a lone surrogate escape (\\ud800), which is not text",
        b'{"a": 1}\n{"a": 2,}\n': "invalid JSON at line 2, column 9: Expecting property name enclosed in double quotes",
        b'{"a": "x"}\n{"a": 2}\n\xff\n': "not UTF-8 text: undecodable byte 0xff at line 3 (byte offset 20)",
        b'{"a": "\xed\xa0\x80"}\n': "not UTF-8 text: undecodable byte 0xed at line 1 (byte offset 7)",
    }
    for data, message in cases.items():
        f.write_bytes(data)
        try:
            read_jsonl_objects(f)
        except BadInputError as exc:
            assert str(exc) == f"{f}: {message}"
        else:
            raise AssertionError(data)


def test_records_are_written_as_they_come(tmp_path):
    """write_records takes a generator (select writes its kept examples without a second list) and
    writes the bytes json.dump(indent=2) writes for the list."""
    from gasus.io import write_records

    rows = [{"instruction": "x", "input": "", "output": "y"}, *tricky_rows(), {}, {"a": []}, {1: "int key"}]
    assert write_records(tmp_path / "out.json", (r for r in rows)) == len(rows)
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    assert write_records(tmp_path / "empty.json", iter(())) == 0
    assert (tmp_path / "empty.json").read_text() == "[]\n"


def test_cached_rerun_reads_the_cache_in_bulk(tmp_path, mini_alpaca):
    """A fully cached grading rerun of 40 examples asks the cache database once, not once per example."""
    from gasus.backends import CachedModel
    from gasus.backends.replay import ReplayBackend
    from gasus.cache import Cache
    from gasus.grade import grade_examples, grade_request, grading_prompt
    from gasus.io import load_examples

    examples = load_examples(mini_alpaca)
    prompt = grading_prompt("accuracy")
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"messages": prompt.messages(e), "text": f"{e.index % 6}\nok"}) + "\n"
                              for e in examples))
    first = grade_examples(examples, CachedModel(ReplayBackend(str(replay)), Cache()), prompt=prompt)
    model = CachedModel(ReplayBackend(str(replay)), Cache())
    model.key(grade_request(prompt, examples[0], "generate"))  # the model's identity (a memo) is read before
    statements = []
    model.cache._store._con.set_trace_callback(statements.append)
    again = grade_examples(examples, model, prompt=prompt)
    assert again == first and model.stats.model_calls == 0 and model.stats.cache_hits == 40
    assert len([s for s in statements if "FROM Cache" in s]) == 1



def test_cache_get_many_reads_blocks_of_keys(monkeypatch):
    """get_many answers what get answers, key by key, across blocks; keys not cached (or expired) are absent."""
    import gasus.cache.store
    from gasus.cache import Cache

    monkeypatch.setattr(gasus.cache.store, "GET_MANY_BLOCK", 7)
    cache = Cache()
    keys = [f"{i:064x}" for i in range(30)]
    for i, key in enumerate(keys[:25]):
        cache.put(key, {"text": f"answer {i}", "n": i})
    cache._store.set(keys[25], {"value": {"text": "gone"}}, expire=-1)  # expired on arrival
    found = cache.get_many([*reversed(keys), keys[3]])
    assert found == {key: cache.get(key) for key in keys[:25]} and len(found) == 25


def test_record_to_dict_is_asdict():
    """to_dict gives what dataclasses.asdict gave, containers copied (changing them leaves the record as it was)."""
    import dataclasses

    from gasus.records import Answer, Grade, Judgement, Verdict

    records = [Grade("i", 3, 4.5, "ok", "g", "accuracy", "expected", "4", {"4": 0.5, "5": 0.5}, 4.0),
               Grade("i", 3, None, "error", "g", "accuracy", "generate", None),
               Judgement("vicuna", "1", "ab", [8.0, 7.0], "ok", "8 7"), Answer("koala", "2", "q", "a", "m"),
               Verdict("wizardlm", "3", "win")]
    for record in records:
        assert record.to_dict() == dataclasses.asdict(record)
        assert list(record.to_dict()) == list(dataclasses.asdict(record))
    copied = records[0].to_dict()
    copied["probs"]["4"] = 1.0
    assert records[0].probs == {"4": 0.5, "5": 0.5}


def test_long_numbers_are_found_where_a_number_can_start():
    """Which bytes are read again by json when orjson reads a float of 2**63 or more."""
    from gasus.io.fastjson import _long_number

    assert _long_number(b'{"a": 12345678901234567890}') and _long_number(b'[1,-12345678901234567890]')
    assert _long_number(b'{"a":\n12345678901234567890}') and _long_number(b"12345678901234567890")
    assert not _long_number(b'{"id": "a12345678901234567890", "b": "12345678901234567890", "c": 123456789012345678}')


def test_select_holds_no_grade_per_line(tmp_path, monkeypatch):
    """select (threshold, top-k, sweep) reads the scores file into a ScoreIndex (id -> usable score)
    as a stream: no Grade object per line, whose memory counts at a million rows."""
    import gasus.selection

    write_inputs(tmp_path)
    made = []
    real = gasus.selection.Grade
    monkeypatch.setattr(gasus.selection, "Grade", lambda *a, **k: made.append(1) or real(*a, **k))
    data, scores = str(tmp_path / "data.json"), str(tmp_path / "scores.jsonl")
    for args in (["--threshold", "4.5", "-o", str(tmp_path / "a.json")], ["--top-k", "3", "-o", str(tmp_path / "b.json")],
                 ["--sweep", "4,4.5"]):
        result = run_cli("select", data, scores, *args)
        assert result.exit_code == 0, result.output
    assert made == []


def test_join_errors_count_lines_as_before(tmp_path):
    """Scores of another dataset: the counts in the messages are the same for a ScoreIndex and for grades."""
    from gasus.io import load_examples
    from gasus.selection import load_grades, load_score_index, select_threshold

    p = write_inputs(tmp_path)
    examples = load_examples(p["data"])
    lines = p["scores"].read_text(encoding="utf-8-sig").replace("\r", "").split("\n")
    other = tmp_path / "other-scores.jsonl"
    extra = json.dumps({"id": "f" * 64, "index": 99, "score": 5.0, "status": "ok"})
    other.write_text("\n".join([extra, *lines[1:], extra]) + "\n")
    for grades in (load_grades(other), load_score_index(other)):
        try:
            select_threshold(examples, grades)
        except Exception as exc:
            assert str(exc).startswith("1 example(s) have no score (first: row 0, id ")
        try:
            select_threshold(examples[1:], grades)
        except Exception as exc:
            assert str(exc) == "2 score(s) match no example (first id ffffffffffff); were the scores made from another dataset?"


def test_example_id_of_a_lone_surrogate_fails_as_before():
    from gasus.records import example_id

    try:
        example_id("\ud800", "", "x")
    except UnicodeEncodeError:
        pass
    else:
        raise AssertionError("a lone surrogate has no UTF-8 form to hash")


def test_agree_tells_the_reference_kind_from_its_first_line(tmp_path):
    """Whether LABELS is a scores file is read from its first line, not by parsing the whole file once
    more before it is loaded."""
    from gasus.agree import is_scores_file

    f = tmp_path / "ref.jsonl"
    f.write_text('\n{"id": "a", "status": "ok", "score": 4}\n{"index": 1, "kept": true}\nnot json\n')
    assert is_scores_file(f)
    f.write_text('{"index": 1, "kept": true}\n{not json\n')
    assert not is_scores_file(f)
    f.write_text("\n \n")
    try:
        is_scores_file(f)
    except Exception as exc:
        assert str(exc) == f"{f}: the file is empty"
    else:
        raise AssertionError("an empty reference is an error")


def test_canonical_json_is_json_dumps():
    """canonical_json (every cache key and id is a hash of it) writes what json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False) writes, through orjson or not."""
    from gasus.records import canonical_json

    values = [
        {"schema": 1, "backend": "llamacpp", "model": "ab" * 32, "messages": [{"role": "user", "content": t} for t in TRICKY],
         "params": {"template": "chat", "temperature": 0, "max_tokens": 256, "stop": ["\n"], "grammar": None, "x": True}},
        {"\ue000": 1, "\U00010000": 2, "a": 3, "B": 4, "é": 5, "": [(), (1, "2")], "a\x00": {"z": {}, "y": []}},
        {"t": 0.7, "big": 1e16, "small": 1e-7, "n": -0.0}, {"huge": 12345678901234567890123}, {1: "int key"},
        ["top", "level", 1, None, False], "just a string", 3,
    ]
    for value in values:
        assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_grading_holds_no_list_of_requests(tmp_path, mini_alpaca, monkeypatch):
    """A cached grading rerun renders each prompt when its key is needed and lets it go: the rendered
    prompts of a million rows (about 1 KB each) are never all held at once."""
    import gc
    import weakref

    import gasus.grade
    from gasus.backends import CachedModel
    from gasus.backends.replay import ReplayBackend
    from gasus.cache import Cache
    from gasus.grade import grade_examples, grading_prompt
    from gasus.io import load_examples

    examples = load_examples(mini_alpaca)
    prompt = grading_prompt("accuracy")
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"messages": prompt.messages(e), "text": "4\nok"}) + "\n" for e in examples))
    made = []
    real = gasus.grade.grade_request
    monkeypatch.setattr(gasus.grade, "grade_request", lambda *a, **kw: made.append(weakref.ref(r := real(*a, **kw))) or r)
    alive = []

    def on_grade(position, grade, cached):
        gc.collect()
        alive.append(sum(ref() is not None for ref in made))

    grade_examples(examples, CachedModel(ReplayBackend(str(replay)), Cache()), prompt=prompt)  # fills the cache
    grades = grade_examples(examples, CachedModel(ReplayBackend(str(replay)), Cache()), prompt=prompt,
                            on_grade=on_grade)
    assert [g.score for g in grades] == [4.0] * 40 and len(alive) == 40
    assert max(alive) <= 1, alive


# ---------------------------------------------------------------- the second session of issue 13


def test_in_bulk_pauses_the_collector_and_resumes_it():
    """The cyclic collector is off inside a bulk call (and inside calls nested in it), on again once
    the outermost returns or raises; a collector the caller turned off stays off."""
    import gc

    from gasus.io import in_bulk

    seen = []

    @in_bulk
    def inner():
        seen.append(gc.isenabled())

    @in_bulk
    def outer(fail=False):
        inner()
        seen.append(gc.isenabled())
        if fail:
            raise ValueError("bad row")

    assert gc.isenabled()
    outer()
    assert seen == [False, False] and gc.isenabled()
    try:
        outer(fail=True)
    except ValueError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        outer()
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.fixture
def forking(monkeypatch):
    """Reading ahead as a `gasus` command does it: a suite's earlier tests leave threads behind (an
    HTTP server, tqdm's monitor), which a command process does not have, so they are not counted
    here; test_reading_ahead_forks_only_a_single_threaded_process tests that they are counted."""
    import gasus.ahead

    monkeypatch.setattr(gasus.ahead, "_one_thread", lambda: True)
    if not can_fork():
        pytest.skip("reading ahead forks on Linux with two CPUs")


def _exits(path):
    import os

    os._exit(3)


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _raises_unpicklable(path):
    raise Unpicklable(path, "more")


def test_reading_ahead_gives_what_reading_here_gives(tmp_path, forking):
    """A scores file read in a forked child comes back as the same ScoreIndex; its errors are raised in
    the parent as they are raised here, word for word."""
    from gasus.ahead import Ahead
    from gasus.errors import BadInputError, GasusError
    from gasus.selection import load_score_index

    p = write_inputs(tmp_path)
    with Ahead.reading(load_score_index, p["scores"], min_bytes=0) as ahead:
        assert ahead.forked
        assert ahead.result() == load_score_index(p["scores"])
    with Ahead.reading(load_score_index, p["scores"]) as ahead:  # a small file: read here, when asked
        assert not ahead.forked and ahead.result() == load_score_index(p["scores"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(p["scores"].read_text(encoding="utf-8-sig").replace('"status": "unparsed"', '"status": ["x"]', 1))
    messages = []
    for min_bytes in (0, None):
        with Ahead.reading(load_score_index, bad, min_bytes=min_bytes) as ahead, pytest.raises(BadInputError) as error:
            ahead.result()
        messages.append(str(error.value))
    assert messages[0] == messages[1] and messages[0].endswith("unknown status ['x']")
    with Ahead.reading(_exits, bad, min_bytes=0) as ahead, pytest.raises(GasusError) as error:
        ahead.result()
    assert str(error.value) == f"the process reading {bad} stopped without a result (exit code 3)"
    with Ahead.reading(_raises_unpicklable, bad, min_bytes=0) as ahead, pytest.raises(RuntimeError) as error:
        ahead.result()
    assert str(error.value) == f"Unpicklable: {bad} and more"


def test_leaving_the_block_stops_a_child_never_asked(tmp_path, forking):
    import time

    from gasus.ahead import Ahead

    with Ahead(time.sleep, 30, size=1, min_bytes=0) as ahead:
        process = ahead.process
        assert process.is_alive()
    assert not process.is_alive() and process.exitcode is not None


def test_select_and_agree_read_ahead_and_write_the_same(tmp_path, monkeypatch, forking):
    """With every input read ahead (no size too small), select, the sweep and agree print and write the
    digests of test_outputs_stay_byte_identical, and a bad scores line is the same one-line error."""
    import gasus.ahead
    from gasus.ahead import Ahead

    monkeypatch.setattr(gasus.ahead, "MIN_BYTES", 0)
    forked = []
    real_result = Ahead.result
    monkeypatch.setattr(Ahead, "result", lambda self: forked.append(self.forked) or real_result(self))
    test_outputs_stay_byte_identical(tmp_path, monkeypatch)
    assert forked == [True] * 4  # threshold, top-k and the sweep's scores; agree's labels (not its other scores file)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(Path("scores.jsonl").read_text(encoding="utf-8-sig").replace('"status": "ok"', '"status": "fine"', 1))
    errors = []
    for min_bytes in (0, 10**12):
        monkeypatch.setattr(gasus.ahead, "MIN_BYTES", min_bytes)
        result = run_cli("select", "data.json", "bad.jsonl", "--threshold", "4", "-o", "never.json")
        errors.append((result.exit_code, result.output))
    assert errors[0] == errors[1] and errors[0][0] == 2
    assert errors[0][1] == "Error: bad.jsonl: line 1: unknown status 'fine'\n" and not Path("never.json").exists()


def test_json_array_writer_writes_what_json_dump_writes(tmp_path, monkeypatch):
    """write_json_array (orjson, in blocks) gives write_json's bytes for any values: a block holding a
    float, an integer beyond 64 bits or anything orjson writes otherwise goes through json."""
    import gasus.io
    from gasus.io import write_json, write_json_array

    monkeypatch.setattr(gasus.io.write, "ARRAY_BLOCK", 3)
    rows = tricky_rows()
    cases = [rows, [r for r in rows if "meta" not in r and "big" not in r], [], [{}], [[]], [[], {}, ""],
             [{"a": t, "b": [t, {"c": t}]} for t in TRICKY], [float("nan"), float("inf"), -0.0, 1e-7, 1e16, 0.1],
             [{"n": 2**64}, {"n": -(2**63) - 1}, {"n": 2**63 - 1}], [1, True, None, "x"] * 5]
    for case in cases:
        write_json_array(tmp_path / "a.json", iter(case))
        write_json(tmp_path / "b.json", case)
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes(), case


def test_example_id_is_kept_on_the_example(monkeypatch):
    """Example.id is hashed the first time it is read, then read from the example; it is not a field
    (not in repr, equality or fields) and survives pickling."""
    import dataclasses
    import pickle

    import gasus.records
    from gasus.records import Example, example_id

    calls = []
    monkeypatch.setattr(gasus.records, "example_id", lambda *a: calls.append(a) or example_id(*a))
    e = Example(3, "Say hi.", "", "Hi.", {"source": "x"})
    assert calls == [] and "id" not in e.__dict__
    assert e.id == e.id == example_id("Say hi.", "", "Hi.") and len(calls) == 1
    assert [f.name for f in dataclasses.fields(Example)] == ["index", "instruction", "input", "output", "extra"]
    assert repr(e) == "Example(index=3, instruction='Say hi.', input='', output='Hi.', extra={'source': 'x'})"
    assert e == Example(3, "Say hi.", "", "Hi.", {"source": "x"}) and Example.id.name == "id"
    back = pickle.loads(pickle.dumps(e))
    assert back == e and back.id == e.id and len(calls) == 1
    assert dataclasses.replace(e, output="Hello.").id == example_id("Say hi.", "", "Hello.")


def test_a_run_without_collect_holds_no_result(tmp_path, mini_alpaca, monkeypatch):
    """CachedModel.run(collect=False) tells on_result of every result as run() does and keeps none;
    the cache is read in blocks of SERVE_BLOCK keys with the same outcome; grading uses it."""
    import gasus.backends.base
    from gasus.backends import CachedModel
    from gasus.backends.base import DELIVERED
    from gasus.backends.replay import ReplayBackend
    from gasus.cache import Cache
    from gasus.grade import grade_examples, grade_request, grading_prompt
    from gasus.io import load_examples
    from gasus.thinking import run_growing

    examples = load_examples(mini_alpaca)
    prompt = grading_prompt("accuracy")
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"messages": prompt.messages(e), "text": f"{e.index % 6}\nok"}) + "\n"
                              for e in examples))
    requests = [grade_request(prompt, e, "generate") for e in examples]
    first = CachedModel(ReplayBackend(str(replay)), Cache())
    for i, request in enumerate(requests[:30]):  # 30 cached, as a served model left them; 10 more are asked below
        first.cache.put(first.key(request), {"text": f"{i % 6}\nok", "served_model": "m",
                                             "system_fingerprint": f"fp{i % 2}"})
    kept = first.run(requests[:30])
    monkeypatch.setattr(gasus.backends.base, "SERVE_BLOCK", 7)
    told, model = {}, CachedModel(ReplayBackend(str(replay)), Cache())
    held = model.run(requests, lambda i, r: told.__setitem__(i, r), collect=False)
    assert held == [DELIVERED] * 40 and [told[i].value for i in range(30)] == [r.value for r in kept]
    assert (model.stats.cache_hits, model.stats.model_calls) == (30, 10)
    assert model.stats.served == first.stats.served == {"m|fp0": 15, "m|fp1": 15}
    again = CachedModel(ReplayBackend(str(replay)), Cache())
    assert run_growing(again, requests, collect=False) == [] and again.stats.cache_hits == 40
    assert grade_examples(examples, again, prompt=prompt) == grade_examples(examples, first, prompt=prompt)


def test_score_lines_pass_the_quick_check_or_say_what_is_wrong(tmp_path):
    """The usual score line passes one cheap test; every other is checked field by field, with the
    errors the field-by-field check always gave (an unhashable status included)."""
    from gasus.errors import BadInputError
    from gasus.selection import load_grades

    def line(**fields):
        return json.dumps({"id": "a" * 64, "index": 0, "score": 4.5, "status": "ok", **fields})

    f = tmp_path / "s.jsonl"
    f.write_text("\n".join([line(score=5), line(id="b" * 64, index=1, score=7, status="unparsed"),
                            line(id="c" * 64, index=2, top_score=4)]) + "\n")
    grades = load_grades(f)
    assert [(g.score, type(g.score), g.status, g.top_score) for g in grades] == [
        (5.0, float, "ok", None), (7.0, float, "unparsed", None), (4.5, float, "ok", 4.0)]
    for fields, message in [({"status": ["ok"]}, "unknown status ['ok']"), ({"status": None}, "unknown status None"),
                            ({"score": True}, "'score' must be a number or null"),
                            ({"score": 5.5}, "'score' 5.5 of an ok grade is outside 0-5"),
                            ({"index": True}, "'index' must be a whole number >= 0"),
                            ({"index": -1}, "'index' must be a whole number >= 0"),
                            ({"top_score": "4"}, "'top_score' must be a finite number or null"),
                            ({"id": 7}, "missing 'id'")]:
        f.write_text(line(**fields) + "\n")
        with pytest.raises(BadInputError) as error:
            load_grades(f)
        assert str(error.value) == f"{f}: line 1: {message}", fields


def test_score_health_by_threshold_is_the_health_by_kept_ids(tmp_path):
    """select's health under the threshold rule reads "kept" as score >= threshold, as the set of kept
    ids says (the set is not built at a million rows)."""
    from gasus.diagnostics import grade_health
    from gasus.io import load_examples
    from gasus.selection import load_score_index, select_threshold

    p = write_inputs(tmp_path)
    examples, index = load_examples(p["data"]), load_score_index(p["scores"])
    for threshold in (3.5, 4.25, 4.5, 5):
        kept = {e.id for e in select_threshold(examples, index, threshold).kept}
        assert grade_health(examples, index, None, threshold=threshold) == grade_health(examples, index, kept)


def test_json_lines_read_in_blocks_read_what_the_whole_file_reads(tmp_path, monkeypatch):
    """A JSON Lines file read a few bytes at a time (lines longer than a block, a BOM, CRLF, blank
    lines, a 23-digit integer in a later block) gives the lines and values, and the errors, of one read."""
    import gasus.io
    from gasus.errors import BadInputError
    from gasus.io import iter_jsonl

    p = write_inputs(tmp_path)
    tail = b'\n\n{"n": 12345678901234567890123, "t": "\\u00e9"}\r\n   \n[1, 2]'
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(p["scores"].read_bytes() + tail)
    whole = list(iter_jsonl(f))
    assert whole[-2] == (len(f.read_bytes().split(b"\n")) - 2, {"n": 12345678901234567890123, "t": "é"})
    for block in (1, 7, 64, 1000):
        monkeypatch.setattr(gasus.io.fastjson, "JSONL_BLOCK", block)
        assert list(iter_jsonl(f)) == whole
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n{"c": 3}\n')
    for block in (4, 2**20):
        monkeypatch.setattr(gasus.io.fastjson, "JSONL_BLOCK", block)
        with pytest.raises(BadInputError) as error:
            list(iter_jsonl(bad))
        assert str(error.value) == f"{bad}: not UTF-8 text: undecodable byte 0xff at line 2 (byte offset 16)"


def test_reading_ahead_forks_only_a_single_threaded_process():
    """A second thread (which may hold a lock the child would inherit held) keeps the reading here."""
    import threading

    from gasus.ahead import Ahead, _one_thread

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not _one_thread() and not can_fork()
        with Ahead(len, "abc", size=10**9, min_bytes=0) as ahead:
            assert not ahead.forked and ahead.result() == 3
    finally:
        stop.set()
        thread.join()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Whether a process is there and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_forked_reader_dies_with_a_killed_parent(tmp_path):
    """SIGTERM to `select` while its forked child reads the scores: the child (which held the pipe's read
    end itself, and so blocked forever writing its result) is gone within 5 s."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not can_fork():
        pytest.skip("reading ahead forks on Linux with two CPUs")
    from gasus.records import example_id

    rows, scores = [], []
    for i in range(120_000):
        row = {"instruction": f"Question {i}: what follows {i}?", "input": "", "output": f"{i + 1}, then more " * 4}
        rows.append(json.dumps(row))
        scores.append(json.dumps({"id": example_id(row["instruction"], "", row["output"]), "index": i, "score": 4.5,
                                  "status": "ok", "grader": "t", "dimension": "accuracy", "mode": "expected",
                                  "raw": "4.5\nA fine answer that is long enough to weigh something." * 2}))
    (tmp_path / "data.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "scores.jsonl").write_text("\n".join(scores) + "\n")
    assert (tmp_path / "scores.jsonl").stat().st_size > 16 * 2**20  # large enough to be read ahead
    parent = subprocess.Popen([sys.executable, "-m", "gasus", "select", "data.jsonl", "scores.jsonl", "-o", "k.json"],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, child = time.monotonic() + 60, None
    try:
        while child is None and parent.poll() is None and time.monotonic() < deadline:
            child = next(iter(_children(parent.pid)), None)
            time.sleep(0.005)
        assert child is not None, "select finished without forking a reader"
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == -signal.SIGTERM
        time.sleep(5)
        left = _running(child)
    finally:
        parent.kill()
        if child is not None and _running(child):  # left behind: not by this suite
            os.kill(child, signal.SIGKILL)
    assert not left
