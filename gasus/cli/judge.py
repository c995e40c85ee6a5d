"""gasus judge: a judge LLM compares two models' answers, in both orders."""

from __future__ import annotations

import click

from ..backends import spec_file
from ..errors import BadInputError
from ..wording import counted
from .batch import BatchProgress, batch_options, batch_settings, report_pending
from .common import (
    GasusCommand,
    check_paths,
    console,
    model_options,
    open_model,
    progress_callback,
    summary_option,
    thinking_options,
)


@click.command(cls=GasusCommand)
@click.argument("answers_a", type=click.Path(dir_okay=False))
@click.argument("answers_b", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Judgements file to write (JSON Lines: testset, id, order, scores, status, raw).")
@click.option("--judge", "judge_spec", default=None,
              help="Judge model spec (llamacpp:FILE.gguf, openai:MODEL, hf:..., replay:FILE.jsonl).  "
                   "[default: the embedded SmolLM2-135M]")
@click.option("--order", type=click.Choice(["both", "ab", "ba"]), default="both", show_default=True,
              help="Answer orders to judge: ab shows A's answer as Assistant 1, ba shows B's first.")
@click.option("--rule", type=click.Choice(["paper", "strict"]), default="paper", show_default=True,
              help="paper: win = wins both orders or wins one and ties one; strict (FastChat): "
                   "a win needs both orders.")
@click.option("--mode", type=click.Choice(["generate", "score"]), default="generate", show_default=True,
              help="generate: the paper's, the judge writes its pair and an explanation; score: the judge "
                   "writes only the pair line (a grammar holds GGUF judges to it), far faster.")
@click.option("--max-new-tokens", type=int, default=256, show_default=True,
              help="Most tokens per judge reply in generate mode (the paper's evaluation script uses 256).")
@thinking_options
@click.option("--verdicts", "verdicts_path", type=click.Path(dir_okay=False),
              help="Also write one verdict per question (testset, id, verdict from A's side) here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Also draw the Win/Tie/Lose counts per test set as a stacked bar chart (PNG).")
@click.option("--title", default=None, help="Title of the table and plot.  [default: A vs B from the file names]")
@click.option("--bootstrap", "n_resamples", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the 95% interval of the winning score.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--retry-failed", is_flag=True,
              help="Ask again for judgements whose cached reply was truncated, did not parse or was out of range "
                   "(with --batch: and resubmit the requests that failed in a finished batch).")
@model_options
@batch_options
@summary_option
def judge(answers_a, answers_b, output, judge_spec, order, rule, mode, max_new_tokens, thinking, max_tokens_cap,
          verdicts_path, plot_path, title, n_resamples, seed, retry_failed, model_opts, batch_opts, summary):
    """Judge model A's answers against model B's with the paper's judge prompt.

    Answers are joined on (testset, id). Each question is judged in both orders, each
    order its own cached call, and the orders are combined into a Win/Tie/Lose for A.
    Prints the table of the paper's Figure 5, the winning score
    (#Win - #Lose) / #Testset + 1 with a bootstrap 95% interval, how much the answer
    order sways the judge, and how much length does: the share of decided judgements the
    longer answer won, and the winning score with length controlled for.

    \b
    Example:
      gasus judge alpagasus.jsonl alpaca52k.jsonl -o judgements.jsonl --judge openai:gpt-4o
      gasus judge a.jsonl b.jsonl -o j.jsonl --plot out/a_vs_b.png --verdicts verdicts.jsonl
      gasus judge a.jsonl b.jsonl -o j.jsonl --mode score          # embedded judge, pair line only
      gasus judge a.jsonl b.jsonl -o j.jsonl --judge openai:gpt-4o --batch   # half price, resumable
    """
    from pathlib import Path

    from rich.text import Text

    from .. import judge as jd
    from .. import report
    from ..io import write_jsonl

    if max_new_tokens < 1:
        raise BadInputError("--max-new-tokens must be at least 1")
    if max_tokens_cap < max_new_tokens:
        raise BadInputError(f"--max-new-tokens-cap must be at least --max-new-tokens ({max_new_tokens})")
    if n_resamples < 1:
        raise BadInputError("--bootstrap must be at least 1")
    if plot_path and not plot_path.lower().endswith(".png"):
        raise BadInputError(f"{plot_path}: --plot writes a PNG; give a file name ending in .png")
    check_paths(summary, inputs={"ANSWERS_A": answers_a, "ANSWERS_B": answers_b, "--judge": spec_file(judge_spec)},
                outputs={"-o/--output": output, "--verdicts": verdicts_path, "--plot": plot_path})
    pairs = jd.pair_answers(jd.load_answers(answers_a), jd.load_answers(answers_b), answers_a, answers_b)
    orders = jd.ORDER_CHOICES[order]
    batch = batch_settings(batch_opts, retry_failed)
    model = open_model(judge_spec, model_opts)
    if batch is None:
        progress, on_result = progress_callback(len(pairs) * len(orders), "judging")
    else:
        progress = on_result = BatchProgress(len(pairs) * len(orders), "judging")
    failures: list[str] = []

    def record(i, result):
        on_result(i, result)
        if result.error is not None:
            failures.append(result.error)

    from ..batch import BatchPending

    try:
        with progress:
            judgements = jd.run_judge(model, pairs, orders, max_tokens=max_new_tokens, mode=mode,
                                     on_result=record, thinking=thinking, max_tokens_cap=max_tokens_cap,
                                     batch=batch, on_poll=getattr(progress, "poll", None), retry_failed=retry_failed)
    except BatchPending as pending:
        report_pending(pending, summary)
        return
    finally:
        model.backend.close()
    write_jsonl(output, (j.to_dict() for j in judgements))
    result = jd.summarize(judgements, rule=rule, orders=orders, n_resamples=n_resamples, seed=seed)
    if verdicts_path:
        write_jsonl(verdicts_path, (v.to_dict() for v in result.verdicts.verdicts))

    title = title or f"{Path(answers_a).stem} vs {Path(answers_b).stem} ({rule} rule, order {order})"
    out = console()
    out.print(report.verdict_table(result.tallies, title=title))
    out.print(report.bias_text(result.bias))
    from ..diagnostics import judge_length

    length = judge_length(pairs, judgements, n_resamples=n_resamples, seed=seed)
    out.print(length.text(), soft_wrap=True)
    statuses = [j.status for j in judgements]
    warning = report.judge_warning(statuses)
    if warning:
        console(stderr=True).print(Text(warning, style="bold red"), soft_wrap=True)
    if failures:
        console(stderr=True).print(f"first failure: {failures[0]}")
    from ..diagnostics import served_warning
    from .diagnostics import warn

    warn([served_warning(model.stats.served, "judgements")])
    if plot_path:
        report.plot_verdicts(result.tallies, plot_path, title=title)
        out.print(f"plot -> {plot_path}")
    out.print(f"{counted(len(judgements), 'judgement')} -> {output}")

    summary.items = len(judgements)
    summary.add_stats(model.stats)
    summary.extra.update({
        "rule": rule, "orders": list(orders), "questions": len(pairs),
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "testsets": [t.to_dict() for t in result.tallies],
        "position_bias": result.bias.to_dict(),
        "length": length.to_dict(),
    })
