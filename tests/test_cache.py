"""The content-addressed cache: keys, round trips, export/import, and unusable directories."""

from __future__ import annotations

import json
import os
import time

import pytest

from gasus.backends.base import Backend, BackendOptions, CachedModel, Request, TransientError
from gasus.cache import Cache, request_key
from gasus.errors import BadInputError, CacheError, CacheMissError
from tests.conftest import run_cli


def test_key_is_canonical_and_sensitive():
    k = request_key("llamacpp", "abc", [{"role": "user", "content": "hi"}], {"max_tokens": 5, "temperature": 0})
    same = request_key("llamacpp", "abc", [{"content": "hi", "role": "user"}], {"temperature": 0, "max_tokens": 5})
    assert k == same
    assert len(k) == 64
    assert k != request_key("llamacpp", "abd", [{"role": "user", "content": "hi"}], {"max_tokens": 5, "temperature": 0})
    assert k != request_key("llamacpp", "abc", [{"role": "user", "content": "hi"}], {"max_tokens": 6, "temperature": 0})


def test_default_location_follows_env(tmp_path):
    cache = Cache()
    assert cache.directory == tmp_path / "cache"
    assert (tmp_path / "cache" / "gasus-cache.json").exists()


def test_put_get_persist_across_instances(tmp_path):
    Cache().put("k1", {"text": "4.5\nGood."}, backend="llamacpp", model="m")
    assert Cache().get("k1") == {"text": "4.5\nGood."}
    assert Cache().get("k2") is None


def test_export_clear_import_round_trip(tmp_path):
    cache = Cache()
    for i in range(5):
        cache.put(f"{i}" * 64, {"text": str(i)}, backend="openai" if i % 2 else "llamacpp", model="m")
    out = tmp_path / "export.jsonl"
    assert cache.export(out) == 5
    assert cache.clear() == 5
    assert all(cache.get(f"{i}" * 64) is None for i in range(5))
    assert cache.import_(out).added == 5
    assert [cache.get(f"{i}" * 64)["text"] for i in range(5)] == ["0", "1", "2", "3", "4"]
    assert cache.stats()["by_backend"] == {"llamacpp": 3, "openai": 2}


def test_import_rejects_foreign_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"key": "a" * 64, "entry": {"value": {"text": "4"}}}) + "\n" + json.dumps({"x": 1}) + "\n")
    with pytest.raises(BadInputError, match=r"bad\.jsonl: line 2: not a gasus cache export line"):
        Cache().import_(bad)
    assert len(Cache()) == 0  # nothing half-imported


def test_foreign_directory_is_refused(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"x")
    with pytest.raises(CacheError, match="not a gasus cache"):
        Cache(other)


