"""gasus run: the whole recipe from one TOML file."""

from __future__ import annotations

import click

from ..errors import BadInputError
from .common import (
    INTERRUPTED,
    GasusCommand,
    StageBars,
    check_paths,
    console,
    library_deprecations_hidden,
    summary_option,
)
from .report import show_report


@click.command(cls=GasusCommand)
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--demo", is_flag=True, help="Run the built-in demo config on the fixtures (embedded model, minutes on a CPU).")
@click.option("--run-dir", type=click.Path(file_okay=False),
              help="Write the run here instead of the config's out_dir (--demo: out/demo-run).")
@click.option("--threshold", type=float,
              help="Keep score >= T instead of the config's [select] rule; every grade is reused from the cache.")
@summary_option
def run(config, demo, run_dir, threshold, summary):
    """Run the AlpaGasus recipe end to end from a TOML file.

    Grades the dataset, keeps the best examples and a random baseline of the same size,
    fine-tunes a model on each, answers the test sets with both, and judges the filtered
    model against the baseline in both orders. Files land in `out_dir`; rerunning costs
    no model call, and a trained model with the same data and settings is reused.

    \b
    Tables and their keys (out_dir at the top):
      [data] path, format, max_rows, max_expansion
      [grade] grader, mode, dimension, batch
      [select] threshold or top_k, seed
      [check] enabled, against, duplicates, ngram, threshold, shingle
              (gasus check between select and train; off unless enabled = true)
      [train] base, preset and any training setting (max_steps, epochs, ...)
      [generate] testsets, limit, max_new_tokens, testsets_dir
      [judge] judge, mode, order, rule, batch
      [grade], [generate] and [judge] also take base_url, api_key_env, concurrency,
      max_attempts, threads and require_snapshot.

    \b
    Example:
      gasus run fixtures/smoke_run.toml
      gasus run --demo --run-dir demo --threshold 2.5
    """
    from rich.text import Text

    from ..pipeline import (
        DEMO_CONFIG,
        DEMO_RUN_DIR,
        load_run_config,
        run_paths,
        run_pipeline,
        with_overrides,
    )
    from ..selection import check_threshold

    if demo == bool(config):
        raise BadInputError("give a CONFIG file or --demo, not both" if demo else "give a CONFIG file, or --demo")
    if threshold is not None:
        check_threshold(threshold)
    cfg = with_overrides(load_run_config(DEMO_CONFIG if demo else config),
                         out_dir=run_dir or (DEMO_RUN_DIR if demo else None), threshold=threshold)
    inputs, outputs = run_paths(cfg)
    check_paths(summary, inputs={"CONFIG": config or str(DEMO_CONFIG), **inputs}, outputs=outputs, makes_dirs=True)
    err = console(stderr=True)
    click.get_current_context().meta[INTERRUPTED] = (
        f"Interrupted: model calls made so far are in the cache and finished stages' files are in {cfg.out_dir}; "
        "a model interrupted in training resumes from its last checkpoint; rerun the same command to continue.")

    bars = StageBars(err)

    def on_stage(stage):
        bars.finish(stage.name)
        err.print(Text.assemble((stage.name, "bold"), f" ({stage.seconds:.1f} s): {stage.detail}"))
        summary.model_calls += stage.summary.get("model_calls", 0)
        summary.cache_hits += stage.summary.get("cache_hits", 0)
        summary.failures += stage.summary.get("failures", 0)
        for warning in stage.warnings:
            err.print(Text(warning, style="bold red"), soft_wrap=True)

    def on_note(stage, text):
        err.print(Text.assemble("Note: ", (stage, "bold"), f": {text}"), soft_wrap=True)

    with bars, library_deprecations_hidden():
        stages = run_pipeline(cfg, on_stage=on_stage, on_progress=bars, on_note=on_note)
    result = stages[-2].summary["report"]
    show_report(stages[-1].summary["run"], warnings=False)  # the stages printed their warnings already
    summary.items = len(result.judgements)
    summary.extra["stages"] = [{"name": s.name, "seconds": s.seconds, "detail": s.detail} for s in stages]
    summary.extra["verdicts"] = [t.to_dict() for t in result.tallies]
