"""Million-row scale: whole-process wall time and peak memory of select, a 5-threshold sweep,
agree against labels and a fully cached grade rerun, on a synthetic Alpaca-shaped dataset.

Targets (issue 13) for 1,000,000 rows on 2 cores: select and the sweep each under 10 s, the
cached grade rerun under 60 s with 0 model calls, peak memory under 2 GB, no stage worse than
linear. Each time is printed per million rows and as a ratio to a bare
`python -c "import json; json.load(...)"` of the same dataset, measured in the same run; a
second, smaller size (--small, default a tenth) gives each stage's growth ratio
(time per row at N over time per row at the small size: 1.0 is linear).

    .venv/bin/python bench/scale.py [--rows 1000000] [--small 100000] [--skip-grade]

The data, scores, labels and cache are made in a temporary dir (about 1 GB at 1M rows); the
cache is filled directly (one grade per distinct example, keyed as `gasus grade --grader
replay:FILE` keys it), so the rerun is answered from the cache alone (`--offline`).

Peak memory is given twice: the kernel's peak of the command's own process ("peak MB"), and the
peak of it and its child processes together, sampled every 20 ms ("all procs"): `select` and
`agree` read one input in a forked child while the parent reads the other (gasus.ahead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the a of to and in is for that with on as be by this are from or an it at can which your you "
         "data model write explain list describe give three reasons example sentence summary poem story "
         "water energy climate history science music language computer network health food travel city").split()
NON_ASCII = ("café", "naïve", "résumé", "東京", "数据", "😀")  # in about 2% of texts, as in Alpaca-style sets
SCORES = (2.0, 3.0, 3.5, 4.0, 4.0, 4.5, 4.5, 5.0)
THRESHOLDS = "3,3.5,4,4.5,5"
FILES = (("data", "json"), ("scores", "jsonl"), ("labels", "jsonl"), ("replay", "jsonl"))


def text(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    if rng.random() < 0.02:
        words.append(rng.choice(NON_ASCII))
    return " ".join(words).capitalize() + "."


def make_data(workdir: Path, n: int) -> dict[str, Path]:
    """The dataset (a JSON array), its scores, keep labels and a cache holding every grade."""
    from gasus.backends import CachedModel
    from gasus.backends.replay import ReplayBackend
    from gasus.cache import Cache
    from gasus.grade import grade_request, grading_prompt
    from gasus.records import Example, example_id

    rng = random.Random(n)
    paths = {name: workdir / f"{name}.{suffix}" for name, suffix in FILES}
    rows = []
    for _ in range(n):
        rows.append({"instruction": text(rng, 5, 15), "input": text(rng, 3, 20) if rng.random() < 0.4 else "",
                     "output": text(rng, 10, 80)})
    paths["data"].write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    prompt = grading_prompt("accuracy")
    # One recorded line: the rerun never reads it (every answer is cached), but its hash names the model.
    first = Example(0, rows[0]["instruction"], rows[0]["input"], rows[0]["output"])
    paths["replay"].write_text(json.dumps({"messages": prompt.messages(first), "text": "5"}) + "\n")
    cache = Cache(workdir / "cache")
    model = CachedModel(ReplayBackend(str(paths["replay"])), cache)
    with open(paths["scores"], "w") as scores, open(paths["labels"], "w") as labels:
        for start in range(0, n, 20_000):
            with cache._store.transact():  # one transaction per block, not per entry
                for i in range(start, min(n, start + 20_000)):
                    row = rows[i]
                    score = SCORES[i * 7 % len(SCORES)]
                    status = "ok" if i % 97 else "unparsed"
                    raw = f"{score:g}\nSynthetic explanation."
                    example = Example(i, row["instruction"], row["input"], row["output"])
                    cache.put(model.key(grade_request(prompt, example, "generate")), {"text": raw},
                              backend="replay", model="bench")
                    scores.write(json.dumps({
                        "id": example_id(row["instruction"], row["input"], row["output"]), "index": i,
                        "score": score if status == "ok" else None, "status": status, "grader": "synthetic",
                        "dimension": "accuracy", "mode": "generate", "raw": raw, "probs": None}) + "\n")
                    labels.write(json.dumps({"index": i, "kept_by_bench": (i * 13) % 5 < 2}) + "\n")
    cache.close()
    return paths


PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants now (Linux /proc; 0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak resident MB of the process, peak resident MB of it and its children
    together) of one whole command. The first is the kernel's; the second is sampled every 20 ms,
    as a select reads its scores in a second process while it reads the dataset."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read().decode() if proc.stderr else ""  # read as it comes: a full pipe would block it
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, peak[0] / 2**20


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def run_size(n: int, skip_grade: bool, only: list[str]) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="gasus-scale-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        # made in a child process: a child's peak memory counts its parent's at the moment it starts
        subprocess.run([sys.executable, __file__, "--make", str(n), str(workdir)], check=True)
        paths = {name: workdir / f"{name}.{suffix}" for name, suffix in FILES}
        print(f"{n:,} rows: data, scores, labels and cache made in {time.perf_counter() - started:.0f} s "
              f"({paths['data'].stat().st_size / 1e6:.0f} MB dataset)", flush=True)
        env = {**os.environ, "GASUS_CACHE_DIR": str(workdir / "cache"), "PYTHONPATH": str(ROOT)}
        gasus = [sys.executable, "-m", "gasus"]
        # names relative to the work dir: outputs (the grader's label) are the same whichever the dir
        data, scores = "data.json", "scores.jsonl"
        runs = {
            "json.load (baseline)": [sys.executable, "-c", f"import json; json.load(open({data!r}, encoding='utf-8'))"],
            "select --threshold 4.5": [*gasus, "select", data, scores, "--threshold", "4.5", "--max-rows", "0",
                                       "-o", "kept.json"],
            f"select --sweep {THRESHOLDS}": [*gasus, "select", data, scores, "--sweep", THRESHOLDS, "--max-rows", "0"],
            "agree (labels)": [*gasus, "agree", scores, "labels.jsonl"],
        }
        if not skip_grade:
            runs["grade (cached rerun)"] = [*gasus, "grade", data, "-o", "rescored.jsonl", "--grader",
                                            "replay:replay.jsonl", "--offline", "--max-rows", "0",
                                            "--summary-json", "grade.json"]
        if only:  # the baseline, and the stages named
            runs = {name: cmd for name, cmd in runs.items() if name.startswith(("json.load", *only))}
        results = {}
        for name, cmd in runs.items():
            results[name] = timed(cmd, env, workdir)
            print(f"  {name}: {results[name][0]:.2f} s, {results[name][1]:.0f} MB "
                  f"({results[name][2]:.0f} MB with its child processes)", flush=True)
        outputs = [(path.name, path) for path in (workdir / "kept.json",) if path.exists()]
        if "grade (cached rerun)" in runs:
            summary = json.loads((workdir / "grade.json").read_text())
            print(f"  grade rerun: {summary['model_calls']} model calls, {summary['cache_hits']} cache hits")
            outputs.append(("rescored.jsonl", workdir / "rescored.jsonl"))
        print("  output sha256: " + ", ".join(f"{name} {digest(path)}" for name, path in outputs))
    return results


def main() -> int:
    if sys.argv[1:2] == ["--make"]:
        make_data(Path(sys.argv[3]), int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large size")
    parser.add_argument("--small", type=int, default=None, help="rows of the small size  [default: rows / 10]")
    parser.add_argument("--skip-grade", action="store_true", help="leave out the cached grade rerun")
    parser.add_argument("--only", nargs="*", default=[], help="run only these stages (select, agree, grade)")
    args = parser.parse_args()
    small = args.small or max(1, args.rows // 10)
    sizes = {n: run_size(n, args.skip_grade, args.only) for n in (small, args.rows)}
    print()
    print(f"{'stage':32} {'rows':>10} {'wall s':>8} {'s per 1M':>9} {'x json.load':>12} {'peak MB':>8} "
          f"{'all procs':>9} {'growth':>7}")
    for n, results in sizes.items():
        base = results["json.load (baseline)"][0]
        for name, (seconds, mb, tree_mb) in results.items():
            growth = ""
            if n == args.rows and small != args.rows:
                growth = f"{(seconds / n) / (sizes[small][name][0] / small):.2f}"
            print(f"{name:32} {n:>10,} {seconds:8.2f} {seconds * 1e6 / n:9.1f} {seconds / base:12.1f} "
                  f"{mb:8.0f} {tree_mb:9.0f} {growth:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
