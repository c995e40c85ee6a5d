"""gasus agree: how a grader's scores agree with reference labels or with another grader."""

from __future__ import annotations

import click

from ..io import in_bulk
from .common import GasusCommand, check_paths, console, summary_option
from .diagnostics import health_options


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@click.command(cls=GasusCommand)
@click.argument("scores", type=click.Path(dir_okay=False))
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--threshold", type=float, default=4.5, show_default=True,
              help="Keep rule score >= THRESHOLD (the paper's tau) for precision/recall/F1 and kappa.")
@click.option("--score-field", type=click.Choice(["score", "top_score"]), default="score", show_default=True,
              help="Which score to use: score, or top_score (the most likely score of --mode expected).")
@click.option("--label-field", default=None,
              help="Field of LABELS holding the keep label.  [default: its one true/false field]")
@click.option("--dataset", type=click.Path(dir_okay=False),
              help="The graded dataset (Alpaca layout): adds the length bias of the scores to the diagnostics.")
@health_options
@summary_option
@in_bulk  # a data command from end to end: see in_bulk
def agree(scores, labels, threshold, score_field, label_field, dataset, health, summary):
    """Measure how a grader's scores agree with reference keep labels or another grader.

    LABELS is either a labels file, lines {"index": N, "kept_by_...": true|false} joined to
    SCORES on index (prints ROC AUC, and precision, recall and F1 of score >= THRESHOLD), or
    another scores file joined on id (prints Spearman's rank correlation of the scores and
    Cohen's kappa of the two keep decisions). Grades that are not "ok" are never kept.
    Beside them, the score health of SCORES: whether the scores collapsed onto one value
    and, with --dataset, how they follow the responses' length.

    \b
    Example:
      gasus agree scores.jsonl ../shared/data/alpagasus/claude_t45_labels_dev.jsonl
      gasus agree scores_smollm.jsonl scores_gpt4o.jsonl --threshold 4
      gasus agree scores.jsonl labels.jsonl --dataset data.json      # with length bias
    """
    from rich.table import Table

    from .. import agree as ag
    from ..ahead import Ahead
    from ..diagnostics import grade_health
    from ..selection import check_threshold, load_grades, score_index
    from .diagnostics import warn

    check_paths(summary, inputs={"SCORES": scores, "LABELS": labels, "--dataset": dataset})
    check_threshold(threshold)
    if ag.is_scores_file(labels):  # read here: a million grades cost more to send between processes than to read
        grades, reference = load_grades(scores), load_grades(labels)
    else:  # labels (row -> kept) are read in a second process while this one reads the scores
        with Ahead.reading(ag.load_labels, labels, label_field) as pending:
            grades = load_grades(scores)
            reference = pending.result()
    result = ag.agree_with(grades, reference, threshold=threshold, score_field=score_field)
    examples = None
    if dataset is not None:
        from ..io import load_examples

        examples = load_examples(dataset)
    health_report = grade_health(examples, score_index(grades), threshold=threshold, **health)
    summary.items = result["joined"]
    summary.extra.update(result)
    summary.extra["diagnostics"] = health_report.to_dict()
    table = Table(title=f"Agreement of {scores} with {labels}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if result["kind"] == "labels":
        rows = [
            ("examples joined on index", str(result["joined"])),
            ("scores without a label", str(result["unlabelled"])),
            ("grades not ok (never kept)", str(result["not_ok"])),
            (f"kept by {result['label_field']}", f"{result['label_kept']} ({result['base_rate']:.1%})"),
            (f"kept by {score_field} >= {threshold:g}", str(result["grader_kept"])),
            ("ROC AUC", _fmt(result["roc_auc"])),
            ("precision", _fmt(result["precision"])),
            ("recall", _fmt(result["recall"])),
            ("F1", _fmt(result["f1"])),
        ]
    else:
        rows = [
            ("examples joined on id", str(result["joined"])),
            ("scored by both", str(result["both_scored"])),
            ("Spearman's rho", _fmt(result["spearman"])),
            (f"kept (>= {threshold:g}) by first / second / both",
             f"{result['kept_first']} / {result['kept_second']} / {result['kept_both']}"),
            ("same keep decision", f"{result['decision_agreement']:.1%}"),
            ("Cohen's kappa", _fmt(result["cohen_kappa"])),
        ]
    rows += _health_rows(health_report)
    for name, value in rows:
        table.add_row(name, value)
    console().print(table)
    warn(health_report.warnings())


def _health_rows(health) -> list[tuple[str, str]]:
    modal = "n/a" if health.modal_score is None else f"{health.modal_score:g} ({health.modal_share:.1%})"
    rows = [("modal score (share)", modal + (" collapsed" if health.collapsed else "")),
            ("distinct scores", str(health.distinct_scores))]
    if health.quintiles is not None:
        rows.append(("length Spearman's rho", _fmt(health.length_spearman)))
    return rows