def test_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CacheError, match="not a directory"):
        Cache(f)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory_is_refused(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    with pytest.raises(CacheError, match="not writable"):
        Cache(d / "cache")


def test_unwritable_parent_is_refused(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(CacheError):
        Cache(blocker / "cache")


class Scripted(Backend):
    """A backend defined in the test: answers from a table, fails on purpose."""

    name = "scripted"

    def __init__(self, answers, fail=()):
        super().__init__("table")
        self.answers, self.fail, self.calls = answers, set(fail), []

    def complete(self, request):
        prompt = request.messages[-1]["content"]
        self.calls.append(prompt)
        if prompt in self.fail:
            raise TransientError(f"503 for {prompt}")
        return {"text": self.answers[prompt]}


def test_cached_model_hits_dedup_and_never_caches_failures():
    backend = Scripted({"a": "1", "b": "2", "c": "3"}, fail={"c"})
    model = CachedModel(backend, Cache())
    requests = [Request.chat([{"role": "user", "content": p}], max_tokens=4) for p in "abac"]
    results = model.run(requests)
    assert [r.value["text"] if r.value else r.error for r in results] == ["1", "2", "1", "503 for c"]
    assert backend.calls == ["a", "b", "c"]  # the duplicate "a" was asked once
    assert (model.stats.model_calls, model.stats.cache_hits, model.stats.failures) == (2, 0, 1)

    backend2 = Scripted({"a": "x", "b": "x", "c": "3"})
    model2 = CachedModel(backend2, Cache())
    results = model2.run(requests)
    assert [r.value["text"] for r in results] == ["1", "2", "1", "3"]
    assert [r.cached for r in results] == [True, True, True, False]
    assert backend2.calls == ["c"]  # only the failure is asked again
    assert model2.misses(requests) == []


def test_offline_miss_is_an_error():
    model = CachedModel(Scripted({"a": "1"}), Cache(), offline=True)
    with pytest.raises(CacheMissError):
        model.run([Request.chat([{"role": "user", "content": "a"}])])


def test_cache_cli_round_trip(tmp_path):
    k = "f" * 64
    Cache().put(k, {"text": "5"}, backend="llamacpp", model="m")
    out = tmp_path / "e.jsonl"
    assert "exported 1 entry" in run_cli("cache", "export", str(out)).output
    assert "cleared 1 entry" in run_cli("cache", "clear", "--yes").output
    assert Cache().get(k) is None
    result = run_cli("cache", "import", str(out), "--summary-json", str(tmp_path / "s.json"))
    assert f"read 1 entry from {out}: 1 new, 0 already present" in result.output
    assert Cache().get(k) == {"text": "5"}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["command"] == "cache import" and summary["items"] == 1
    assert "entries: 1" in run_cli("cache", "stats").output


def test_cache_cli_foreign_dir_exit_2(tmp_path, monkeypatch):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    monkeypatch.setenv("GASUS_CACHE_DIR", str(other))
    result = run_cli("cache", "stats")
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "not a gasus cache" in result.output
    assert len(result.output.strip().splitlines()) == 1



# ---------------------------------------------------------------- the cache key's gaps


def _misses_after_change(before, make_after, request):
    """A completion cached for backend `before` is a hit there; the misses, for the same request,
    of the backend `make_after()` builds once that completion is stored."""
    cache = Cache()
    first = CachedModel(before, cache)
    cache.put(first.key(request), {"text": "4"})
    assert first.misses([request]) == []
    return CachedModel(make_after(), cache).misses([request])


RATE = Request.chat([{"role": "user", "content": "Rate this."}], temperature=0, max_tokens=4)


@pytest.mark.parametrize("backend", ["llamacpp", "openai"])
def test_cache_key_gaps_seed_misses_the_cache(backend, embedded_gguf):
    from gasus.backends import load_backend

    spec = f"llamacpp:{embedded_gguf}" if backend == "llamacpp" else "openai:m"
    before, after = (load_backend(spec, BackendOptions(seed=seed, base_url="http://127.0.0.1:9/v1")) for seed in (0, 1))
    assert _misses_after_change(before, lambda: after, RATE) == [0]


def test_cache_key_gaps_prefix_block_misses_the_cache(embedded_gguf, monkeypatch):
    from gasus.backends import llamacpp

    def with_larger_blocks():
        monkeypatch.setattr(llamacpp, "PREFIX_BLOCK", llamacpp.PREFIX_BLOCK * 2)
        return llamacpp.LlamaCppBackend(str(embedded_gguf))

    assert _misses_after_change(llamacpp.LlamaCppBackend(str(embedded_gguf)), with_larger_blocks, RATE) == [0]

def test_swapped_model_file_is_not_mistaken_for_the_old_one(tmp_path, monkeypatch):
    """Issue 18 item 6: file hashes were memoised by (path, size, mtime), which `cp -p`,
    `rsync -a` and tar all preserve, so a replaced model answered from the old one's entries."""
    import hashlib

    import gasus.backends.base as base

    cache = Cache()
    model = tmp_path / "model.gguf"
    stamp = (1_600_000_000_123_456_789, 1_600_000_000_123_456_789)

    def put(data: bytes, *, in_place: bool) -> None:
        time.sleep(0.05)  # past the kernel's coarse ctime tick, as any real copy is
        if in_place:  # cp -p onto an existing file: same inode, old mtime restored
            with open(model, "r+b") as handle:
                handle.write(data)
        else:  # rsync -a, tar: a new file renamed over the old one, old mtime restored
            tmp = tmp_path / ".model.tmp"
            tmp.write_bytes(data)
            os.utime(tmp, ns=stamp)
            os.replace(tmp, model)
        os.utime(model, ns=stamp)

    later = time.time() + 60  # every file written here is settled by then
    monkeypatch.setattr(time, "time", lambda: later)
    put(b"A" * 4096, in_place=False)
    assert base.file_sha256(model, cache) == hashlib.sha256(b"A" * 4096).hexdigest()
    put(b"B" * 4096, in_place=False)
    assert base.file_sha256(model, cache) == hashlib.sha256(b"B" * 4096).hexdigest()
    put(b"C" * 4096, in_place=True)
    assert base.file_sha256(model, cache) == hashlib.sha256(b"C" * 4096).hexdigest()

    # An unchanged file is answered from the memo: its bytes are not read again.
    expected = hashlib.sha256(b"C" * 4096).hexdigest()
    monkeypatch.setattr(base, "sha256_file", None)  # a hash would call it
    assert base.file_sha256(model, cache) == expected


def test_a_file_written_just_now_is_hashed_again(tmp_path):
    """Within the kernel's ctime tick a rewrite may keep every stat field: such a file is never memoised."""
    import gasus.backends.base as base

    cache = Cache()
    model = tmp_path / "model.bin"
    model.write_bytes(b"x")
    base.file_sha256(model, cache)
    assert [k for k, _ in cache.entries() if k.startswith("filehash:")] == []


# ---------------------------------------------------------------- item 5: no pickles, a checked import


class _RunsCode:
    """What a crafted cache entry may hold: unpickling it calls Path.touch(flag)."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (Path(self.flag),)


def _legacy_cache(directory, entries, marker=1):
    """A cache as gasus wrote it before values were JSON: diskcache's default, pickling Disk."""
    import diskcache

    directory.mkdir(parents=True)
    (directory / "gasus-cache.json").write_text(json.dumps({"gasus_cache": marker}) + "\n")
    store = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62)
    for key, entry in entries.items():
        store.set(key, entry)
    store.close()


def test_cache_never_runs_code_and_trusts_nothing(tmp_path, monkeypatch):
    """Issue 18 item 5: values were pickled, so a crafted cache dir ran code on `gasus cache stats`."""
    flag = tmp_path / "pwned"
    good = {"value": {"text": "4.5\nFine."}, "backend": "llamacpp", "model": "m", "created": 1.0}
    cache_dir = tmp_path / "cache"
    _legacy_cache(cache_dir, {"a" * 64: good, "b" * 64: {"value": _RunsCode(flag)},
                              "filehash:/m.gguf:1:2": {"value": {"sha256": "0" * 64}}})

    result = run_cli("cache", "stats")
    assert not flag.exists()
    assert result.exit_code == 2
    assert result.output == (f"Error: {cache_dir}: the cache holds values pickled by an older gasus, which are never "
                             "loaded; convert them once with `gasus cache migrate`\n")

    result = run_cli("cache", "migrate")
    assert not flag.exists()
    assert result.exit_code == 0, result.output
    assert result.output == ("converted 1 entry to JSON; dropped 1 memo(s) of file hashes or chat templates "
                             "(recomputed on use); dropped 1 broken entry(ies):\n  " + "b" * 64 + "\n")
    assert Cache().get("a" * 64) == {"text": "4.5\nFine."}
    assert len(Cache()) == 1
    assert run_cli("cache", "migrate").output == "converted 0 entries to JSON\n"

    # Every value is now stored as JSON text: no pickle mode (4) in the database.
    import sqlite3

    with sqlite3.connect(cache_dir / "cache.db") as db:
        assert {mode for (mode,) in db.execute("SELECT mode FROM Cache")} == {1}

    # A crafted cache that claims the new format still never unpickles: the entry is reported broken.
    crafted = tmp_path / "crafted"
    # (diskcache's own Disk stores a str as it is: that entry reads as the JSON gasus now writes)
    _legacy_cache(crafted, {"c" * 64: {"value": _RunsCode(flag)}, "d" * 64: json.dumps(good)}, marker=2)
    monkeypatch.setenv("GASUS_CACHE_DIR", str(crafted))
    result = run_cli("cache", "stats")
    assert not flag.exists()
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "entries: 2  (0.0 MB)", "  llamacpp: 1",
        "broken: 1 (stored as pickles, never loaded; `gasus cache migrate` converts or drops them)"]
    with pytest.raises(CacheError, match="entry cccccccccccccccc… is stored as a pickle, which gasus never loads"):
        Cache().get("c" * 64)
    out = tmp_path / "out.jsonl"
    assert run_cli("cache", "export", str(out)).output == f"exported 1 entry -> {out} (1 broken entry left out)\n"
    assert not flag.exists()

    # An old cache can be emptied without converting it.
    old = tmp_path / "old"
    _legacy_cache(old, {"e" * 64: good})
    monkeypatch.setenv("GASUS_CACHE_DIR", str(old))
    assert run_cli("cache", "clear", "--yes").output == "cleared 1 entry\n"
    assert run_cli("cache", "stats").exit_code == 0


