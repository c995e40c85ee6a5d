"""Running the recipe's stages in order, each writing its files under out_dir and its entry in the manifest."""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInputError, GasusError
from ..wording import counted
from .config import CheckConfig, RunConfig


@dataclass
class StageReport:
    name: str
    seconds: float
    detail: str
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StageProgress:
    """Where a working stage is: `done` of `total` items (None while the total is not known yet, as
    while a model loads), and what it is doing now (`note`)."""

    stage: str
    done: int
    total: int | None
    note: str = ""


def _train_is_current(model_dir: Path, examples_sha256: str, settings: dict[str, Any], base: str | None) -> bool:
    """A finished run (manifest present) on the same examples, settings and base."""
    from ..io import read_json
    from ..train import resolve_base

    manifest_path = model_dir / "manifest.json"
    if not manifest_path.exists():
        return False
    manifest = read_json(manifest_path)
    return (manifest.get("data", {}).get("examples_sha256") == examples_sha256
            and manifest.get("settings") == settings
            and manifest.get("base", {}).get("spec") == resolve_base(base).spec)


OUTPUT_FILES = ("manifest.json", "scores.jsonl", "filtered.json", "baseline.json", "audit.json", "decisions.jsonl",
                "models", "answers/filtered.jsonl",
                "answers/baseline.jsonl", "judgements.jsonl", "verdicts.jsonl", "verdicts.png", "plots",
                "report.md", "report.html")


def run_paths(config: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs, outputs) of a run, each named as the user knows it, for `check_outputs`."""
    from ..backends import spec_file

    inputs = {"[data] path": config.data.path, "[check] against": _against_file(config.check),
              "[grade] grader": spec_file(config.grade.grader),
              "[judge] judge": spec_file(config.judge.judge), "[train] base": spec_file(config.train.base)}
    outputs = {f"out_dir/{name}": config.out_dir / name for name in OUTPUT_FILES}
    return inputs, outputs


def _check_inside(out: Path, model_dir: Path) -> None:
    """Refuse a model directory reached through a symlink, so a retrain never deletes outside out_dir."""
    for path in (model_dir.parent, model_dir):
        if path.is_symlink():
            raise BadInputError(f"{path}: is a symlink; gasus run does not replace a model directory through a "
                                "symlink: make it a plain directory inside out_dir")
    if not Path(os.path.realpath(model_dir)).is_relative_to(Path(os.path.realpath(out))):
        raise BadInputError(f"{model_dir}: lies outside {out}; gasus run replaces model directories only inside it")


def _training_intent(examples_sha256: str, settings: dict[str, Any], base: str | None) -> dict[str, Any]:
    from ..train import resolve_base

    return {"examples_sha256": examples_sha256, "settings": settings, "base": resolve_base(base).spec}


def _can_resume(model_dir: Path, intent: dict[str, Any]) -> bool:
    """An interrupted training of the same data, settings and base left a checkpoint to continue from."""
    from ..io import read_json
    from ..train import CHECKPOINTS

    pending = model_dir.parent / f"{model_dir.name}.pending.json"
    return (pending.is_file() and read_json(pending) == intent
            and any((model_dir / CHECKPOINTS).glob("checkpoint-*")))


def run_pipeline(config: RunConfig, *, on_stage: Callable[[StageReport], None] | None = None,
                 on_progress: Callable[[StageProgress], None] | None = None,
                 on_note: Callable[[str, str], None] | None = None) -> list[StageReport]:
    """Run every stage in order, keeping `manifest.json` up to date; returns what each did.

    `on_stage` hears of each stage as it ends; `on_progress` of each stage's items while it works
    (a stage may take hours); `on_note(stage, text)` of what a stage wants the user to know (training
    in fp32 where bf16 was asked for)."""
    # [data] max_expansion holds for every file the run reads, and only for this run.
    return contextvars.copy_context().run(_run_pipeline, config, on_stage, on_progress, on_note)


def _run_pipeline(config: RunConfig, on_stage: Callable[[StageReport], None] | None,
                  on_progress: Callable[[StageProgress], None] | None,
                  on_note: Callable[[str, str], None] | None) -> list[StageReport]:
    from ..cache import Cache, default_cache_dir
    from ..io import check_outputs, set_max_expansion
    from ..manifest import RunManifest
    from ..train import TrainConfig

    set_max_expansion(config.data.max_expansion)
    inputs, outputs = run_paths(config)
    check_outputs(outputs, inputs, protected_dir=default_cache_dir())
    # load_run_config checked the settings and the base model; this only builds them.
    settings = TrainConfig.from_preset(config.train.preset, **config.train.overrides)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    cache = Cache()
    manifest = RunManifest(config.out_dir, config.to_dict())
    manifest.file("inputs", "data", config.data.path)
    run = _Run(config, cache, manifest, on_stage, on_progress, on_note)

    examples, grades = _run_grade(run)
    kept, baseline = _run_select(run, examples, grades)
    if config.check.enabled:
        kept, baseline = _run_check(run, examples, grades)
    models = _run_train(run, settings, {"filtered": kept.kept, "baseline": baseline.kept})
    answer_files = _run_generate(run, models)
    _run_judge(run, answer_files)
    _run_report(run)
    return run.reports


@dataclass
class _Run:
    """What the stages of one run share: its config, the cache, the manifest and the reports so far."""

    config: RunConfig
    cache: Any
    manifest: Any
    on_stage: Callable[[StageReport], None] | None
    on_progress: Callable[[StageProgress], None] | None = None
    on_note: Callable[[str, str], None] | None = None
    reports: list[StageReport] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.config.out_dir

    def progress(self, stage: str, done: int, total: int | None, note: str = "") -> None:
        if self.on_progress:
            self.on_progress(StageProgress(stage, done, total, note))

    def counter(self, stage: str, total: int) -> Callable[..., None]:
        """An on_result callback (any arguments) that counts each result as `stage`'s progress."""
        done = 0

        def on_result(*_: Any, note: str = "") -> None:
            nonlocal done
            done += 1
            self.progress(stage, done, total, note)

        self.progress(stage, 0, total)
        return on_result

    def note(self, stage: str) -> Callable[[str], None]:
        return lambda text: self.on_note(stage, text) if self.on_note else None

    def done(self, name: str, started: float, detail: str, *, warning: str | list[str] | None = None,
             **summary: Any) -> None:
        warnings = warning if isinstance(warning, list) else [warning] if warning else []
        self.reports.append(StageReport(name, round(time.perf_counter() - started, 3), detail, summary, warnings))
        if self.on_stage:
            self.on_stage(self.reports[-1])

    def record(self, stage: str, items: int, parts: list[StageReport], failures: int = 0) -> None:
        from ..manifest import StageRecord

        self.manifest.stage(stage, StageRecord(items, sum(p.summary.get("model_calls", 0) for p in parts),
                                               sum(p.summary.get("cache_hits", 0) for p in parts), failures,
                                               round(sum(p.seconds for p in parts), 3)))


