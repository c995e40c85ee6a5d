"""Selection speed on the 9,229-example Alpaca sample: wall time of whole CLI runs, start-up included.

Target (issue 2): `gasus select --threshold 4.5` and a 5-threshold `--sweep` each under 1 s.
Prints each run's wall time and its ratio to a bare `python -c pass` measured in the same run.
Without the sample (../shared), it times the same commands on as many generated Alpaca-shaped
rows, and says so; a command that fails stops the bench with its error and exit status 1.

    .venv/bin/python bench/select_speed.py [--repeat 5] [--data FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "alpagasus" / "alpaca_random_9k.json"
ROWS = 9229  # the sample's size; generated rows stand in for it without ../shared
SWEEP = "3,3.5,4,4.5,5"  # five thresholds, all on the 0-5 scale


class CommandFailed(Exception):
    pass


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        # the gasus of this tree, not whichever one the environment installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()[-1]
            raise CommandFailed(f"{' '.join(cmd[3:] if cmd[1:3] == ['-m', 'gasus'] else cmd)} "
                                f"exited {done.returncode}: {said}")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from gasus.io import load_examples

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.data.exists():
            print(f"{args.data} not found: timing {ROWS} generated rows instead")
            args.data = Path(tmp) / "generated.json"
            args.data.write_text(json.dumps([{"instruction": f"Task {i}: {rng.random():.6f}", "input": "",
                                              "output": f"Answer {i}."} for i in range(ROWS)]))
        examples = load_examples(args.data)
        scores = Path(tmp) / "scores.jsonl"
        with scores.open("w") as handle:
            for e in examples:
                s = rng.choice([2.0, 3.0, 3.5, 4.0, 4.0, 4.5, 4.5, 5.0])
                handle.write(json.dumps({"id": e.id, "index": e.index, "score": s, "status": "ok",
                                         "grader": "synthetic", "dimension": "accuracy", "mode": "generate",
                                         "raw": f"{s}\nSynthetic.", "probs": None}) + "\n")
        gasus = [sys.executable, "-m", "gasus"]
        try:
            rows = _time(gasus, args, scores, tmp)
        except CommandFailed as exc:
            print(f"failed: {exc}")
            return 1
    base = rows[0][1]
    print(f"{len(examples)} examples, median of {args.repeat} runs each")
    print(f"{'run':34} {'wall s':>8} {'x python start':>15} {'< 1 s':>6}")
    for name, seconds in rows:
        print(f"{name:34} {seconds:8.3f} {seconds / base:15.1f} {'yes' if seconds < 1 else 'NO':>6}")
    return 0


def _time(gasus: list[str], args: argparse.Namespace, scores: Path, tmp: str) -> list[tuple[str, float]]:
    return [
        ("python -c pass", wall([sys.executable, "-c", "pass"], args.repeat)),
        ("gasus --help", wall([*gasus, "--help"], args.repeat)),
        ("select --threshold 4.5", wall([*gasus, "select", str(args.data), str(scores), "--threshold", "4.5",
                                         "-o", str(Path(tmp) / "kept.json")], args.repeat)),
        (f"select --sweep {SWEEP}", wall([*gasus, "select", str(args.data), str(scores), "--sweep", SWEEP],
                                         args.repeat)),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
