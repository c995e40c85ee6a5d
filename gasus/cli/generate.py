"""gasus generate: a model's answers to the paper's test sets."""

from __future__ import annotations

import click

from ..backends import spec_file
from ..errors import BackendError
from ..wording import counted
from .common import (
    GasusCommand,
    check_paths,
    console,
    model_options,
    open_model,
    progress_callback,
    summary_option,
)


@click.command(cls=GasusCommand)
@click.argument("model_spec")
@click.option("--testset", "testsets", multiple=True, default=("vicuna",), show_default=True,
              help="vicuna (80), koala (180), wizardlm (218), sinstruct (252) or all; repeat or comma-separate.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Answers file to write (JSON Lines: testset, id, question, answer, model).")
@click.option("--max-new-tokens", type=int, default=1024, show_default=True,
              help="Most tokens per answer (the paper's 1024).")
@click.option("--limit", type=int, default=None, help="Answer only the first N questions of each test set.")
@click.option("--prompt", "prompt_style", type=click.Choice(["alpaca", "chat"]), default="alpaca", show_default=True,
              help="alpaca: the Alpaca training prompt, no chat template (the paper); chat: the bare "
                   "question as a chat message (for chat models used as a baseline).")
@click.option("--model-name", help="What the answers file calls the model.  [default: the model spec]")
@click.option("--testsets-dir", type=click.Path(file_okay=False),
              help="Folder holding the test-set files.  [default: $GASUS_DATA_DIR, else downloaded once]")
@model_options
@summary_option
def generate(model_spec, testsets, output, max_new_tokens, limit, prompt_style, model_name, testsets_dir,
             model_opts, summary):
    """Answer the paper's test questions with a model, greedily.

    MODEL_SPEC is llamacpp:FILE.gguf (or FILE.gguf; "default" is the embedded
    SmolLM2-135M), hf:DIR_OR_HUB_ID (e.g. the output of gasus train) or openai:MODEL.
    Each question is asked with the Alpaca prompt the model was trained on. Every call is
    cached, so a rerun answers from the cache.

    \b
    Example:
      gasus generate hf:runs/alpagasus-9k --testset all -o answers/alpagasus.jsonl
      gasus generate default --testset vicuna --limit 10 --max-new-tokens 128 -o smol.jsonl
    """
    from .. import generate as gen
    from ..io import write_jsonl
    from ..testsets import load_testsets

    check_paths(summary, inputs={"MODEL_SPEC": spec_file(model_spec)}, outputs={"-o/--output": output})
    questions = load_testsets(list(testsets), testsets_dir, limit=limit)
    model = open_model(model_spec, model_opts)
    progress, on_result = progress_callback(len(questions), "answering")
    try:
        with progress:
            result = gen.generate_answers(model, questions, model_name=model_name or model_spec,
                                          max_new_tokens=max_new_tokens, prompt_style=prompt_style,
                                          on_result=on_result)
    finally:
        model.backend.close()
    write_jsonl(output, (a.to_dict() for a in result.answers))
    summary.items = len(questions)
    summary.add_stats(model.stats)
    out = console()
    out.print(f"{counted(len(result.answers), 'answer')} -> {output} "
              f"({counted(model.stats.model_calls, 'model call')}, {model.stats.cache_hits} from the cache)")
    if result.failed:
        q, error = result.failed[0]
        raise BackendError(f"{len(result.failed)} of {counted(len(questions), 'question')} got no answer "
                           f"(first, {q.testset}/{q.id}: {error}); the others are written; rerun to retry")