def _export_line(key, value, **entry):
    return json.dumps({"key": key, "entry": {"value": value, "backend": "openai", "model": "m", "created": 2.0,
                                             **entry}}) + "\n"


def test_cache_import_checks_every_value_and_keeps_conflicts(tmp_path):
    k1, k2, k3 = "1" * 64, "2" * 64, "3" * 64
    cache = Cache()
    cache.put(k1, {"text": "5"}, backend="openai", model="m")
    cache.put(k2, {"text": "4"}, backend="openai", model="m")
    f = tmp_path / "in.jsonl"
    for line, message in [
        (_export_line("filehash:/x.gguf:1:2", {"sha256": "0"}), "line 1: 'filehash:/x.gguf:1:2' is an internal key (file hashes, chat templates) and is never imported"),
        (_export_line("chat-template:ab", {"template": "x"}), "line 1: 'chat-template:ab' is an internal key (file hashes, chat templates) and is never imported"),
        (_export_line("k", {"text": "4"}), "line 1: 'k' is not a gasus cache key (64 hex digits)"),
        (_export_line(k3, {"text": 4}), "line 1: not a gasus cache entry: value.text: Input should be a valid string"),
        (_export_line(k3, {"text": "4", "logprobs": {"4": "high"}}), "line 1: not a gasus cache entry: value.logprobs.4: Input should be a valid number"),
        (_export_line(k3, "4"), "line 1: not a gasus cache entry: value: Input should be a valid dictionary or instance of Completion"),
        (_export_line(k3, {"text": "4"}, pickle="x"), "line 1: not a gasus cache entry: pickle: Extra inputs are not permitted"),
    ]:
        f.write_text(line)
        with pytest.raises(BadInputError) as err:
            cache.import_(f)
        assert str(err.value) == f"{f}: {message}"
    assert len(cache) == 2

    f.write_text(_export_line(k1, {"text": "5"}) + _export_line(k2, {"text": "0"}) + _export_line(k3, {"text": "3"}))
    report = cache.import_(f)
    assert (report.read, report.added, report.unchanged, report.replaced, report.conflicts) == (3, 1, 1, 0, [k2])
    assert cache.get(k2) == {"text": "4"}  # the conflict was kept as it was
    result = run_cli("cache", "import", str(f))
    assert result.exit_code == 0
    assert result.output == (f"read 3 entries from {f}: 0 new, 2 already present, 1 conflict(s) kept as they were "
                             f"(--overwrite replaces them):\n  {k2}\n")
    result = run_cli("cache", "import", str(f), "--overwrite")
    assert result.output == f"read 3 entries from {f}: 0 new, 2 already present, 1 replaced\n"
    assert Cache().get(k2) == {"text": "0"}


