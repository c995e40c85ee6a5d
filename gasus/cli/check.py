"""gasus check: audit a dataset for test-set contamination and near-duplicates."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BadInputError
from ..wording import counted
from .common import (
    GasusCommand,
    check_paths,
    console,
    dataset_options,
    load_dataset_arg,
    summary_option,
)

SHOWN_HITS = 20


def _references(against: str, testsets_dir: str | None, fields_args: tuple):
    """The references `--against` names: none, test-set names (as `generate` finds them), or a file
    (its instruction and input; it needs no output)."""
    from .. import audit
    from ..io import FieldMap, file_kind

    if against.strip().lower() == "none":
        return [], None
    if Path(against).exists() or file_kind(against) is not None:
        fmt, instruction_field, input_field, output_field, split, max_rows = fields_args
        fields = FieldMap.for_format(fmt, instruction=instruction_field, input=input_field, output=output_field)
        return audit.file_references(against, fields=fields, split=split, max_rows=max_rows), against
    return audit.testset_references(against, testsets_dir), None


@click.command(cls=GasusCommand)
@click.argument("dataset")
@click.option("--against", default="all", show_default=True,
              help="What the data must not contain: all (the four test sets), names such as vicuna,koala, "
                   "a dataset FILE (its instruction and input; an output field is not needed), or none (with --self).")
@click.option("--testsets-dir", type=click.Path(file_okay=False),
              help="Folder holding the test-set files.  [default: $GASUS_DATA_DIR, else downloaded once]")
@click.option("--self", "self_check", is_flag=True, help="Also find near-duplicate groups inside DATASET.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write {hits, groups, summary} here as JSON (the file `gasus select --exclude` reads).")
@click.option("--ngram", type=int, default=13, show_default=True,
              help="Words in a shared n-gram that makes an exact hit (GPT-3's contamination check uses 13).")
@click.option("--threshold", type=float, default=0.6, show_default=True,
              help="Jaccard of word shingles at or above which two texts are near (confirmed exactly).")
@click.option("--shingle", type=int, default=2, show_default=True, help="Words per shingle of the near check.")
@click.option("--num-perm", type=int, default=128, show_default=True,
              help="MinHash permutations of the LSH that proposes near candidates.")
@dataset_options
@summary_option
def check(dataset, against, testsets_dir, self_check, output, ngram, threshold, shingle, num_perm, fmt,
          instruction_field, input_field, output_field, split, max_rows, summary):
    """Find training rows that overlap the test sets, and near-duplicates.

    Exact: a shared 13-word n-gram (after NFKC and case folding) between a row's
    instruction, input and output and a test question. Near: MinHash LSH over word
    shingles of the row's instruction and input, confirmed by exact Jaccard. Exit
    status 1 when anything is found (for CI), 0 when clean, 2 on bad input.

    \b
    Example:
      gasus check data.json -o audit.json                  # against the four test sets
      gasus check data.json --against vicuna,koala --self
      gasus select data.json scores.jsonl --exclude audit.json -o kept.json
    """
    from .. import audit

    fields_args = (fmt, instruction_field, input_field, output_field, split, max_rows)
    check_paths(summary, inputs={"DATASET": dataset, "--against": against if Path(against).exists() else None},
                outputs={"-o/--output": output})
    config = audit.AuditConfig(ngram=ngram, threshold=threshold, shingle=shingle, num_perm=num_perm)
    references, against_file = _references(against, testsets_dir, fields_args)
    if not references and not self_check:
        raise BadInputError("--against none checks nothing: add --self")
    examples = load_dataset_arg(dataset, *fields_args)
    report = audit.audit(examples, references, config, self_check=self_check)
    report.summary["dataset"] = dataset
    report.summary["against"] = against_file or list(report.summary["testsets"])
    if output:
        from ..io import write_json

        write_json(output, report.to_dict())
    summary.items = len(examples)
    summary.failures = len(report.hits)
    summary.extra.update({key: report.summary[key] for key in
                          ("exact_hits", "near_hits", "contaminated_rows", "duplicate_groups", "duplicate_rows")})
    _render(report, output)
    if report.contaminated:
        if summary.path:
            summary.write(summary.path)
        click.get_current_context().exit(1)


def _render(report, output) -> None:
    from rich.table import Table

    out = console()
    s = report.summary
    if s["testsets"]:
        table = Table(title=f"Overlap of {counted(s['rows'], 'row')} with the references")
        for column in ("reference", "questions", "exact", "near", "rows hit"):
            table.add_column(column, justify="left" if column == "reference" else "right")
        for name, counts in s["testsets"].items():
            table.add_row(name, str(counts["questions"]), str(counts["exact"]), str(counts["near"]),
                          str(counts["rows"]), style="red" if counts["rows"] else None)
        out.print(table)
    if report.hits:
        hits = Table(title=f"Hits (first {min(SHOWN_HITS, len(report.hits))} of {len(report.hits)})")
        for column in ("row", "reference", "kind", "evidence"):
            hits.add_column(column)
        for hit in report.hits[:SHOWN_HITS]:
            other = (f"row {hit['other_index']}" if hit["testset"] == "self"
                     else f"{hit['testset']} {hit['question_id']}")
            hits.add_row(str(hit["index"]), other, hit["kind"], str(hit["evidence"]))
        out.print(hits)
    lines = []
    if s["testsets"]:
        lines.append(f"{s['contaminated_rows']} of {counted(s['rows'], 'row')} overlap the references "
                     f"({s['exact_hits']} exact, {s['near_hits']} near hits)")
    if s["self_checked"]:
        lines.append(f"{counted(s['duplicate_groups'], 'near-duplicate group')}, {counted(s['duplicate_rows'], 'row')} beyond the "
                     "first of each")
    for line in lines:
        out.print(line)
    if output:
        out.print(f"report -> {output}")
