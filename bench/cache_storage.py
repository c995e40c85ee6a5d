"""The cache's storage, JSON values (now) against pickled values (diskcache's default Disk, before
issue 18), side by side in one run: a fully cached rerun of grading the 9,229-example Alpaca sample.

    .venv/bin/python bench/cache_storage.py [--repeat 5]

Both caches hold the same 9,229 entries (filled once through a replay file). Each repeat grades
all examples again from each cache in turn, in-process (no start-up), and reads every entry
once; prints the medians, the JSON/pickle ratios (goal: about 1.0x, the security fix costs no
speed) and each cache's size on disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import diskcache  # noqa: E402

from gasus.backends import CachedModel  # noqa: E402
from gasus.backends.replay import ReplayBackend  # noqa: E402
from gasus.cache import Cache  # noqa: E402
from gasus.grade import grade_examples, grading_prompt  # noqa: E402
from gasus.io import load_examples  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "alpagasus" / "alpaca_random_9k.json"


class PickleCache(Cache):
    """The storage gasus used before: diskcache's default Disk, which pickles every dict value."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.broken = []
        self._store = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62)


def rerun(examples, replay: Path, cache: Cache) -> float:
    model = CachedModel(ReplayBackend(str(replay)), cache)
    started = time.perf_counter()
    grades = grade_examples(examples, model, prompt=grading_prompt("accuracy"))
    seconds = time.perf_counter() - started
    assert model.stats.model_calls == 0 and len(grades) == len(examples), model.stats
    return seconds


def read_all(cache: Cache, keys: list[str]) -> float:
    started = time.perf_counter()
    for key in keys:
        assert cache.get(key) is not None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed reruns per storage")
    args = parser.parse_args()

    examples = load_examples(DATA)
    prompt = grading_prompt("accuracy")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        replay = work / "replay.jsonl"
        with open(replay, "w") as handle:
            for e in examples:
                text = f"{(e.index * 7) % 11 / 2:g}\nRecorded explanation."
                handle.write(json.dumps({"messages": prompt.messages(e), "text": text}) + "\n")
        new = Cache(work / "json")
        filled = CachedModel(ReplayBackend(str(replay)), new)
        grade_examples(examples, filled, prompt=prompt)
        old = PickleCache(work / "pickle")
        keys = []
        for key, entry in new.entries():
            old._store.set(key, entry)
            keys.append(key)

        times: dict[str, list[float]] = {"json rerun": [], "pickle rerun": [], "json read": [], "pickle read": []}
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            times["pickle rerun"].append(rerun(examples, replay, old))
            times["json rerun"].append(rerun(examples, replay, new))
            times["pickle read"].append(read_all(old, keys))
            times["json read"].append(read_all(new, keys))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{len(examples)} examples, {len(keys)} cache entries, median of {args.repeat} runs each")
        for what in ("rerun", "read"):
            label = "cached grade rerun" if what == "rerun" else "get() of every entry"
            print(f"{label:>22}: json {med['json ' + what]:.3f} s, pickle {med['pickle ' + what]:.3f} s, "
                  f"json/pickle {med['json ' + what] / med['pickle ' + what]:.2f}x")
        print(f"{'size on disk':>22}: json {new._store.volume() / 1e6:.1f} MB, "
              f"pickle {old._store.volume() / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
