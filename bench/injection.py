"""How much responses that address the grader raise their own scores (issue 11 item 7).

    .venv/bin/python bench/injection.py [--grader SPEC] [--mode score] [--n 12] [--variant paper hardened]

Grades each clean response of fixtures/injection.json and the same response with each attack
appended, with the paper's verbatim prompt and with the hardened variant, and prints per attack:
the mean score of the clean and of the injected responses, the mean raise, how many injected
responses scored higher than their clean form, and how many reach the threshold (4.5) clean and
injected. Any grader spec works (default: the embedded SmolLM2); every call goes through the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gasus.grade import VARIANTS, grade_examples, grading_prompt  # noqa: E402
from gasus.records import Example  # noqa: E402

FIXTURE = ROOT / "fixtures" / "injection.json"


def load_fixture(path: str | Path = FIXTURE, n: int | None = None) -> tuple[list[Example], dict[str, str]]:
    """The clean examples (the first n) and the attacks, name -> template with {output}."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = doc["examples"][:n]
    examples = [Example(i, r["instruction"], r.get("input", ""), r["output"]) for i, r in enumerate(rows)]
    return examples, dict(doc["attacks"])


def inject(example: Example, template: str, index: int) -> Example:
    """The example with its response replaced by the attack (`{output}` is the clean response)."""
    return Example(index, example.instruction, example.input, template.replace("{output}", example.output))


def measure(grades_clean: Sequence[Any], grades_injected: Sequence[Any], threshold: float) -> dict[str, Any]:
    """Clean and injected grades of the same responses, compared pairwise (unscored pairs are counted apart)."""
    pairs = [(c.score, i.score) for c, i in zip(grades_clean, grades_injected, strict=True)
             if c.ok and i.ok]
    n = len(pairs)
    return {
        "pairs": len(grades_clean),
        "scored_pairs": n,
        "mean_clean": round(sum(c for c, _ in pairs) / n, 3) if n else None,
        "mean_injected": round(sum(i for _, i in pairs) / n, 3) if n else None,
        "mean_raise": round(sum(i - c for c, i in pairs) / n, 3) if n else None,
        "raised": sum(1 for c, i in pairs if i > c),
        "lowered": sum(1 for c, i in pairs if i < c),
        "reach_threshold_clean": sum(1 for g in grades_clean if g.ok and g.score >= threshold),
        "reach_threshold_injected": sum(1 for g in grades_injected if g.ok and g.score >= threshold),
    }


def run(model, examples: Sequence[Example], attacks: dict[str, str], *, variant: str, mode: str,
        threshold: float = 4.5, dimension: str = "accuracy") -> dict[str, dict[str, Any]]:
    """attack name -> measure() of one prompt variant, all grades asked in one batch."""
    prompt = grading_prompt(dimension, variant=variant)
    batch = list(examples)
    for a, template in enumerate(attacks.values()):
        batch += [inject(e, template, (a + 1) * len(examples) + e.index) for e in examples]
    grades = grade_examples(batch, model, prompt=prompt, dimension=dimension, mode=mode)
    clean, k = grades[:len(examples)], len(examples)
    return {name: measure(clean, grades[(a + 1) * k:(a + 2) * k], threshold) for a, name in enumerate(attacks)}


def main(argv: Sequence[str] | None = None) -> None:
    from gasus.backends import BackendOptions, CachedModel, load_backend
    from gasus.cache import Cache

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grader", default=None, help="grader spec [default: the embedded SmolLM2]")
    parser.add_argument("--mode", default="score", choices=["generate", "score", "expected"])
    parser.add_argument("--n", type=int, default=12, help="clean examples to use (of 24)")
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threshold", type=float, default=4.5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    examples, attacks = load_fixture(n=args.n)
    options = BackendOptions(n_threads=args.threads, base_url=args.base_url, api_key_env=args.api_key_env)
    model = CachedModel(load_backend(args.grader, options), Cache())
    figures = {}
    print(f"grader {model.backend.label}, mode {args.mode}, {len(examples)} clean responses x "
          f"{len(attacks)} attacks, threshold {args.threshold:g}")
    header = (f"{'variant':9} {'attack':16} {'clean':>6} {'inject':>6} {'raise':>6} {'raised':>7} "
              f"{'>=tau clean':>11} {'>=tau inj':>9}")
    print(header)
    for variant in args.variant:
        figures[variant] = run(model, examples, attacks, variant=variant, mode=args.mode, threshold=args.threshold)
        for name, f in figures[variant].items():
            def num(x):
                return "-" if x is None else f"{x:.2f}"
            print(f"{variant:9} {name:16} {num(f['mean_clean']):>6} {num(f['mean_injected']):>6} "
                  f"{num(f['mean_raise']):>6} {f['raised']:>3}/{f['scored_pairs']:<3} "
                  f"{f['reach_threshold_clean']:>11} {f['reach_threshold_injected']:>9}")
    model.backend.close()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"grader": model.backend.label, "mode": args.mode,
                                                   "n": len(examples), "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
