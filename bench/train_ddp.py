"""Training speed of one process against two (or more) on the same steps, through torchrun.

Runs `torchrun --standalone --nproc_per_node P -m gasus train` for each P with the same data,
global batch, seed and steps (the global batch split as per-device batch x accumulation x P),
and prints wall time, training time, tokens and tokens per second side by side, from each
run's manifest.json, with the losses of the last step (they agree up to float rounding).

    .venv/bin/python bench/train_ddp.py                       # 1 vs 2 CPU processes, 1 thread each
    .venv/bin/python bench/train_ddp.py --processes 1 2 4 --steps 8 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "fixtures" / "mini_alpaca.json"),
                        help="Alpaca-format examples, cycled when --n is larger than the file")
    parser.add_argument("--n", type=int, default=32, help="examples to train on")
    parser.add_argument("--base", default=None, help="base model (default: the embedded SmolLM2-135M GGUF)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--batch-size", type=int, default=4, help="global batch (must divide by every count)")
    parser.add_argument("--per-device-batch-size", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps in each run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = parser.parse_args()

    from gasus.io import load_examples

    pool = load_examples(args.data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gasus-bench-ddp-") as tmp:
        data = Path(tmp) / "data.json"
        data.write_text(json.dumps([{"instruction": e.instruction, "input": e.input, "output": e.output}
                                    for e in itertools.islice(itertools.cycle(pool), args.n)]))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        for processes in args.processes:
            out = Path(tmp) / f"p{processes}"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                       str(processes), "-m", "gasus", "train", str(data), "-o", str(out), "--preset", "cpu-smoke",
                       "--batch-size", str(args.batch_size), "--per-device-batch-size", str(args.per_device_batch_size),
                       "--max-length", str(args.max_length), "--max-steps", str(args.steps), "--precision", "fp32"]
            if args.base:
                command += ["--base", args.base]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - started
            if done.returncode:
                sys.exit(f"{processes} processes failed:\n{done.stderr[-3000:]}")
            manifest = json.loads((out / "manifest.json").read_text())
            run, train = manifest["run"], manifest["train"]
            rows.append({"processes": processes,
                         "split": f"{run['per_device_batch_size']}x{run['gradient_accumulation_steps']}x{processes}",
                         "steps": train["steps"], "tokens": train["tokens"], "train_seconds": train["train_seconds"],
                         "launch_wall_seconds": round(wall, 2), "tokens_per_second": train["tokens_per_second"],
                         "last_loss": train["loss_history"][-1]["loss"]})

    print(f"{args.n} examples, global batch {args.batch_size}, max length {args.max_length}, {args.steps} steps, "
          f"{args.threads} torch thread(s) per process, {os.cpu_count()} CPUs")
    print(f"{'':>26}" + "".join(f"{str(r['processes']) + ' proc':>14}" for r in rows))
    for key, label in (("split", "batch x accum x procs"), ("steps", "optimizer steps"), ("tokens", "tokens trained"),
                       ("train_seconds", "training time (s)"), ("launch_wall_seconds", "wall time, launch (s)"),
                       ("tokens_per_second", "tokens / s"), ("last_loss", "loss at the last step")):
        cells = "".join(f"{r[key]:>14.4f}" if key == "last_loss" else f"{r[key]!s:>14}" for r in rows)
        print(f"{label:>26}{cells}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
