"""Training speed at the paper's data ratio, at small scale.

AlpaGasus trains on 9,229 of Alpaca's 52,002 examples (5.6x fewer) and reports 14 minutes
against 80 for the 7B model on 4 A100s (5.7x). This runs `gasus.train.train` on N and N/5.7
examples with the same settings, one after the other in one process, and prints wall time,
training time and tokens per second for both, and their ratios side by side.

    .venv/bin/python bench/train_speed.py                 # N=40, the embedded model, CPU
    .venv/bin/python bench/train_speed.py --n 200 --threads 2
    .venv/bin/python bench/train_speed.py --n 2000 --base DIR --packing   # on a GPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAPER_RATIO = 80 / 14  # the paper's 7B wall times: 52k examples vs 9k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "fixtures" / "mini_alpaca.json"),
                        help="Alpaca-format examples, cycled when N is larger than the file")
    parser.add_argument("--n", type=int, default=40, help="examples in the large run; the small one has N/5.7")
    parser.add_argument("--base", default=None, help="base model (default: the embedded SmolLM2-135M GGUF)")
    parser.add_argument("--batch-size", type=int, default=4, help="global batch")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--packing", action="store_true", help="pack examples into max-length rows without padding")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    from gasus.cli.train import quiet_libraries
    from gasus.io import load_examples
    from gasus.records import Example
    from gasus.train import TrainConfig, detect_hardware, train

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_libraries()
    pool = load_examples(args.data)
    sizes = [args.n, max(1, round(args.n / PAPER_RATIO))]
    # The 7B recipe (lr 2e-5, 3% warmup, cosine) at a size a CPU finishes.
    config = TrainConfig.from_preset("alpagasus-7b", epochs=args.epochs, batch_size=args.batch_size,
                                     max_length=args.max_length, precision=args.precision, packing=args.packing)
    hardware = detect_hardware()
    print(f"device: {hardware['device']} ({hardware['name']}), torch threads: {torch.get_num_threads()}, "
          f"batch {args.batch_size}, max length {args.max_length}, epochs {args.epochs}, "
          f"packing {'on' if args.packing else 'off'}")

    rows = []
    with tempfile.TemporaryDirectory(prefix="gasus-bench-") as tmp:
        for n in sizes:
            examples = [Example(i, e.instruction, e.input, e.output)
                        for i, e in enumerate(itertools.islice(itertools.cycle(pool), n))]
            result = train(examples, config, Path(tmp) / f"n{n}", base=args.base)
            run = result.manifest["train"]
            rows.append({"examples": n, "steps": run["steps"], "tokens": run["tokens"],
                         "train_seconds": run["train_seconds"], "wall_seconds": run["wall_seconds"],
                         "tokens_per_second": run["tokens_per_second"], "precision": result.manifest["run"]["precision"]})

    large, small = rows
    print(f"{'':>22}{'N':>12}{'N/5.7':>12}{'ratio':>10}")
    for key, label in (("examples", "examples"), ("steps", "optimizer steps"), ("tokens", "tokens trained"),
                       ("train_seconds", "training time (s)"), ("wall_seconds", "wall time (s)"),
                       ("tokens_per_second", "tokens / s")):
        a, b = large[key], small[key]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{label:>22}{a:>12}{b:>12}{ratio:>10}")
    print(f"paper (7B, 4x A100): 80 min on 52k vs 14 min on 9k, ratio {PAPER_RATIO:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"hardware": hardware, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