def _run_grade(run: _Run) -> tuple[list[Any], list[Any]]:
    """Grade every example of the dataset; returns (examples, grades)."""
    from .. import report
    from ..backends import CachedModel, load_backend
    from ..batch import BatchOptions
    from ..diagnostics import served_warning
    from ..grade import grade_examples, grading_prompt, write_scores
    from ..io import FieldMap, load_examples
    from ..manifest import model_record

    config, out, manifest = run.config, run.out, run.manifest
    manifest.begin("grade")
    t = time.perf_counter()
    examples = load_examples(config.data.path, fields=FieldMap.for_format(config.data.format),
                             max_rows=config.data.max_rows)
    run.progress("grade", 0, len(examples), "loading the grader")
    manifest.model("grader", model_record(config.grade.grader, run.cache))
    grader = CachedModel(load_backend(config.grade.grader, config.grade.backend_options()), run.cache)
    try:
        grades = grade_examples(examples, grader, prompt=grading_prompt(config.grade.dimension),
                                dimension=config.grade.dimension, mode=config.grade.mode,
                                batch=BatchOptions() if config.grade.batch else None,
                                on_grade=_grade_counter(run, len(examples)))
    finally:
        grader.backend.close()
    write_scores(out / "scores.jsonl", grades)
    manifest.file("outputs", "scores", out / "scores.jsonl")
    manifest.data["models"]["grader"]["served"] = grader.stats.served
    run.done("grade", t, f"{counted(len(grades), 'example')} graded ({counted(grader.stats.model_calls, 'model call')})",
             warning=[w for w in (report.grade_warning([g.status for g in grades]),
                                  served_warning(grader.stats.served, "grades")) if w],
             model_calls=grader.stats.model_calls, cache_hits=grader.stats.cache_hits,
             failures=grader.stats.failures)
    run.record("grade", len(grades), run.reports[-1:], sum(1 for g in grades if g.status != "ok"))
    return examples, grades


