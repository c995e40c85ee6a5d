"""gasus select: keep the examples a grader scored highly."""

from __future__ import annotations

import click

from ..errors import BadInputError
from ..io import in_bulk
from ..wording import counted
from .common import (
    GasusCommand,
    check_paths,
    console,
    dataset_options,
    load_dataset_arg,
    summary_option,
)
from .diagnostics import health_options


@click.command(cls=GasusCommand)
@click.argument("dataset")
@click.argument("scores", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write the kept examples: Alpaca JSON, or JSON Lines if it ends in .jsonl.")
@click.option("--threshold", type=float, default=None,
              help="Keep examples with score >= THRESHOLD (the paper's tau).  [default: 4.5]")
@click.option("--top-k", type=int, default=None, help="Keep the K best-scored examples; ties go to the earlier row.")
@click.option("--random", "random_n", type=int, default=None,
              help="Keep N examples drawn at random (the paper's baseline of equal size); needs no scores.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--limit", type=int, default=None,
              help="Select among the first N examples only (the rows `gasus grade --limit N` graded).")
@click.option("--sweep", default=None, help="Comma-separated thresholds: print kept counts for each, write nothing.")
@click.option("--exclude", type=click.Path(dir_okay=False),
              help="A `gasus check -o` report: drop its contaminated rows, and all but the best-scored row of "
                   "each near-duplicate group.")
@click.option("--decisions", type=click.Path(dir_okay=False),
              help="Write one JSON line per input row: id, index, score, kept and the reason.")
@health_options
@dataset_options
@summary_option
@in_bulk  # a data command from end to end: see in_bulk
def select(dataset, scores, output, threshold, top_k, random_n, seed, limit, sweep, exclude, decisions, health, fmt,
           instruction_field, input_field, output_field, split, max_rows, summary):
    """Select the training subset from a dataset and its scores.

    Scores are joined to examples on their content id; examples whose grade did not
    parse or failed are never kept and are counted in the summary. Warns on stderr when the
    scores collapsed onto one value or follow the responses' length (see --summary-json's
    diagnostics).

    \b
    Example:
      gasus select data.json scores.jsonl -o alpagasus.json            # score >= 4.5
      gasus select data.json scores.jsonl --sweep 3.5,4,4.5,5
      gasus select data.json --random 9229 --seed 0 -o random_9k.json
      gasus select data.json scores.jsonl --limit 100 -o kept.json     # after grade --limit 100
      gasus select data.json scores.jsonl --exclude audit.json --decisions why.jsonl -o kept.json
    """
    from .. import selection
    from ..ahead import Ahead

    rules = [name for name, value in (("--threshold", threshold), ("--top-k", top_k),
                                      ("--random", random_n), ("--sweep", sweep)) if value is not None]
    if len(rules) > 1:
        raise BadInputError(f"choose one of {', '.join(rules)}")
    if random_n is None and scores is None:
        raise BadInputError("SCORES is required unless --random is given")
    if sweep is None and output is None:
        raise BadInputError("-o/--output is required (except with --sweep)")
    if limit is not None and limit < 1:
        raise BadInputError("--limit must be at least 1")
    if sweep is not None and decisions is not None:
        raise BadInputError("--decisions does not go with --sweep, which selects nothing")
    check_paths(summary, inputs={"DATASET": dataset, "SCORES": scores, "--exclude": exclude},
                outputs={"-o/--output": output, "--decisions": decisions})

    out = console()

    def _load_dataset():
        examples = load_dataset_arg(dataset, fmt, instruction_field, input_field, output_field, split, max_rows)
        return examples if limit is None else examples[:limit]

    if random_n is not None and exclude is None and decisions is None and limit is None:
        # holds only the drawn examples, however large the dataset
        from ..io import FieldMap

        fields = FieldMap.for_format(fmt, instruction=instruction_field, input=input_field, output=output_field)
        result = selection.select_random_from(dataset, random_n, seed, fields=fields, split=split, max_rows=max_rows)
        summary.items = result.total
        return _write_selection(out, output, result, summary)
    if scores is None or random_n is not None:
        examples, grades = _load_dataset(), None
    elif exclude is None and decisions is None:
        # id -> usable score, read as a stream, in a second process while this one reads the dataset
        with Ahead.reading(selection.load_score_index, scores) as index:
            examples = _load_dataset()
            if index.forked:  # the join hashes each example: done here while the child is still reading
                for example in examples:
                    example.id  # noqa: B018 (kept on the example)
            grades = index.result()
    else:  # the audit's exclusions and decisions are made per grade record
        examples, grades = _load_dataset(), selection.load_grades(scores)
    summary.items = len(examples)
    excluded: dict[int, str] = {}
    candidates, candidate_grades = examples, grades
    if exclude is not None:
        excluded = selection.excluded_rows(examples, grades, *selection.load_exclusions(exclude, examples))
        candidates, candidate_grades = selection.without_rows(examples, grades, excluded)
        summary.extra["excluded"] = {reason: sum(1 for r in excluded.values() if r == reason)
                                     for reason in ("contaminated", "near_duplicate")}

    if sweep is not None:
        from rich.table import Table

        thresholds = selection.parse_thresholds(sweep)
        rows = selection.sweep(candidates, candidate_grades, thresholds)
        not_ok = selection.not_ok_count(candidate_grades)
        note = f", {len(excluded)} excluded" if exclude is not None else ""
        table = Table(title=f"Kept examples per threshold ({counted(len(candidates), 'example')}, {not_ok} not gradable{note})")
        table.add_column("threshold", justify="right")
        table.add_column("kept", justify="right")
        table.add_column("fraction", justify="right")
        for t, kept, frac in rows:
            table.add_row(f">= {t:g}", str(kept), f"{frac:.1%}")
        out.print(table)
        summary.failures = not_ok
        summary.extra["sweep"] = [{"threshold": t, "kept": k, "fraction": f} for t, k, f in rows]
        return

    keep_threshold = selection.PAPER_THRESHOLD if threshold is None else threshold
    if random_n is not None:
        rule, result = "random", selection.select_random(candidates, random_n, seed)
    elif top_k is not None:
        rule, result = "top_k", selection.select_top_k(candidates, candidate_grades, top_k)
        if result.scored is not None and top_k > len(result.scored):
            # a --random baseline of K rows would then be larger than the kept set, or refused
            raise BadInputError(f"--top-k {top_k} asks for more examples than have a usable score "
                                f"({len(result.scored)} of {len(candidates)}): give --top-k {len(result.scored)} "
                                "or less, so the kept set is as large as a --random baseline of the same size")
    else:
        rule, result = "threshold", selection.select_threshold(candidates, candidate_grades, keep_threshold)
    if excluded:  # counted against the whole dataset, the excluded rows with it
        result = selection.Selection(result.kept, len(examples), result.not_ok, result.rule)
    if decisions is not None:
        from ..io import write_jsonl

        write_jsonl(decisions, selection.decisions(examples, grades, result.kept, rule, excluded))
    _write_selection(out, output, result, summary)
    if excluded:
        counts = summary.extra["excluded"]
        out.print(f"excluded {counts['contaminated']} contaminated and {counts['near_duplicate']} near-duplicate "
                  f"rows (from {exclude})")
    if decisions is not None:
        out.print(f"a decision for each of {counted(len(examples), 'row')} -> {decisions}")
    if grades is not None:  # a --random draw has no scores to diagnose
        if excluded:  # the health of all rows, the excluded ones with them
            _report_health(examples, grades, {e.id for e in result.kept}, keep_threshold, None, health, summary)
        else:  # the selection's own join; by the threshold rule a row is kept when its score reaches it
            kept_ids = None if rule == "threshold" else {e.id for e in result.kept}
            _report_health(examples, grades, kept_ids, keep_threshold, result.scored, health, summary)


def _report_health(examples, grades, kept_ids, threshold, scored, health, summary) -> None:
    from ..diagnostics import grade_health
    from .diagnostics import warn

    report = grade_health(examples, grades, kept_ids, threshold=threshold, scored=scored, **health)
    summary.extra["diagnostics"] = report.to_dict()
    warn(report.warnings())


def _write_selection(out, output, result, summary) -> None:
    from ..io import write_records

    write_records(output, (e.to_dict() for e in result.kept))
    summary.failures = result.not_ok
    summary.extra.update({"kept": len(result.kept), "rule": result.rule})
    note = f", {result.not_ok} without a usable score" if result.not_ok else ""
    out.print(f"kept {len(result.kept)} of {result.total} ({result.fraction:.1%}) by {result.rule}{note} -> {output}")
