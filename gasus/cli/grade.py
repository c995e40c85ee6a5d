"""gasus grade: rate every triplet of a dataset 0-5 with a grader LLM (the paper's step 1)."""

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
    dataset_options,
    load_dataset_arg,
    model_options,
    open_model,
    summary_option,
    thinking_options,
)
from .diagnostics import health_options


class GradeProgress:
    """A rich progress bar on stderr: done, from cache, failed, rate of new grades, ETA."""

    def __init__(self, total: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        err = console(stderr=True)
        self.progress = Progress(
            TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]{task.fields[cached]} from cache"), TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, transient=True, disable=not err.is_terminal,  # no bar in logs and pipes
        )
        self.task = self.progress.add_task("grading", total=total, cached=0, failed=0, rate="")
        self.cached = self.failed = self.fresh = 0
        self.started: float | None = None

    def __enter__(self):
        import time

        self.started = time.perf_counter()
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, i, grade, from_cache) -> None:
        import time

        if from_cache:
            self.cached += 1
        else:
            self.fresh += 1
        if grade.status != "ok":
            self.failed += 1
        if self.progress.disable:  # no bar (a log, a pipe): nothing to redraw, per grade of a million
            return
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        rate = f"{self.fresh / elapsed:.1f} graded/s" if self.fresh and elapsed > 0 else ""
        self.progress.update(self.task, advance=1, cached=self.cached, failed=self.failed, rate=rate)


@click.command(cls=GasusCommand)
@click.argument("dataset")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Scores file to write (JSON Lines, one line per input row, in order).  Needed unless --dry-run.")
@click.option("--grader", "grader_spec", default=None,
              help="Grader model spec: llamacpp:FILE.gguf (or FILE.gguf; llamacpp:default is the embedded model), "
                   "openai:MODEL, hf:DIR_OR_HUB_ID (transformers, best on a GPU), replay:FILE.jsonl.  "
                   "[default: the embedded SmolLM2-135M-Instruct]")
@click.option("--dimension", type=click.Choice(["accuracy", "helpfulness"]), default="accuracy", show_default=True,
              help="What the paper's prompt asks the grader to rate.")
@click.option("--prompt-file", type=click.Path(dir_okay=False),
              help="A custom template: the user message with {instruction}, {input}, {output}, optionally after "
                   "a '[system]' line and system text, then a '[user]' line.")
@click.option("--prompt-variant", type=click.Choice(["paper", "hardened"]), default="paper", show_default=True,
              help="paper: the paper's prompt, verbatim. hardened: the same rubric with the data between "
                   "BEGIN/END markers and an instruction to ignore instructions inside it (against prompt injection).")
@click.option("--mode", type=click.Choice(["generate", "score", "expected"]), default="generate", show_default=True,
              help="generate: score line and explanation, 256 tokens (the paper); score: stop after the score "
                   "line; expected: one forward pass, probability-weighted mean of the scores 0-5 (the one that suits "
                   "the embedded model, whose written replies seldom hold a score line).")
@click.option("--max-new-tokens", type=int, default=None,
              help="Most tokens per grader reply.  [default: the paper's 256 in generate mode, 8 in score mode]")
@thinking_options
@click.option("--limit", type=int, default=None, help="Grade only the first N examples.")
@click.option("--retry-failed", is_flag=True,
              help="Ask again for examples whose cached grade did not parse, was out of range or was truncated "
                   "(with --batch: and resubmit the requests that failed in a finished batch).")
@click.option("--dry-run", is_flag=True,
              help="Call no model: count the calls the run still needs and, for API graders, estimate tokens and cost.")
@click.option("--price-table", type=click.Path(dir_okay=False),
              help='JSON {"MODEL": [input, output]} in USD per 1M tokens, over the built-in prices (--dry-run).')