def _grade_counter(run: _Run, total: int) -> Callable[[int, Any, bool], None]:
    """on_grade for grade_examples: the grades so far, as `gasus grade`'s bar counts them."""
    cached = failed = 0

    def on_grade(i: int, grade: Any, from_cache: bool) -> None:
        nonlocal cached, failed
        cached += from_cache
        failed += grade.status != "ok"
        on_result(note=f"{cached} from cache, {failed} failed")

    on_result = run.counter("grade", total)
    return on_grade


def _run_select(run: _Run, examples: list[Any], grades: list[Any]) -> tuple[Any, Any]:
    """Select, and draw the random baseline of the same size; returns (kept, baseline)."""
    from ..diagnostics import grade_health
    from ..io import write_records
    from ..selection import PAPER_THRESHOLD, select_random, select_threshold, select_top_k

    config, out, manifest = run.config, run.out, run.manifest
    manifest.begin("select")
    t = time.perf_counter()
    if config.select.top_k is not None:
        kept = select_top_k(examples, grades, config.select.top_k)
    else:
        threshold = PAPER_THRESHOLD if config.select.threshold is None else config.select.threshold
        kept = select_threshold(examples, grades, threshold)
    if not kept.kept:
        raise GasusError(f"the selection kept no example ({kept.rule}); lower the threshold or use top_k")
    baseline = select_random(examples, len(kept.kept), config.select.seed)
    write_records(out / "filtered.json", [e.to_dict() for e in kept.kept])
    write_records(out / "baseline.json", [e.to_dict() for e in baseline.kept])
    for name in ("filtered", "baseline"):
        manifest.file("outputs", name, out / f"{name}.json")
    health = grade_health(examples, grades, {e.id for e in kept.kept})
    manifest.data["diagnostics"] = health.to_dict()
    run.done("select", t, f"kept {len(kept.kept)} of {kept.total} by {kept.rule}; baseline: {baseline.rule}",
             warning=health.warnings(), kept=len(kept.kept), rule=kept.rule)
    run.record("select", len(kept.kept), run.reports[-1:])
    return kept, baseline


def _run_check(run: _Run, examples: list[Any], grades: list[Any]) -> tuple[Any, Any]:
    """The optional check: drop rows that overlap the test sets, and all but the best of near-duplicates;
    returns the (kept, baseline) that replace the selection's."""
    out, manifest = run.out, run.manifest
    manifest.begin("check")
    t = time.perf_counter()
    kept, baseline, found = _check_stage(run.config, examples, grades, out)
    for name in ("audit", "decisions"):
        manifest.file("outputs", name, out / f"{name}.json{'l' if name == 'decisions' else ''}")
    for name in ("filtered", "baseline"):
        manifest.file("outputs", name, out / f"{name}.json")
    manifest.data["check"] = {**found, "kept": len(kept.kept)}
    run.done("check", t, f"{found['contaminated_rows']} of {counted(found['rows'], 'row')} overlap the test sets "
                         f"({found['exact_hits']} exact, {found['near_hits']} near hits), "
                         f"{counted(found['duplicate_rows'], 'near-duplicate')}; kept {len(kept.kept)} by {kept.rule}",
             **{k: found[k] for k in ("contaminated_rows", "duplicate_rows")})
    run.record("check", found["rows"], run.reports[-1:], found["contaminated_rows"])
    return kept, baseline


def _run_train(run: _Run, settings: Any, subsets: dict[str, list[Any]]) -> dict[str, Path]:
    """Train a model on each subset; an interrupted training of the same data and settings resumes from
    its checkpoint. Returns each model's directory by the subset's name."""
    from ..io import write_json
    from ..train import data_fingerprint, train

    config, out, cache, manifest = run.config, run.out, run.cache, run.manifest
    manifest.begin("train")
    manifest.model("base", _base_record(config.train.base, cache))
    models = {}
    for name, subset in subsets.items():
        t = time.perf_counter()
        model_dir = out / "models" / name
        intent = _training_intent(data_fingerprint(subset)["examples_sha256"], settings.to_dict(), config.train.base)
        if _train_is_current(model_dir, intent["examples_sha256"], settings.to_dict(), config.train.base):
            run.done(f"train {name}", t, f"reused {model_dir} (same data and settings)")
        else:
            _check_inside(out, model_dir)
            resume = _can_resume(model_dir, intent)
            if not resume:
                model_dir.parent.mkdir(parents=True, exist_ok=True)
                write_json(model_dir.parent / f"{name}.pending.json", intent)
            stage = f"train {name}"
            run.progress(stage, 0, None, "starting")

            def on_step(step: int, total: int, loss: float | None, stage: str = stage) -> None:
                run.progress(stage, step, total, "" if loss is None else f"loss {loss:.4f}")

            result = train(subset, settings, model_dir, base=config.train.base, data_source=out / f"{name}.json",
                           replace=not resume, resume=resume, progress=on_step, notify=run.note(stage),
                           status=lambda text, stage=stage: run.progress(stage, 0, None, text))
            trained = result.manifest["train"]
            how = "resumed from its last checkpoint, " if resume else ""
            run.done(f"train {name}", t,
                     f"{how}{counted(trained['steps'], 'step')}, mean loss {trained['train_loss']:.3f} -> {model_dir}",
                     tokens_per_second=trained["tokens_per_second"])
        models[name] = model_dir
        manifest.model(f"{name} model", {"spec": f"hf:{model_dir}", **_model_dir_record(model_dir, cache)})
    run.record("train", 2, run.reports[-2:])
    return models


