"""gasus report: a run dir's report.md and report.html, and the same tables in the terminal."""

from __future__ import annotations

import click

from .common import GasusCommand, check_paths, console, summary_option


def show_report(summary, *, warnings: bool = True) -> None:
    """Warnings on stderr, then the report's tables and where its files are."""
    from rich.text import Text

    from ..report.run import rich_tables

    out = console()
    err = console(stderr=True)
    for warning in summary.warnings if warnings else []:
        err.print(Text(warning, style="bold red"), soft_wrap=True)
    for item in rich_tables(summary):
        out.print(item, soft_wrap=isinstance(item, str))
    out.print(f"report -> {summary.run_dir / 'report.html'} (and report.md)", soft_wrap=True)


@click.command(cls=GasusCommand)
@click.argument("run_dir", type=click.Path(file_okay=False))
@summary_option
def report(run_dir, summary):
    """Write report.md and a self-contained report.html for a `gasus run` directory.

    Reads the run's manifest, scores, judgements and training manifests; draws the score
    histogram in the paper's buckets, the kept count against the threshold, Win/Tie/Lose per
    test set with the winning score, the judge's position bias and the loss curves (PNG, in
    plots/ and embedded in the HTML); shows the same tables here. Makes no model call.

    \b
    Example:
      gasus report out/smoke-run
    """
    from ..report.run import report_paths, write_report

    inputs, outputs = report_paths(run_dir)
    check_paths(summary, inputs=inputs, outputs=outputs)
    result, written, _ = write_report(run_dir)
    show_report(result)
    summary.items = len(written)
    summary.failures = sum(stage.get("failures", 0) for stage in result.manifest.get("stages", {}).values())
