"""The report of a run dir: `report.md` and one self-contained `report.html` (plots embedded as
PNG data, no network), read back from the run's files and its manifest. `gasus report RUN_DIR`
writes them and shows the same tables in the terminal; `gasus run` writes them as its last stage."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError
from ..judge import JudgeReport
from ..wording import counted
from . import grade_warning, judge_warning

PLOTS = ("scores", "sweep", "verdicts", "bias", "loss")
CAPTIONS = {"scores": "Grades in the paper's buckets, the threshold marked",
            "sweep": "Examples kept at each threshold (from the cached scores)",
            "verdicts": "Win/Tie/Lose per test set, with the winning score and its 95% interval",
            "bias": "The judge's position bias", "loss": "Training loss of each model"}
STAGE_COLUMNS = ("items", "model_calls", "cache_hits", "failures", "seconds")


@dataclass
class RunSummary:
    """What a report shows, gathered from a run dir."""

    run_dir: Path
    manifest: dict[str, Any]
    buckets: dict[str, int]
    statuses: dict[str, int]
    graded: int
    threshold: float | None
    rule: str
    sweep: list[tuple[float, int]]
    judge: JudgeReport | None
    losses: dict[str, list[dict[str, Any]]]
    warnings: list[str] = field(default_factory=list)
    health: Any = None  # diagnostics.ScoreHealth of the grades
    length: Any = None  # diagnostics.JudgeLength of the judgements


def summarize_run(run_dir: str | Path, manifest: dict[str, Any] | None = None) -> RunSummary:
    """Read scores, judgements, training manifests and the run manifest of a run dir."""
    from .. import judge as jd
    from ..diagnostics import grade_health, judge_length
    from ..grade import BUCKETS, bucket
    from ..manifest import read_manifest
    from ..selection import PAPER_THRESHOLD, load_grades

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"{run_dir}: no such directory")
    manifest = manifest if manifest is not None else read_manifest(run_dir)
    config = manifest.get("config", {})
    scores_path = run_dir / "scores.jsonl"
    if not scores_path.is_file():
        raise BadInputError(f"{scores_path}: no scores in the run dir (did its grade stage finish?)")
    grades = load_grades(scores_path)
    ok = sorted(g.score for g in grades if g.ok)
    buckets = {b: 0 for b in BUCKETS}
    for score in ok:
        buckets[bucket(score)] += 1
    statuses: dict[str, int] = {}
    for g in grades:
        statuses[g.status] = statuses.get(g.status, 0) + 1
    select = config.get("select", {})
    if select.get("top_k"):
        k = min(select["top_k"], len(ok))
        threshold = ok[-k] if k else None
        rule = f"top {select['top_k']} (score >= {threshold:g})" if threshold is not None else "top k"
    else:
        threshold = PAPER_THRESHOLD if select.get("threshold") is None else float(select["threshold"])
        rule = f"score >= {threshold:g}"
    import bisect

    sweep = [(t / 10, len(ok) - bisect.bisect_left(ok, t / 10)) for t in range(0, 51)]
    warnings = [w for w in [grade_warning([g.status for g in grades])] if w]
    health = grade_health(_run_examples(config), grades, threshold=PAPER_THRESHOLD if threshold is None else threshold)
    warnings += health.warnings()
    length = None

    judge = None
    judgements_path = run_dir / "judgements.jsonl"
    if judgements_path.is_file():
        judge_cfg = config.get("judge", {})
        orders = jd.ORDER_CHOICES.get(judge_cfg.get("order", "both"), jd.ORDERS)
        judgements = jd.load_judgements(judgements_path)
        judge = jd.summarize(judgements, rule=judge_cfg.get("rule", "paper"), orders=orders)
        warnings.extend(w for w in [judge_warning([j.status for j in judgements])] if w)
        answers = [run_dir / "answers" / f"{name}.jsonl" for name in ("filtered", "baseline")]
        if all(p.is_file() for p in answers):
            pairs = jd.pair_answers(jd.load_answers(answers[0]), jd.load_answers(answers[1]), answers[0], answers[1])
            length = judge_length(pairs, judgements)
    losses = {}
    for name in ("filtered", "baseline"):
        path = run_dir / "models" / name / "manifest.json"
        if path.is_file():
            from ..io import read_json
            from ..manifest import manifest_problem

            model_manifest = read_json(path)
            problem = manifest_problem(model_manifest, model=True)
            if problem is not None:
                raise BadInputError(f"{path}: not a trained model's manifest: {problem}")
            history = model_manifest.get("train", {}).get("loss_history") or []
            losses[name] = [h for h in history if isinstance(h, dict) and "step" in h and "loss" in h]
    return RunSummary(run_dir, manifest, buckets, statuses, len(grades), threshold, rule, sweep, judge, losses,
                      warnings, health, length)


def _run_examples(config: dict[str, Any]) -> list[Any] | None:
    """The run's dataset (for the responses' lengths), or None when it is no longer readable."""
    from ..errors import GasusError
    from ..io import FieldMap, load_examples

    data = config.get("data", {})
    if not data.get("path") or not Path(data["path"]).is_file():
        return None
    try:
        return load_examples(data["path"], fields=FieldMap.for_format(data.get("format", "alpaca")),
                             max_rows=data.get("max_rows", 0))
    except GasusError:
        return None


def render_plots(summary: RunSummary) -> dict[str, bytes]:
    from . import plots

    out = {"scores": plots.score_histogram(summary.buckets, summary.threshold, summary.rule),
           "sweep": plots.threshold_sweep(summary.sweep, summary.threshold, summary.graded)}
    if summary.judge is not None:
        out["verdicts"] = plots.verdict_bars(summary.judge.tallies)
        out["bias"] = plots.position_bias(summary.judge.bias)
    if summary.losses:
        out["loss"] = plots.loss_curves(summary.losses)
    return out


# ---------------------------------------------------------------- tables, as rows of strings


def _score(t: Any) -> str:
    if t.score is None:
        return "-"
    return f"{t.score:.3f}" + (f" [{t.interval[0]:.3f}, {t.interval[1]:.3f}]" if t.interval else "")


def stage_rows(manifest: dict[str, Any]) -> list[list[str]]:
    return [[name] + [str(record.get(c, "")) for c in STAGE_COLUMNS]
            for name, record in manifest.get("stages", {}).items()]


def verdict_rows(judge: JudgeReport) -> list[list[str]]:
    return [[t.testset, str(t.win), str(t.tie), str(t.lose), str(t.unjudged), str(t.size), _score(t)]
            for t in judge.tallies]


VERDICT_COLUMNS = ("test set", "Win", "Tie", "Lose", "unjudged", "#Testset", "winning score [95% CI]")


def _status_text(manifest: dict[str, Any]) -> str:
    status = manifest.get("status", "?")
    if status != "finished" and manifest.get("current_stage"):
        return f"{status} (stopped in or before the {manifest['current_stage']} stage)"
    return str(status)


# ---------------------------------------------------------------- markdown and html


# Every line break a Markdown renderer (or Python) may honour, and the other control characters.
_MD_BREAKS = re.compile(r"\r\n|[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# Inline syntax: code spans, emphasis, strikethrough, backslashes; a link or image needs "](" or "][",
# a link definition or footnote "]:" or "[^".
_MD_INLINE = re.compile(r"[\\`*_~]|\](?=[(\[:])|\[(?=\^)")
# What opens a block at the start of a line (not in a table cell): heading, quote, list, setext
# underline, task box.
_MD_LEADING = re.compile(r"^(\s*)(?:([#>+\-=\[])|(\d+)([.)])(?=\s|$))")


def _md_cell(text: str) -> str:
    """Untrusted text (data, file and model names, config values) in a Markdown table cell, shown as it
    is: one line, no raw HTML (& and < escaped), no table break (|), and no link, image, emphasis or code
    that the text would open (its syntax backslash-escaped)."""
    text = _MD_INLINE.sub(lambda m: "\\" + m.group(), _MD_BREAKS.sub(" ", str(text)))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def _md_line(text: str) -> str:
    """Untrusted text as a Markdown paragraph or list item: a cell that opens no block either."""
    return _MD_LEADING.sub(_escape_leading, _md_cell(text), count=1)


def _escape_leading(m: re.Match) -> str:
    if m.group(2):  # a marker character
        return f"{m.group(1)}\\{m.group(2)}"
    return f"{m.group(1)}{m.group(3)}\\{m.group(4)}"  # an ordered list's "1." or "1)"


def _md_table(header: Any, rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _headline(summary: RunSummary) -> list[str]:
    m = summary.manifest
    kept = m.get("stages", {}).get("select", {}).get("items")
    lines = [f"run dir: {summary.run_dir}", f"status: {_status_text(m)}",
             f"gasus {m.get('gasus')}, started {m.get('started_at')}, updated {m.get('updated_at')}",
             f"selection: {summary.rule}; kept {kept if kept is not None else '?'} of {summary.graded} graded"]
    check = m.get("check")
    if check:
        lines[-1] = f"selection: {summary.rule}; kept {check.get('kept', '?')} of {summary.graded} graded"
        lines.append(f"check: {check['contaminated_rows']} of {counted(check['rows'], 'row')} overlap the test sets "
                     f"({check['exact_hits']} exact, {check['near_hits']} near hits), "
                     f"{counted(check['duplicate_rows'], 'near-duplicate')}; all left out of training (audit.json)")
    for role, model in m.get("models", {}).items():
        ident = (model.get("sha256") or model.get("remote_name") or model.get("weights_sha256")
                 or model.get("manifest_sha256") or "")
        if isinstance(ident, dict):
            ident = ", ".join(f"{k} {v[:12]}" for k, v in ident.items())
        elif len(str(ident)) == 64:
            ident = f"sha256 {ident[:12]}"
        lines.append(f"{role}: {model.get('spec')} ({ident})")
    return lines


def markdown(summary: RunSummary) -> str:
    parts = ["# gasus run report", ""]
    for w in summary.warnings:
        parts += [f"> **{_md_cell(w)}**", ""]
    parts += [f"- {_md_line(line)}" for line in _headline(summary)] + [""]
    if summary.judge is not None:
        parts += ["## Filtered vs random baseline", "", _md_table(VERDICT_COLUMNS, verdict_rows(summary.judge)), "",
                  _md_line(_bias_line(summary.judge)), ""]
        parts += [_md_line(summary.length.text()), ""] if summary.length is not None else []
    parts += ["## Grades", "", _md_table(["score"] + list(summary.buckets), [["examples"] + _values(summary.buckets)]),
              "", _md_table(["status"] + list(summary.statuses), [["examples"] + _values(summary.statuses)]), ""]
    parts += [_md_line(summary.health.text()), ""] if summary.health is not None else []
    parts += ["## Stages", "", _md_table(("stage",) + STAGE_COLUMNS, stage_rows(summary.manifest)), ""]
    parts += ["## Plots", ""]
    for name in PLOTS:
        if (summary.run_dir / "plots" / f"{name}.png").is_file():
            parts += [f"![{CAPTIONS[name]}](plots/{name}.png)", ""]
    return "\n".join(parts)


def _bias_line(judge: JudgeReport) -> str:
    from . import bias_text

    return bias_text(judge.bias)


def _values(counts: dict[str, int]) -> list[str]:
    return [str(v) for v in counts.values()]


def _html_table(header: Any, rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
td:first-child,th:first-child{text-align:left}table.verdicts tr:last-child td{font-weight:600}
.warning{background:#fde8e8;border:2px solid #c44e52;color:#7a1c1f;padding:.6rem 1rem;font-weight:600;margin:.5rem 0}
figure{margin:1rem 0}figcaption{color:#555;font-size:.9rem}img{max-width:100%}ul{line-height:1.5}"""