def _run_generate(run: _Run, models: dict[str, Path]) -> dict[str, Path]:
    """Answer the test sets with each model; returns each answers file by the model's name."""
    from ..backends import CachedModel, load_backend
    from ..generate import generate_answers
    from ..io import write_jsonl
    from ..testsets import load_testsets

    config, out, manifest = run.config, run.out, run.manifest
    manifest.begin("generate")
    questions = load_testsets(list(config.generate.testsets), config.generate.testsets_dir,
                              limit=config.generate.limit)
    answer_files = {}
    for name, model_dir in models.items():
        t = time.perf_counter()
        stage = f"generate {name}"
        run.progress(stage, 0, len(questions), "loading the model")
        model = CachedModel(load_backend(f"hf:{model_dir}", config.generate.backend_options()), run.cache)
        try:
            result = generate_answers(model, questions, model_name=name, max_new_tokens=config.generate.max_new_tokens,
                                      on_result=run.counter(stage, len(questions)))
        finally:
            model.backend.close()
        if result.failed:
            raise GasusError(f"{counted(len(result.failed), 'answer')} of the {name} model failed: {result.failed[0][1]}")
        answer_files[name] = out / "answers" / f"{name}.jsonl"
        answer_files[name].parent.mkdir(exist_ok=True)
        write_jsonl(answer_files[name], (a.to_dict() for a in result.answers))
        manifest.file("outputs", f"answers/{name}", answer_files[name])
        run.done(f"generate {name}", t, f"{counted(len(result.answers), 'answer')} ({counted(model.stats.model_calls, 'model call')})",
                 model_calls=model.stats.model_calls, cache_hits=model.stats.cache_hits)
    run.record("generate", 2 * len(questions), run.reports[-2:])
    return answer_files


def _run_judge(run: _Run, answer_files: dict[str, Path]) -> None:
    """Judge the filtered model (A) against the baseline (B), in the orders asked, and tally verdicts."""
    from .. import judge as jd
    from .. import report
    from ..backends import CachedModel, load_backend
    from ..batch import BatchOptions
    from ..diagnostics import judge_length, served_warning
    from ..io import write_jsonl
    from ..manifest import model_record

    config, out, manifest = run.config, run.out, run.manifest
    manifest.begin("judge")
    t = time.perf_counter()
    pairs = jd.pair_answers(jd.load_answers(answer_files["filtered"]), jd.load_answers(answer_files["baseline"]),
                            answer_files["filtered"], answer_files["baseline"])
    orders = jd.ORDER_CHOICES[config.judge.order]
    run.progress("judge", 0, len(pairs) * len(orders), "loading the judge")
    manifest.model("judge", model_record(config.judge.judge, run.cache))
    judge_model = CachedModel(load_backend(config.judge.judge, config.judge.backend_options()), run.cache)
    try:
        judgements = jd.run_judge(judge_model, pairs, orders, mode=config.judge.mode,
                                  batch=BatchOptions() if config.judge.batch else None,
                                  on_result=run.counter("judge", len(pairs) * len(orders)))
    finally:
        judge_model.backend.close()
    write_jsonl(out / "judgements.jsonl", (j.to_dict() for j in judgements))
    result = jd.summarize(judgements, rule=config.judge.rule, orders=orders)
    write_jsonl(out / "verdicts.jsonl", (v.to_dict() for v in result.verdicts.verdicts))
    report.plot_verdicts(result.tallies, out / "verdicts.png", title="filtered vs random baseline")
    for name in ("judgements", "verdicts"):
        manifest.file("outputs", name, out / f"{name}.jsonl")
    manifest.data["models"]["judge"]["served"] = judge_model.stats.served
    run.done("judge", t, f"{counted(len(judgements), 'judgement')} ({counted(judge_model.stats.model_calls, 'model call')})",
             warning=[w for w in (report.judge_warning([j.status for j in judgements]),
                                  served_warning(judge_model.stats.served, "judgements")) if w],
             model_calls=judge_model.stats.model_calls, cache_hits=judge_model.stats.cache_hits,
             failures=judge_model.stats.failures, report=result)
    run.record("judge", len(judgements), run.reports[-1:], sum(1 for j in judgements if j.status != "ok"))
    manifest.data["results"] = {"testsets": [t.to_dict() for t in result.tallies], "bias": result.bias.to_dict(),
                                "length": judge_length(pairs, judgements).to_dict()}


