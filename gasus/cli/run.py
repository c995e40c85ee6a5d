"""gasus run: the whole recipe from one TOML file."""

from __future__ import annotations

import click

from .common import GasusCommand, check_paths, console, summary_option


@click.command(cls=GasusCommand)
@click.argument("config", type=click.Path(dir_okay=False))
@summary_option
def run(config, summary):
    """Run the AlpaGasus recipe end to end from a TOML file.

    Grades the dataset, keeps the best examples and a random baseline of the same size,
    fine-tunes a model on each, answers the test sets with both, and judges the filtered
    model against the baseline in both orders. Files land in `out_dir`; rerunning costs
    no model call, and a trained model with the same data and settings is reused.

    \b
    Tables: [data] path, format; [grade] grader, mode, dimension; [select] threshold or
    top_k, seed; [train] base, preset and any training setting (max_steps, epochs, ...);
    [generate] testsets, limit, max_new_tokens, testsets_dir; [judge] judge, mode,
    order, rule.

    \b
    Example:
      gasus run fixtures/smoke_run.toml
    """
    from rich.text import Text

    from .. import report
    from ..pipeline import load_run_config, run_paths, run_pipeline

    cfg = load_run_config(config)
    inputs, outputs = run_paths(cfg)
    check_paths(summary, inputs={"CONFIG": config, **inputs}, outputs=outputs, makes_dirs=True)
    out = console()
    err = console(stderr=True)

    def on_stage(stage):
        err.print(Text.assemble((stage.name, "bold"), f" ({stage.seconds:.1f} s): {stage.detail}"))
        summary.model_calls += stage.summary.get("model_calls", 0)
        summary.cache_hits += stage.summary.get("cache_hits", 0)
        summary.failures += stage.summary.get("failures", 0)

    stages = run_pipeline(cfg, on_stage=on_stage)
    result = stages[-1].summary["report"]
    out.print(report.verdict_table(result.tallies, title="filtered vs random baseline"))
    out.print(report.bias_text(result.bias))
    out.print(f"files -> {cfg.out_dir}")
    summary.items = len(result.judgements)
    summary.extra["stages"] = [{"name": s.name, "seconds": s.seconds, "detail": s.detail} for s in stages]
    summary.extra["verdicts"] = [t.to_dict() for t in result.tallies]