@health_options
@model_options
@batch_options
@dataset_options
@summary_option
def grade(dataset, output, grader_spec, dimension, prompt_file, prompt_variant, mode, max_new_tokens, thinking,
          max_tokens_cap, limit, retry_failed, dry_run, price_table, health, model_opts, batch_opts, fmt,
          instruction_field,
          input_field, output_field, split, max_rows, summary):
    """Grade every (instruction, input, response) triplet 0-5 with an LLM, as AlpaGasus does.

    Uses the paper's prompt (accuracy, or its helpfulness variant) at temperature 0. Every
    call is cached: a rerun grades nothing twice and does not even load the model, and a
    killed run continues where it stopped. Grades that do not parse, are out of range or
    failed keep their status and raw text; they never get a made-up score.

    \b
    Example:
      gasus grade data.json -o scores.jsonl --mode expected      # embedded SmolLM2, offline
      gasus grade data.json -o scores.jsonl --limit 100          # the paper's generate mode
      gasus grade data.json -o scores.jsonl --grader openai:gpt-4o-mini --concurrency 8
      gasus grade data.json --grader openai:gpt-4o-mini --dry-run
      gasus grade data.json -o scores.jsonl --grader openai:gpt-4o-mini --batch   # half price, resumable
      gasus grade data.json -o scores.jsonl --grader openai:Qwen/Qwen3-8B --base-url http://localhost:8000/v1 \\
          --max-new-tokens 1024 --max-new-tokens-cap 8192      # a reasoning grader
      gasus select data.json scores.jsonl -o alpagasus.json       # then keep score >= 4.5
    """
    from .. import grade as gr

    if output is None and not dry_run:
        raise BadInputError("-o/--output is required (except with --dry-run)")
    if limit is not None and limit < 1:
        raise BadInputError("--limit must be at least 1")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise BadInputError("--max-new-tokens must be at least 1")
    if max_tokens_cap < (max_new_tokens or 1):
        raise BadInputError(f"--max-new-tokens-cap must be at least --max-new-tokens ({max_new_tokens or 1})")
    check_paths(summary, inputs={"DATASET": dataset, "--prompt-file": prompt_file, "--price-table": price_table,
                                 "--grader": spec_file(grader_spec)},
                outputs={"-o/--output": output})
    examples = load_dataset_arg(dataset, fmt, instruction_field, input_field, output_field, split,
                                max_rows)
    if limit is not None:
        examples = examples[:limit]
    if prompt_file is not None and prompt_variant != "paper":
        raise BadInputError("--prompt-variant and --prompt-file exclude each other: a prompt file is its own variant")
    prompt = gr.grading_prompt(dimension, prompt_file, prompt_variant)
    batch = batch_settings(batch_opts, retry_failed)
    model = open_model(grader_spec, model_opts)
    summary.items = len(examples)
    summary.extra.update({"grader": model.backend.label, "dimension": dimension, "mode": mode,
                          "prompt_variant": prompt_variant, "thinking": thinking})
    out = console()

    if dry_run:
        prices = gr.load_price_table(price_table) if price_table else None
        plan = gr.plan_grading(examples, model, prompt=prompt, mode=mode, prices=prices, max_tokens=max_new_tokens,
                               thinking=thinking)
        summary.extra["dry_run"] = plan.to_dict()
        out.print(f"{counted(plan.examples, 'example')} ({plan.unique} distinct): {plan.unique - plan.misses} in the cache, "
                  f"{plan.misses} model call(s) needed with {model.backend.label}", soft_wrap=True)
        if model.backend.name == "openai" and plan.misses:
            if plan.cost_usd is None:
                cost = "no price known for this model: give --price-table"
            else:
                bound = "about" if plan.replies_seen else "at most about"
                cost = (f"{bound} ${_dollars(plan.cost_usd)} at ${plan.price[0]:g}/${plan.price[1]:g} per 1M "
                        f"tokens; with --batch {bound} ${_dollars(plan.batch_cost_usd)} at "
                        f"${plan.price[2]:g}/${plan.price[3]:g}")
            if plan.replies_seen:
                output_tokens = (f"about {plan.output_tokens:,} output tokens ({plan.mean_output_tokens:,.0f} per call, "
                                 f"the mean of {plan.replies_seen:,} cached replies of this model)")
            else:
                output_tokens = f"at most {plan.output_tokens:,} output tokens"
            out.print(f"estimated {plan.input_tokens:,} input tokens (~{gr.CHARS_PER_TOKEN:g} characters each) and "
                      f"{output_tokens}: {cost}", soft_wrap=True)
        return

    from ..batch import BatchPending

    try:
        progress = GradeProgress(len(examples)) if batch is None else BatchProgress(len(examples), "grading")
        with progress:
            grades = gr.grade_examples(examples, model, prompt=prompt, dimension=dimension, mode=mode,
                                       retry_failed=retry_failed, on_grade=progress, max_tokens=max_new_tokens,
                                       max_tokens_cap=max_tokens_cap, thinking=thinking, batch=batch,
                                       on_poll=getattr(progress, "poll", None))
    except BatchPending as pending:
        report_pending(pending, summary)
        return
    finally:
        summary.add_stats(model.stats)
        model.backend.close()
    gr.write_scores(output, grades)
    statuses = gr.status_counts(grades)
    hist = gr.histogram(grades)
    summary.extra.update({"statuses": statuses, "unusable": gr.unusable_counts(statuses), "histogram": hist,
                          "output": output})
    render_summary(out, grades, hist, statuses, model.stats, output)
    from ..diagnostics import grade_health, served_warning
    from .diagnostics import warn

    report = grade_health(examples, grades, **health)
    summary.extra["diagnostics"] = report.to_dict()
    warn([gr.unusable_warning(statuses, mode=mode, embedded=_embedded(model.backend))]
         + report.warnings() + [served_warning(model.stats.served, "grades")])