def _run_report(run: _Run) -> None:
    """report.md and report.html, read back from the files the stages wrote and the manifest."""
    from ..report.run import write_report

    out, manifest = run.out, run.manifest
    manifest.begin("report")
    t = time.perf_counter()
    _, written, images = write_report(out, manifest.data)
    run.record("report", len(written), [StageReport("report", round(time.perf_counter() - t, 3), "")])
    manifest.finish()
    # once more, so the pages show the finished run and its report stage (the plots are kept)
    run_summary, _, _ = write_report(out, manifest.data, images=images)
    run.done("report", t, f"{out / 'report.html'} and {out / 'report.md'}", run=run_summary)


def _against_file(check: CheckConfig) -> str | None:
    from ..io import file_kind

    against = check.against
    return against if against and (Path(against).exists() or file_kind(against) is not None) else None


def _check_stage(config: RunConfig, examples: list[Any], grades: list[Any], out: Path) -> tuple[Any, Any, dict]:
    """Audit the dataset (audit.json), select again from the rows it leaves (the same rule, so top_k
    still keeps k) and draw the baseline of equal size from them too; decisions.jsonl says why for
    every row. Returns (kept, baseline, the audit's summary)."""
    from .. import audit
    from ..io import write_json, write_jsonl, write_records
    from ..selection import (
        PAPER_THRESHOLD,
        decisions,
        excluded_rows,
        select_random,
        select_threshold,
        select_top_k,
        without_rows,
    )

    check = config.check
    against = _against_file(check)
    if against:
        references = audit.file_references(against, max_rows=config.data.max_rows)  # rows need no output
    else:
        references = audit.testset_references(check.against or list(config.generate.testsets),
                                              config.generate.testsets_dir)
    found = audit.audit(examples, references, check.audit_config(), self_check=check.duplicates)
    write_json(out / "audit.json", found.to_dict())
    contaminated = {h["index"] for h in found.hits if h["testset"] != "self"}
    excluded = excluded_rows(examples, grades, contaminated, found.groups)
    left, left_grades = without_rows(examples, grades, excluded)
    if config.select.top_k is not None:
        rule, kept = "top_k", select_top_k(left, left_grades, config.select.top_k)
    else:
        threshold = PAPER_THRESHOLD if config.select.threshold is None else config.select.threshold
        rule, kept = "threshold", select_threshold(left, left_grades, threshold)
    if not kept.kept:
        raise GasusError(f"after the check the selection kept no example ({kept.rule}); see {out / 'audit.json'}")
    baseline = select_random(left, len(kept.kept), config.select.seed)
    write_jsonl(out / "decisions.jsonl", decisions(examples, grades, kept.kept, rule, excluded))
    write_records(out / "filtered.json", [e.to_dict() for e in kept.kept])
    write_records(out / "baseline.json", [e.to_dict() for e in baseline.kept])
    return kept, baseline, found.summary


def _model_dir_record(model_dir: Path, cache: Any = None) -> dict[str, Any]:
    """A model directory's identity: the sha256 of its weights file(s) (memoised in the cache)."""
    from ..backends.base import file_sha256

    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    if not weights and (model_dir / "manifest.json").is_file():
        return {"manifest_sha256": file_sha256(model_dir / "manifest.json")}
    return {"weights_sha256": {w.name: file_sha256(w, cache) for w in weights}}


def _base_record(spec: str | None, cache: Any) -> dict[str, Any]:
    from ..backends.base import file_sha256
    from ..train import resolve_base

    base = resolve_base(spec)
    record: dict[str, Any] = {"spec": base.spec, "kind": base.kind}
    if base.kind == "gguf":
        record["sha256"] = file_sha256(base.location, cache)
    elif base.kind == "dir":
        record.update(_model_dir_record(Path(base.location), cache))
    else:
        record["remote_name"] = base.location
    return record