def html_page(summary: RunSummary, images: dict[str, bytes]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>gasus run report</title>",
             f"<style>{STYLE}</style></head><body><h1>gasus run report</h1>"]
    parts += [f"<div class='warning'>{html.escape(w)}</div>" for w in summary.warnings]
    parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in _headline(summary)) + "</ul>")
    if summary.judge is not None:
        parts += ["<h2>Filtered vs random baseline</h2>", _html_table(VERDICT_COLUMNS, verdict_rows(summary.judge), "verdicts"),
                  f"<p>{html.escape(_bias_line(summary.judge))}</p>"]
        parts += [f"<p>{html.escape(summary.length.text())}</p>"] if summary.length is not None else []
    parts += ["<h2>Grades</h2>", _html_table(["score"] + list(summary.buckets), [["examples"] + _values(summary.buckets)]),
              _html_table(["status"] + list(summary.statuses), [["examples"] + _values(summary.statuses)])]
    parts += [f"<p>{html.escape(summary.health.text())}</p>"] if summary.health is not None else []
    parts += ["<h2>Stages</h2>", _html_table(("stage",) + STAGE_COLUMNS, stage_rows(summary.manifest))]
    parts.append("<h2>Plots</h2>")
    for name in PLOTS:
        if name in images:
            data = base64.b64encode(images[name]).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(CAPTIONS[name])}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