def test_export_leaves_out_internal_memos(tmp_path):
    cache = Cache()
    cache.put("e" * 64, {"text": "5"}, backend="llamacpp", model="m")
    cache.put("filehash:/x:1", {"sha256": "0" * 64}, backend="filehash", model="/x")
    out = tmp_path / "e.jsonl"
    assert cache.export(out) == 1
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == ["e" * 64]


def test_cache_verify_reads_every_entry_and_reports_broken_ones(tmp_path):
    import sqlite3

    cache = Cache()
    good = {"text": "4.5\nFine.", "finish_reason": "stop"}
    for c in "abcde":
        cache.put(c * 64, good, backend="openai", model="m")
    cache.put("f" * 64, {"text": "x" * 70_000}, backend="openai", model="m")  # large: kept in a file of its own
    cache.put("filehash:/m.gguf:1:2:3:4:5", {"sha256": "0" * 64}, backend="filehash", model="/m.gguf")
    cache.close()
    assert run_cli("cache", "verify").output == "checked 7 entries: all readable\n"

    directory = tmp_path / "cache"
    with sqlite3.connect(directory / "cache.db") as db:
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", ("{not json", "b" * 64))
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", ('{"value": {"txt": 1}}', "c" * 64))
        (filename,) = db.execute("SELECT filename FROM Cache WHERE key = ?", ("f" * 64,)).fetchone()
    (directory / filename).unlink()
    result = run_cli("cache", "verify", "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 1
    assert result.output == (
        "checked 7 entries: 3 broken\n"
        f"  {'b' * 64}: is not a JSON value\n"
        f"  {'c' * 64}: not a gasus cache entry: value.text: Field required\n"
        f"  {'f' * 64}: its value file is missing\n")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["items"], summary["broken"][0]) == (7, {"key": "b" * 64, "problem": "is not a JSON value"})
    assert Cache().get("a" * 64) == good  # verifying changes nothing


def test_a_claimed_request_is_waited_for_and_a_dead_holders_claim_lapses(tmp_path):
    """Issue 11 item 4: a request another live run has claimed is read from the cache once that run
    answers, never sent again; the claim of a run that died is taken over at once."""
    import socket
    import subprocess
    import sys
    import threading

    requests = [Request.chat([{"role": "user", "content": p}], max_tokens=4) for p in "ab"]
    other = CachedModel(Scripted({}), Cache())
    key_a, key_b = (other.key(r) for r in requests)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = Cache()
    assert store.claim([key_a], "live-run") == {key_a: "ours"}  # a live run of this process
    store._store.set("claim:" + key_b, {"value": {"pid": dead.pid, "host": socket.gethostname(), "token": "dead"},
                                        "backend": "claim", "model": "", "created": 0.0})

    def live_run_answers():
        time.sleep(0.3)
        store.put(key_a, {"text": "5"}, backend="scripted")
        store.release([key_a], "live-run")

    threading.Thread(target=live_run_answers).start()
    backend = Scripted({"a": "1", "b": "2"})
    model = CachedModel(backend, Cache())
    results = model.run(requests)
    assert [(r.value["text"], r.cached) for r in results] == [("5", True), ("2", False)]
    assert backend.calls == ["b"]
    assert (model.stats.model_calls, model.stats.cache_hits) == (1, 1)
    assert [k for k in Cache()._store.iterkeys() if k.startswith("claim:")] == []  # every claim released
    assert Cache().claim([key_a, key_b], "later") == {key_a: "cached", key_b: "cached"}


def test_a_dir_another_process_is_marking_opens(tmp_path):
    """Two processes opening one new cache dir: what the other writes before its marker lands
    (the marker's temporary file, its write probe) is not taken for foreign files."""
    from gasus.cache import MARKER, prepare_cache_dir

    d = tmp_path / "c"
    d.mkdir()
    (d / f".{MARKER}.4242.tmp").write_text("")
    (d / ".write-probe-4242").write_text("")
    assert prepare_cache_dir(d) == d
    assert json.loads((d / MARKER).read_text()) == {"gasus_cache": 2}
    (d / "notes.txt").write_text("mine")
    (d / MARKER).unlink()
    with pytest.raises(CacheError, match="not a gasus cache"):
        prepare_cache_dir(d)


def test_cache_import_refuses_a_reasoning_of_5_and_a_cached_one_is_a_clear_error(tmp_path):
    """Review item 10: every field gasus reads back from a cached value has its type checked: import
    refuses `"reasoning": 5`, verify reports it, and a grade reading such an entry stops with one line."""
    from gasus.backends.replay import ReplayBackend
    from gasus.grade import grade_request, grading_prompt
    from gasus.records import Example

    cache = Cache()
    key = "3" * 64
    f = tmp_path / "in.jsonl"
    for value, message in [
        ({"text": "4", "reasoning": 5}, "value.reasoning: Input should be a valid string"),
        ({"text": "4", "served_model": ["m"]}, "value.served_model: Input should be a valid string"),
        ({"text": "4", "system_fingerprint": 7}, "value.system_fingerprint: Input should be a valid string"),
        ({"text": "4", "finish_reason": 1}, "value.finish_reason: Input should be a valid string"),
        ({"text": "4", "usage": {"completion_tokens": True}}, "value.usage.completion_tokens: Input should be a valid integer"),
    ]:
        f.write_text(_export_line(key, value))
        with pytest.raises(BadInputError) as err:
            cache.import_(f)
        assert str(err.value) == f"{f}: line 1: not a gasus cache entry: {message}"
    assert len(cache) == 0

    example = Example(0, "Say four.", "", "4")
    prompt = grading_prompt("accuracy")
    replay = tmp_path / "replay.jsonl"
    replay.write_text(json.dumps({"messages": prompt.messages(example), "text": "4\nRight."}) + "\n")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": example.instruction, "output": example.output}) + "\n")
    out = tmp_path / "scores.jsonl"
    assert run_cli("grade", str(data), "-o", str(out), "--grader", f"replay:{replay}").exit_code == 0
    model = CachedModel(ReplayBackend(str(replay)), cache)
    graded = model.key(grade_request(prompt, example, "generate"))
    cache.put(graded, {"text": "4\nRight.", "reasoning": 5}, backend="replay", model="m")
    cache.close()

    entries = len(Cache())  # with the replay file's hash memo once the file is old enough to be memoised
    result = run_cli("cache", "verify")
    checked = "1 entry" if entries == 1 else f"{entries} entries"
    assert (result.exit_code, result.output) == (1, f"checked {checked}: 1 broken\n"
                                                 f"  {graded}: not a gasus cache entry: value.reasoning: "
                                                 "Input should be a valid string\n")
    for rerun in ([], ["--retry-failed"]):
        result = run_cli("grade", str(data), "-o", str(out), "--grader", f"replay:{replay}", *rerun)
        assert (result.exit_code, result.output) == (2, (
            f"Error: {tmp_path / 'cache'}: entry {graded[:16]}… has a reasoning that is not a string, which gasus "
            "cannot read back; `gasus cache verify` lists such entries and `gasus cache migrate` drops them\n"))
    with pytest.raises(CacheError, match="has a reasoning that is not a string"):
        Cache().get(graded)
    assert run_cli("cache", "migrate").exit_code == 0
    assert graded not in Cache()  # dropped; the memos are dropped too, recomputed on use
    assert run_cli("grade", str(data), "-o", str(out), "--grader", f"replay:{replay}").exit_code == 0
    entries = len(Cache())
    assert run_cli("cache", "verify").output == (f"checked {entries} entries: all readable\n" if entries != 1
                                                 else "checked 1 entry: all readable\n")
    assert [(r["score"], r["reasoning"]) for r in map(json.loads, out.read_text().splitlines())] == [(4.0, None)]


def test_cache_import_over_an_entry_that_is_not_an_object_is_a_conflict_and_reading_it_a_clear_error(tmp_path):
    """Review item 10, an entry already in the cache: a stored list is never indexed as an entry."""
    import sqlite3

    key = "4" * 64
    cache = Cache()
    cache.put(key, {"text": "4"}, backend="openai", model="m")
    cache.close()
    with sqlite3.connect(tmp_path / "cache" / "cache.db") as db:
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", ("[1, 2]", key))
    with pytest.raises(CacheError) as err:
        Cache().get(key)
    assert str(err.value) == (f"{tmp_path / 'cache'}: entry {key[:16]}… is not a model call's entry, which gasus "
                              "cannot read back; `gasus cache verify` lists such entries and `gasus cache migrate` drops them")
    f = tmp_path / "in.jsonl"
    f.write_text(_export_line(key, {"text": "5"}))
    report = Cache().import_(f)
    assert (report.read, report.added, report.unchanged, report.replaced, report.conflicts) == (1, 0, 0, 0, [key])
    assert Cache().import_(f, overwrite=True).replaced == 1
    assert Cache().get(key) == {"text": "5"}
