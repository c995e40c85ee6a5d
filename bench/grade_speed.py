"""Grading speed of the embedded SmolLM2-135M per mode, the prompt-evaluation bound, a fully
cached rerun over all 9,229 examples, and the embedded grader's agreement with Claude's labels.

    .venv/bin/python bench/grade_speed.py [--n 50] [--generate-n 50] [--agree-n 200] [--threads N]

Prints examples/s for generate, score and expected (each from an empty cache), the speed-ups
over generate (goal: >= 5x), expected's time over the prompt-evaluation bound (unique prompt
tokens / the model's measured prompt-evaluation rate; goal: <= 1.3x), the wall time of a
`gasus grade` rerun over 9,229 examples answered from the cache (goal: < 3 s), and ROC AUC
and F1 of the embedded grader against Claude's keep labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gasus.agree import agree  # noqa: E402
from gasus.backends import BackendOptions, CachedModel, embedded_model_path  # noqa: E402
from gasus.backends.llamacpp import LlamaCppBackend  # noqa: E402
from gasus.cache import Cache  # noqa: E402
from gasus.grade import grade_examples, grade_request, grading_prompt, write_scores  # noqa: E402
from gasus.io import load_examples  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "alpagasus"


def unique_prompt_tokens(backend: LlamaCppBackend, requests) -> tuple[int, int]:
    """(all prompt tokens, tokens not shared with the previous prompt's prefix)."""
    total = unique = 0
    previous: list[int] = []
    for request in requests:
        tokens = backend.prompt_tokens_of(request)
        shared = backend.llm.longest_token_prefix(previous, tokens)
        total += len(tokens)
        unique += len(tokens) - min(shared, len(tokens) - 1)
        previous = tokens
    return total, unique


def prompt_eval_rate(backend: LlamaCppBackend, requests) -> float:
    """Tokens per second of plain prompt evaluation (fresh context, llama-cpp-python's own batching)."""
    llm = backend.llm
    tokens_done, seconds = 0, 0.0
    for request in requests:
        tokens = backend.prompt_tokens_of(request)
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        seconds += time.perf_counter() - started
        tokens_done += len(tokens)
    llm.reset()
    backend._prompt_end = 0
    return tokens_done / seconds


def timed_mode(backend, examples, mode, prompt, workdir):
    model = CachedModel(backend, Cache(workdir / f"cache-{mode}-{len(examples)}"))
    started = time.perf_counter()
    grades = grade_examples(examples, model, prompt=prompt, mode=mode)
    seconds = time.perf_counter() - started
    assert model.stats.model_calls == len({e.id for e in examples}), model.stats
    return grades, seconds


def cached_rerun(workdir: Path) -> tuple[float, dict]:
    """Fill a cache for all 9,229 examples through a replay file, then time a full `gasus grade` rerun."""
    examples = load_examples(DATA / "alpaca_random_9k.json")
    prompt = grading_prompt("accuracy")
    replay = workdir / "replay.jsonl"
    with open(replay, "w") as handle:
        for e in examples:
            text = f"{(e.index * 7) % 11 / 2:g}\nRecorded explanation."
            handle.write(json.dumps({"messages": prompt.messages(e), "text": text}) + "\n")
    env = {**os.environ, "GASUS_CACHE_DIR": str(workdir / "cache-9k")}
    gasus = [str(Path(sys.executable).parent / "gasus"), "grade", str(DATA / "alpaca_random_9k.json"),
             "-o", str(workdir / "scores-9k.jsonl"), "--grader", f"replay:{replay}",
             "--summary-json", str(workdir / "summary-9k.json")]
    subprocess.run(gasus, env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(gasus, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    return wall, json.loads((workdir / "summary-9k.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="examples for score and expected")
    parser.add_argument("--generate-n", type=int, default=50, help="examples for generate (the slow mode)")
    parser.add_argument("--agree-n", type=int, default=200, help="examples graded in expected mode for agreement")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads  [default: all cores]")
    args = parser.parse_args()

    examples = load_examples(DATA / "alpaca_random_9k.json")
    prompt = grading_prompt("accuracy")
    backend = LlamaCppBackend(str(embedded_model_path()), BackendOptions(n_threads=args.threads))
    _ = backend.llm  # load the model outside the timings
    print(f"threads: {args.threads or os.cpu_count()}  model: {backend.label}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench = examples[:args.n]
        requests = [grade_request(prompt, e, "expected") for e in bench]
        total, unique = unique_prompt_tokens(backend, requests)
        rate = prompt_eval_rate(backend, requests[:10])
        bound = unique / rate
        print(f"prompt tokens: {total} in {len(bench)} prompts, {unique} not shared with the previous prompt; "
              f"prompt evaluation {rate:.0f} tokens/s -> bound {bound:.2f} s")

        speeds = {}
        grades_by_mode = {}
        for mode, n in (("expected", args.n), ("score", args.n), ("generate", args.generate_n)):
            grades, seconds = timed_mode(backend, examples[:n], mode, prompt, workdir)
            grades_by_mode[mode] = grades
            speeds[mode] = n / seconds
            if mode == "expected":
                expected_seconds = seconds
            ok = sum(g.ok for g in grades)
            print(f"{mode:>9}: {n} examples in {seconds:.2f} s = {speeds[mode]:.2f} examples/s ({ok} ok)")
        print(f"score / generate: {speeds['score'] / speeds['generate']:.1f}x   "
              f"expected / generate: {speeds['expected'] / speeds['generate']:.1f}x   "
              f"expected time / prompt-eval bound: {expected_seconds / bound:.2f}x")

        wall, summary = cached_rerun(workdir)
        print(f"fully cached rerun of {summary['items']} examples: {wall:.2f} s wall (start-up included), "
              f"{summary['model_calls']} model calls, {summary['cache_hits']} cache hits")

        labels = DATA / "claude_t45_labels_dev.jsonl"
        agree_examples = examples[:args.agree_n]
        model = CachedModel(backend, Cache(workdir / f"cache-expected-{args.n}"))
        grades = grade_examples(agree_examples, model, prompt=prompt, mode="expected")
        write_scores(workdir / "expected.jsonl", grades)
        write_scores(workdir / "generate.jsonl", grades_by_mode["generate"])
        for name, path, field in (("expected (mean)", "expected.jsonl", "score"),
                                  ("expected (most likely)", "expected.jsonl", "top_score"),
                                  ("generate", "generate.jsonl", "score")):
            r = agree(workdir / path, labels, score_field=field)
            auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
            print(f"agreement with Claude (first {r['joined']}, {r['label_kept']} kept by Claude), {name}: "
                  f"ROC AUC {auc}, kept {r['grader_kept']}, precision {r['precision']:.3f}, "
                  f"recall {r['recall']:.3f}, F1 {r['f1']:.3f}")
    backend.close()


if __name__ == "__main__":
    main()
