"""Audit speed: `gasus check` of 52,002 Alpaca-shaped rows against the paper's four test sets.

Target (issue 12): under a minute on 2 cores, start-up and reading included. Stanford Alpaca's
52,002 rows are not kept here, so they are built deterministically from the 9,229-row sample:
the sample once as it is, then copies whose output has one word reversed per copy (seeded), so
the rows differ and the length profile is Alpaca's. The four real test sets come from
../shared/data. Prints the wall time of the whole CLI run (median of --repeat) and the counts.

    .venv/bin/python bench/check_speed.py [--repeat 1] [--self]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "alpagasus"
ROWS = 52_002


def alpaca_52k(sample: list[dict], rows: int = ROWS, seed: int = 0) -> list[dict]:
    """The sample, then perturbed copies of it, up to `rows` rows."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        row = dict(sample[i % len(sample)])
        if i >= len(sample):
            output = row["output"].split(" ")
            j = rng.randrange(len(output))
            output[j] = output[j][::-1]
            row["output"] = " ".join(output)
        out.append(row)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "alpaca_random_9k.json")
    parser.add_argument("--testsets-dir", type=Path, default=SHARED / "test_sets")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--self", dest="self_check", action="store_true",
                        help="Also time --self (near-duplicate groups; the perturbed copies all group).")
    args = parser.parse_args()
    if not args.data.exists() or not args.testsets_dir.is_dir():
        print(f"skipped: {args.data} or {args.testsets_dir} not found")
        return 0
    sample = json.loads(args.data.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        data, report = Path(tmp) / "alpaca_52k.json", Path(tmp) / "audit.json"
        data.write_text(json.dumps(alpaca_52k(sample), ensure_ascii=False), encoding="utf-8")
        cmd = [sys.executable, "-m", "gasus", "check", str(data), "--testsets-dir", str(args.testsets_dir),
               "-o", str(report)] + (["--self"] if args.self_check else [])
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            times.append(time.perf_counter() - start)
            if done.returncode not in (0, 1):
                print(done.stderr)
                return 1
        summary = json.loads(report.read_text())["summary"]
    print(f"gasus check, {ROWS:,} rows x 4 test sets{' + --self' if args.self_check else ''}: "
          f"{statistics.median(times):.1f} s (median of {args.repeat}; target < 60 s)")
    print(f"exact hits {summary['exact_hits']}, near hits {summary['near_hits']}, "
          f"contaminated rows {summary['contaminated_rows']}, duplicate groups {summary['duplicate_groups']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