REPORT_FILES = ("report.md", "report.html", "plots")


def report_paths(run_dir: str | Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(inputs, outputs) of `gasus report`, for the output check: every file a run makes is an input
    (the report reads most of them, and none may be overwritten), the report's own files the outputs."""
    from ..pipeline import OUTPUT_FILES

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"{run_dir}: no such directory")
    inputs = {f"RUN_DIR/{name}": run_dir / name for name in OUTPUT_FILES if name not in REPORT_FILES}
    return inputs, {f"RUN_DIR/{name}": run_dir / name for name in REPORT_FILES}


def write_report(run_dir: str | Path, manifest: dict[str, Any] | None = None, *,
                 images: dict[str, bytes] | None = None) -> tuple[RunSummary, list[Path], dict[str, bytes]]:
    """Write plots/*.png, report.md and report.html into the run dir; returns what was read, the
    files written and the plots (pass them back in to rewrite the pages without drawing again)."""
    from ..io import atomic_write

    summary = summarize_run(run_dir, manifest)
    run_dir = Path(run_dir)
    images = images if images is not None else render_plots(summary)
    (run_dir / "plots").mkdir(exist_ok=True)
    written = []
    for name, data in images.items():
        with atomic_write(run_dir / "plots" / f"{name}.png", "wb") as handle:
            handle.write(data)
        written.append(run_dir / "plots" / f"{name}.png")
    for name, text in (("report.md", markdown(summary)), ("report.html", html_page(summary, images))):
        with atomic_write(run_dir / name) as handle:
            handle.write(text)
        written.append(run_dir / name)
    return summary, written, images


def rich_tables(summary: RunSummary) -> list[Any]:
    """The report's tables for the terminal."""
    from rich.table import Table

    out: list[Any] = []
    if summary.judge is not None:
        table = Table(title="filtered vs random baseline")
        for i, name in enumerate(VERDICT_COLUMNS):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in verdict_rows(summary.judge):
            table.add_row(*row, style="bold" if row[0] == "overall" else None)
        out += [table, _bias_line(summary.judge)]
        out += [summary.length.text()] if summary.length is not None else []
    out += [summary.health.text()] if summary.health is not None else []
    stages = Table(title=f"stages ({_status_text(summary.manifest)})")
    for i, name in enumerate(("stage",) + STAGE_COLUMNS):
        stages.add_column(name, justify="left" if i == 0 else "right")
    for row in stage_rows(summary.manifest):
        stages.add_row(*row)
    out.append(stages)
    return out
