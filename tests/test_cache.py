"""The content-addressed cache: keys, round trips, export/import, and unusable directories."""

from __future__ import annotations

import json
import os
import time

import pytest

from gasus.backends.base import Backend, CachedModel, Request, TransientError
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
        cache.put(f"k{i}", {"text": str(i)}, backend="openai" if i % 2 else "llamacpp", model="m")
    out = tmp_path / "export.jsonl"
    assert cache.export(out) == 5
    assert cache.clear() == 5
    assert all(cache.get(f"k{i}") is None for i in range(5))
    assert cache.import_(out) == 5
    assert [cache.get(f"k{i}")["text"] for i in range(5)] == ["0", "1", "2", "3", "4"]
    assert cache.stats()["by_backend"] == {"llamacpp": 3, "openai": 2}


def test_import_rejects_foreign_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"key": "k", "entry": {"value": {}}}) + "\n" + json.dumps({"x": 1}) + "\n")
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
    Cache().put("k", {"text": "5"}, backend="llamacpp", model="m")
    out = tmp_path / "e.jsonl"
    assert "exported 1 entries" in run_cli("cache", "export", str(out)).output
    assert "cleared 1 entries" in run_cli("cache", "clear", "--yes").output
    assert Cache().get("k") is None
    result = run_cli("cache", "import", str(out), "--summary-json", str(tmp_path / "s.json"))
    assert "imported 1 entries" in result.output
    assert Cache().get("k") == {"text": "5"}
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
    monkeypatch.setattr(base.hashlib, "sha256", None)
    assert base.file_sha256(model, cache) == expected


def test_a_file_written_just_now_is_hashed_again(tmp_path):
    """Within the kernel's ctime tick a rewrite may keep every stat field: such a file is never memoised."""
    import gasus.backends.base as base

    cache = Cache()
    model = tmp_path / "model.bin"
    model.write_bytes(b"x")
    base.file_sha256(model, cache)
    assert [k for k, _ in cache.entries() if k.startswith("filehash:")] == []