def _embedded(backend) -> bool:
    """Whether the grader is the embedded SmolLM2 (named or by default), whose advice differs."""
    from pathlib import Path

    from ..backends import EMBEDDED_FILE

    return backend.name == "llamacpp" and Path(str(backend.target)).name == EMBEDDED_FILE


def _dollars(amount: float) -> str:
    return f"{amount:,.2f}" if amount >= 1 else f"{amount:.4f}"


def render_summary(out, grades, hist, statuses, stats, output) -> None:
    from rich.table import Table

    from ..selection import PAPER_THRESHOLD as tau

    ok = statuses["ok"]
    table = Table(title=f"Scores of {counted(len(grades), 'example')} (paper's buckets)")
    table.add_column("score", justify="right")
    table.add_column("examples", justify="right")
    table.add_column("share of scored", justify="right")
    for name, count in hist.items():
        table.add_row(name, str(count), f"{count / ok:.1%}" if ok else "-")
    out.print(table)
    status_table = Table(title="Status")
    for name in statuses:
        status_table.add_column(name, justify="right")
    status_table.add_row(*(str(v) for v in statuses.values()))
    out.print(status_table)
    kept = sum(1 for g in grades if g.ok and g.score >= tau)
    if any(g.top_score is not None for g in grades):
        top = sum(1 for g in grades if g.ok and g.top_score >= tau)
        out.print(f"most likely score >= {tau:g}: {top} of {len(grades)}", soft_wrap=True)
    out.print(f"score >= {tau:g} (the paper's rule): {kept} of {len(grades)}; "
              f"{stats.model_calls} model call(s), {stats.cache_hits} from cache, {stats.failures} failed, "
              f"{statuses['unparsed']} unparsed, {statuses['out_of_range']} out of range, "
              f"{statuses['truncated']} truncated -> {output}",
              soft_wrap=True)
    if stats.retries or stats.errors:
        out.print(f"retries: {_by_kind(stats.retries)}; errors: {_by_kind(stats.errors)}", soft_wrap=True)


def _by_kind(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
