"""gasus run: the config file's checks, and the whole recipe end to end on the embedded model."""

from __future__ import annotations

import json

import pytest

from gasus.errors import BadInputError
from gasus.pipeline import load_run_config
from tests.conftest import FIXTURES, run_cli


def _write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_config_defaults_and_relative_paths(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    cfg = load_run_config(_write(tmp_path, '[data]\npath = "d.json"\n[train]\npreset = "cpu-smoke"\nmax_steps = 3\n'))
    assert cfg.data.path == str(tmp_path / "d.json")
    assert cfg.out_dir == tmp_path / "gasus-run"
    assert (cfg.grade.mode, cfg.judge.order, cfg.judge.rule, cfg.generate.testsets) == ("generate", "both", "paper", ("all",))
    assert cfg.train.overrides == {"max_steps": 3}


@pytest.mark.parametrize("text,message", [
    ("[grade]\nmode = 'expected'\n", r"run\.toml: \[data\] path is required"),
    ("[data]\npath = 'd.json'\n[grade]\nmode = 'fast'\n", r"\[grade\] mode must be generate, score or expected, got 'fast'"),
    ("[data]\npath = 'd.json'\n[select]\nthreshold = 4\ntop_k = 3\n", r"\[select\] give threshold or top_k, not both"),
    ("[data]\npath = 'd.json'\n[select]\nthreshold = 9\n", r"\[select\] threshold must be within the score scale 0-5, got 9"),
    ("[data]\npath = 'd.json'\n[judge]\ncolour = 'red'\n", r"unknown setting\(s\) in \[judge\]: colour"),
    ("[data]\npath = 'd.json'\n[evaluate]\n", r"unknown setting\(s\) evaluate"),
    ("[data\n", r"run\.toml: invalid TOML"),
])
def test_config_errors(tmp_path, text, message):
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(BadInputError, match=message):
        load_run_config(_write(tmp_path, text))


def test_run_cli_bad_config_exit_2(tmp_path):
    (tmp_path / "x").write_text("[]")
    result = run_cli("run", str(_write(tmp_path, "[select]\ntop_k = 0\n[data]\npath = 'x'\n")))
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {tmp_path / 'run.toml'}: [select] top_k must be at least 1"


@pytest.mark.slow
def test_whole_recipe_on_the_embedded_model(tmp_path):
    """Grade 40 fixture examples, keep the 8 best and 8 random, train each 2 steps, answer the
    first question of each toy test set with both, judge in both orders; a rerun reuses
    everything. Needs nothing beside the clone."""
    config = tmp_path / "smoke.toml"
    text = (FIXTURES / "smoke_run.toml").read_text()
    text = text.replace('"../out/smoke-run"', '"out"').replace('"mini_alpaca.json"', f'"{FIXTURES / "mini_alpaca.json"}"')
    text = text.replace('"testsets"', f'"{FIXTURES / "testsets"}"')
    config.write_text(text)
    first = run_cli("run", str(config), "--summary-json", str(tmp_path / "s.json"))
    assert first.exit_code == 0, first.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "answers", "baseline.json", "filtered.json", "judgements.jsonl", "manifest.json", "models", "plots",
        "report.html", "report.md", "scores.jsonl", "verdicts.jsonl", "verdicts.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    # Where the two models wrote the same answer (whether they do is the CPU's rounding), both
    # orders render the same judge prompt: one call serves both.
    same = sum(a == b for a, b in zip(*(_answers(out, name) for name in ("filtered", "baseline"))))
    assert {s: (r["items"], r["model_calls"]) for s, r in manifest["stages"].items()} == {
        "grade": (40, 40), "select": (8, 0), "train": (2, 0), "generate": (8, 8), "judge": (8, 8 - same),
        "report": (7, 0)}
    assert manifest["status"] == "finished" and manifest["outputs"]["scores"]["rows"] == 40
    assert len(manifest["models"]["filtered model"]["weights_sha256"]["model.safetensors"]) == 64
    report_md = (out / "report.md").read_text()
    assert "| grade | 40 | 40 | 0 | 0 |" in report_md and "![Training loss of each model](plots/loss.png)" in report_md
    assert (out / "report.html").read_text().count("src='data:image/png;base64,") == 5
    assert len(json.loads((out / "filtered.json").read_text())) == 8
    assert len(json.loads((out / "baseline.json").read_text())) == 8
    assert len((out / "scores.jsonl").read_text().splitlines()) == 40
    for name in ("filtered", "baseline"):
        model_manifest = json.loads((out / "models" / name / "manifest.json").read_text())
        assert model_manifest["data"]["rows"] == 8 and model_manifest["train"]["steps"] == 2
        answers = [json.loads(line) for line in (out / "answers" / f"{name}.jsonl").read_text().splitlines()]
        assert [(a["testset"], a["id"], a["model"]) for a in answers] == [(s, i, name) for s, i in FIRST_QUESTIONS]
    judgements = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert [(j["testset"], j["id"], j["order"]) for j in judgements] == [
        (s, i, o) for s, i in FIRST_QUESTIONS for o in ("ab", "ba")]
    assert all(j["status"] == "ok" for j in judgements)
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 4
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["command"] == "run" and summary["items"] == 8
    assert summary["model_calls"] == 40 + 4 + 4 + 8 - same

    again = run_cli("run", str(config), "--summary-json", str(tmp_path / "s2.json"))
    assert again.exit_code == 0, again.output
    summary = json.loads((tmp_path / "s2.json").read_text())
    assert (summary["model_calls"], summary["cache_hits"]) == (0, 56)
    assert [s["detail"].startswith("reused") for s in summary["stages"] if s["name"].startswith("train")] == [True, True]
    rerun = json.loads((out / "manifest.json").read_text())
    assert rerun["outputs"] == manifest["outputs"] and rerun["stages"]["judge"]["model_calls"] == 0

    # A new threshold reuses every grade: no grader call, only the stages after it rerun.
    lower = run_cli("run", str(config), "--threshold", "0", "--summary-json", str(tmp_path / "s3.json"))
    assert lower.exit_code == 0, lower.output
    third = json.loads((out / "manifest.json").read_text())
    assert (third["stages"]["grade"]["model_calls"], third["stages"]["grade"]["cache_hits"]) == (0, 40)
    assert third["stages"]["select"]["items"] == 40 and third["outputs"]["scores"] == manifest["outputs"]["scores"]


FIRST_QUESTIONS = [("vicuna", "1"), ("koala", "toy_koala_0"), ("wizardlm", "1"), ("sinstruct", "toy_task_0")]


def _answers(out, name):
    return [json.loads(line)["answer"] for line in (out / "answers" / f"{name}.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the pipeline's logic with scripted stages


class _FakeBackend:
    name = label = "fake"
    cache = None

    def identity(self):
        return "fake"

    def close(self):
        pass


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    """Every model stage scripted (grades, training, answers, judgements), so the pipeline's own
    logic runs in a second: `scripted.scores` and `scripted.judge_status` steer what comes back."""
    import types
    from pathlib import Path

    from gasus import backends as backends_module
    from gasus import generate, grade, judge, train
    from gasus.records import Answer, Grade, Judgement

    state = types.SimpleNamespace(scores=None, judge_status="ok", trained=[], interrupt_train=False)

    def fake_grade(examples, grader, *, prompt, dimension, mode, on_grade=None, **_):
        scores = state.scores or [4.5 + 0.5 * (i % 2) for i in range(len(examples))]  # all kept, not collapsed
        grades = [Grade(e.id, i, s, "ok" if s is not None else "unparsed", "fake", dimension, mode,
                        None if s is not None else "no score") for i, (e, s) in enumerate(zip(examples, scores))]
        for i, g in enumerate(grades):
            if on_grade is not None:
                on_grade(i, g, i % 4 == 0)  # every 4th from the cache
        return grades

    def fake_train(subset, settings, model_dir, *, base=None, data_source=None, replace=False, **kwargs):
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        if state.interrupt_train:  # killed after its first checkpoint
            (model_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
            raise KeyboardInterrupt
        state.trained.append((model_dir.name, kwargs.get("resume", False)))
        if kwargs.get("status"):
            kwargs["status"]("loading the base model embedded")
        for step, loss in ((1, 2.0), (2, 1.0)):
            if kwargs.get("progress"):
                kwargs["progress"](step, 2, loss)
        manifest = {"data": train.data_fingerprint(subset), "settings": settings.to_dict(),
                    "base": {"spec": train.resolve_base(base).spec},
                    "train": {"steps": 2, "train_loss": 1.5, "tokens_per_second": 10.0,
                              "loss_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]}}
        (model_dir / "manifest.json").write_text(json.dumps(manifest))
        return train.TrainResult(model_dir, manifest)

    def fake_answers(model, questions, *, model_name=None, max_new_tokens=0, on_result=None, **_):
        for i in range(len(questions)):
            if on_result is not None:
                on_result(i, None)
        return generate.GenerationResult(
            [Answer(q.testset, q.id, q.question, f"{model_name} answer", model_name) for q in questions], [])

    def fake_judge(model, pairs, orders, *, mode="generate", on_result=None, **_):
        ok = state.judge_status == "ok"
        for i in range(len(pairs) * len(orders)):
            if on_result is not None:
                on_result(i, None)
        return [Judgement(p.testset, p.id, o, [8, 6] if ok else None, state.judge_status, "8 6" if ok else "?")
                for p in pairs for o in orders]

    monkeypatch.setattr(grade, "grade_examples", fake_grade)
    monkeypatch.setattr(train, "train", fake_train)
    monkeypatch.setattr(generate, "generate_answers", fake_answers)
    monkeypatch.setattr(judge, "run_judge", fake_judge)
    monkeypatch.setattr(backends_module, "load_backend", lambda spec, options=None: _FakeBackend())
    return state


def _scripted_config(tmp_path, extra=""):
    return _write(tmp_path, f'out_dir = "out"\n[data]\npath = "{FIXTURES / "mini_alpaca.json"}"\n'
                            f'[train]\npreset = "cpu-smoke"\n[generate]\ntestsets = ["vicuna", "koala"]\n'
                            f'limit = 2\ntestsets_dir = "{FIXTURES / "testsets"}"\n' + extra)


def test_threshold_zero_keeps_every_scored_example(tmp_path, scripted):
    from gasus.pipeline import run_pipeline

    scripted.scores = [float(i % 6) for i in range(40)]  # 0..5: 6 of them reach 4.5, all 40 reach 0
    cfg = load_run_config(_scripted_config(tmp_path, "[select]\nthreshold = 0\n"))
    run_pipeline(cfg)
    assert len(json.loads((tmp_path / "out" / "filtered.json").read_text())) == 40


def test_failed_grades_and_unparsed_judgements_warn(tmp_path, scripted):
    scripted.scores = [None, None, None] + [4.5 + 0.5 * (i % 2) for i in range(37)]
    scripted.judge_status = "unparsed"
    result = run_cli("run", str(_scripted_config(tmp_path)))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        "Warning: 3 of 40 grades failed (3 unparsed): those examples have no score and are never kept",
        "Warning: 8 of 8 judgements have no usable score pair (8 unparsed): their questions count in "
        "#Testset as unjudged",
    ]


def test_interrupted_run_says_what_is_kept(tmp_path, scripted):
    scripted.interrupt_train = True
    result = run_cli("run", str(_scripted_config(tmp_path)))
    assert result.exit_code == 130
    assert result.output.splitlines()[-1] == (
        f"Interrupted: model calls made so far are in the cache and finished stages' files are in "
        f"{tmp_path / 'out'}; a model interrupted in training resumes from its last checkpoint; "
        "rerun the same command to continue.")


def test_config_with_five_mistakes_lists_all_five_one_per_line_before_any_model_loads(tmp_path, scripted):
    scripted.scores = None
    config = _write(tmp_path, f'[data]\npath = "{FIXTURES / "mini_alpaca.json"}"\n'
                              '[grade]\nconcurrency = 0\n'
                              '[train]\npreset = "alpagasus-70b"\nwarmup_typo = 0.1\n'
                              '[generate]\ntestsets = ["vicuna", "mt-bench"]\n'
                              '[judge]\njudge = "gpt4"\n')
    result = run_cli("run", str(config))
    assert result.exit_code == 2
    from gasus.backends import BACKENDS

    assert result.output == (
        f"Error: {config}: 5 problems in the config:\n"
        "  [grade] concurrency must be at least 1\n"
        "  [train] unknown training setting(s): warmup_typo\n"
        "  [train] unknown preset 'alpagasus-70b': choose one of alpagasus-7b, alpagasus-13b, cpu-smoke\n"
        "  [generate] unknown test set 'mt-bench': choose from vicuna, koala, wizardlm, sinstruct or all\n"
        "  [judge] cannot read model spec 'gpt4': expected BACKEND:MODEL with BACKEND one of "
        f"{', '.join(sorted(BACKENDS))}, or a .gguf path\n")
    assert not (tmp_path / "gasus-run").exists()


def test_backend_options_in_stage_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    cfg = load_run_config(_write(tmp_path, f'[data]\npath = "{FIXTURES / "mini_alpaca.json"}"\n'
                                           '[grade]\ngrader = "openai:gpt-3.5-turbo"\nbase_url = "http://127.0.0.1:9/v1"\n'
                                           'api_key_env = "MY_KEY"\nconcurrency = 16\nmax_attempts = 3\n'
                                           'require_snapshot = "gpt-3.5-turbo-0613"\n'
                                           '[generate]\nthreads = 2\n'))
    options = cfg.grade.backend_options()
    assert (options.base_url, options.api_key_env, options.concurrency, options.max_attempts) == (
        "http://127.0.0.1:9/v1", "MY_KEY", 16, 3)
    assert cfg.generate.backend_options().n_threads == 2
    assert cfg.judge.backend_options().concurrency == 4
    assert (options.require_snapshot, cfg.judge.backend_options().require_snapshot) == ("gpt-3.5-turbo-0613", None)


@pytest.mark.parametrize("text,message", [
    ("[data]\npath = 'missing.json'\n", r"\[data\] path .*missing\.json: no such file"),
    ("[data]\npath = 'run.toml'\n[generate]\nlimit = 'two'\n", r"\[generate\] limit must be a whole number, got 'two'"),
    ("[data]\npath = 'run.toml'\n[judge]\njudge = 'openai:gpt-4'\n",
     r"\[judge\] the judge openai:gpt-4 needs an API key: set OPENAI_API_KEY \(or name another variable with api_key_env\)"),
    ("[data]\npath = 'run.toml'\n[train]\nbase = 'nowhere/model.gguf'\n", r"\[train\] base model nowhere/model\.gguf: no such GGUF file"),
])
def test_config_values_checked_at_load(tmp_path, text, message):
    with pytest.raises(BadInputError, match=message):
        load_run_config(_write(tmp_path, text))


@pytest.mark.parametrize("text,message", [
    ('out_dir = 5\n[data]\npath = "d.json"\n', "out_dir must be a string (a directory), got 5"),
    ('out_dir = "o\\u0000ut"\n[data]\npath = "d.json"\n',
     "out_dir holds a NUL byte, which no file or name can hold: 'o\\x00ut'"),
    ('[data]\npath = "d.json"\n[generate]\ntestsets = 5\n', "[generate] testsets must be a string or a list of strings, got 5"),
    ('[data]\npath = "d.json"\n[generate]\ntestsets = ["vicuna", 5]\n',
     "[generate] testsets must be a string or a list of strings, got ['vicuna', 5]"),
    ('[data]\npath = "d.json"\nmax_rows = -5\n', "[data] max_rows must be 0 (no limit) or more, got -5"),
    ('[data]\npath = "d.json"\nformat = "csv"\n', "[data] format must be alpaca or dolly, got 'csv'"),
    ('[data]\npath = 5\n', "[data] path must be a string, got 5"),
    ('[data]\npath = "d\\u0000.json"\n', "[data] path holds a NUL byte, which no file or name can hold: 'd\\x00.json'"),
    ('[data]\npath = "d.json"\n[generate]\ntestsets_dir = "t\\u0000"\n',
     "[generate] testsets_dir holds a NUL byte, which no file or name can hold: 't\\x00'"),
    ('[data]\npath = "d.json"\n[generate]\ntestsets = ["vicuna\\u0000"]\n',
     "[generate] testsets holds a NUL byte, which no file or name can hold: ('vicuna\\x00',)"),
    ('[data]\npath = "d.json"\n[train]\nbase = "b\\u0000.gguf"\n',
     "[train] base holds a NUL byte, which no file or name can hold: 'b\\x00.gguf'"),
    ('[data]\npath = "d.json"\n[train]\nepochs = "three"\n', "[train] epochs must be a number, got 'three'"),
    ('[data]\npath = "d.json"\n[train]\nbatch_size = 4.5\n', "[train] batch_size must be a whole number, got 4.5"),
    ('[data]\npath = "d.json"\n[train]\nlora = "yes"\n', "[train] lora must be true or false, got 'yes'"),
    ('[data]\npath = "d.json"\n[train]\nlearning_rate = inf\n', "[train] learning_rate must be a finite number, got inf"),
    ('[data]\npath = "d.json"\n[check]\nthreshold = nan\n', "[check] threshold must be a finite number, got nan"),
    ('[data]\npath = "d.json"\n[grade]\napi_key_env = "K\\u0000"\n',
     "[grade] api_key_env holds a NUL byte, which no file or name can hold: 'K\\x00'"),
])
def test_config_field_types_are_config_errors_before_anything_is_made(tmp_path, text, message):
    """Issue 23 item 15: a value of the wrong type, or a NUL byte in a path or name, is one config-worded
    line and exit code 2, and out_dir is not made."""
    (tmp_path / "d.json").write_text("[]")
    config = _write(tmp_path, text)
    result = run_cli("run", str(config))
    assert (result.exit_code, result.output) == (2, f"Error: {config}: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["d.json", "run.toml"]


@pytest.mark.parametrize("args,message", [
    (["select", "{t}/d\0.json", "{t}/s.jsonl", "-o", "{t}/k.json"], "DATASET: '{t}/d\\x00.json'"),
    (["grade", "{t}/d.json", "-o", "{t}/out\0.jsonl"], "-o/--output: '{t}/out\\x00.jsonl'"),
    (["generate", "embedded", "--testset", "vicuna", "--testset", "koala\0", "-o", "{t}/a.jsonl"],
     "--testset: 'koala\\x00'"),
    (["select", "{t}/d.json", "{t}/s.jsonl", "--output={t}/k\0.json"], "-o/--output: '{t}/k\\x00.json'"),
    (["judge", "{t}/a.jsonl", "--", "{t}/b\0.jsonl", "-o", "{t}/j.jsonl"], "ANSWERS_B: '{t}/b\\x00.jsonl'"),
    (["cache", "stats", "--summary-json", "{t}/s\0.json"], "--summary-json: '{t}/s\\x00.json'"),
])
def test_nul_byte_in_a_command_line_path_is_one_line_error(tmp_path, args, message):
    """Issue 23 item 15: a NUL byte in any argument is refused by the argument's name, before anything runs."""
    t = str(tmp_path)
    (tmp_path / "d.json").write_text("[]")
    before = sorted(tmp_path.iterdir())
    result = run_cli(*(a.replace("{t}", t) for a in args))
    assert (result.exit_code, result.output) == (
        2, f"Error: {message.replace('{t}', t)} holds a NUL byte, which no file or name can hold\n")
    assert sorted(tmp_path.iterdir()) == before


def test_run_manifest_and_report(tmp_path, scripted):
    import hashlib

    config = _scripted_config(tmp_path)
    result = run_cli("run", str(config))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["current_stage"]) == ("finished", None)
    assert manifest["config"]["select"] == {"threshold": None, "top_k": None, "seed": 0}
    assert manifest["libraries"]["gasus"] == manifest["gasus"]
    stages = manifest["stages"]
    assert list(stages) == ["grade", "select", "train", "generate", "judge", "report"]
    assert [stages[s]["items"] for s in stages] == [40, 40, 2, 8, 8, 7]
    assert all(set(r) == {"items", "model_calls", "cache_hits", "failures", "seconds"} for r in stages.values())
    scores = manifest["outputs"]["scores"]
    assert scores["sha256"] == hashlib.sha256((out / "scores.jsonl").read_bytes()).hexdigest()
    assert (scores["rows"], manifest["outputs"]["filtered"]["rows"], manifest["outputs"]["judgements"]["rows"]) == (40, 40, 8)
    assert manifest["inputs"]["data"]["rows"] == 40
    assert manifest["models"]["grader"]["spec"] == "embedded"
    assert len(manifest["models"]["grader"]["sha256"]) == 64
    assert set(manifest["models"]) == {"grader", "base", "filtered model", "baseline model", "judge"}

    md = (out / "report.md").read_text()
    # fake judge: 8 6 in both orders, so A wins "ab" and loses "ba": a tie on every question
    assert "| vicuna | 0 | 2 | 0 | 0 | 2 | 1.000 [1.000, 1.000] |" in md
    assert "| overall | 0 | 4 | 0 | 0 | 4 | 1.000 [1.000, 1.000] |" in md
    assert "| grade | 40 | 0 | 0 | 0 |" in md and "| report | 7 | 0 | 0 | 0 |" in md
    assert "- status: finished\n" in md
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["bias.png", "loss.png", "scores.png", "sweep.png",
                                                                 "verdicts.png"]
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 5
    assert "http" not in page.replace("http-equiv", "")
    assert "Warning" not in page
    assert "filtered vs random baseline" in result.output

    again = run_cli("run", str(config))
    assert again.exit_code == 0, again.output
    second = json.loads((out / "manifest.json").read_text())
    assert second["outputs"] == manifest["outputs"] and second["models"] == manifest["models"]


def test_report_command_shows_warnings(tmp_path, scripted):
    scripted.judge_status = "unparsed"
    assert run_cli("run", str(_scripted_config(tmp_path))).exit_code == 0
    result = run_cli("report", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ("Warning: 8 of 8 judgements have no usable score pair (8 unparsed): "
                                             "their questions count in #Testset as unjudged")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<div class='warning'>Warning: 8 of 8 judgements" in page
    # nothing judged: no score at all, rather than 1.000 (a draw)
    assert "| vicuna | 0 | 0 | 0 | 2 | 2 | - |" in (tmp_path / "out" / "report.md").read_text()


def test_run_report_shows_score_health_and_length(tmp_path, scripted):
    """A collapsed grader warns in the run and its report; the manifest and report hold the score
    health and the judge's length line (the scripted answers are equally long: nothing decided)."""
    scripted.scores = [5.0] * 36 + [1.0] * 4
    result = run_cli("run", str(_scripted_config(tmp_path)))
    assert result.exit_code == 0, result.output
    warning = ("Warning: scores collapsed: 36 of 40 ok grades (90.0%) are 5 (collapsed at >= 80%); "
               "the grader hardly tells examples apart")
    assert warning in result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    d = manifest["diagnostics"]
    assert (d["ok"], d["modal_score"], d["modal_share"], d["collapsed"]) == (40, 5.0, 0.9, True)
    assert sum(q["kept"] for q in d["kept_share_by_length_quintile"]) == 36
    assert manifest["results"]["length"]["judgements"] == 8 and manifest["results"]["length"]["decided"] == 0
    assert manifest["models"]["grader"]["served"] == {} and manifest["models"]["judge"]["served"] == {}
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"> **{warning}**" in md
    assert "Score health: modal score 5 (90.0% of 40 ok grades, collapsed); 2 distinct score(s)" in md
    assert ("Length: no decided judgement (scores or lengths equal); length-controlled winning score 1.000 "
            "[1.000, 1.000] (per order, uncontrolled: 1.000)") in md


def test_report_of_a_folder_without_a_run(tmp_path):
    result = run_cli("report", str(tmp_path))
    assert result.exit_code == 2
    assert result.output == f"Error: {tmp_path}: no manifest.json here; is it the out_dir of a gasus run?\n"


def test_run_killed_during_training_resumes(tmp_path, scripted):
    config = _scripted_config(tmp_path)
    scripted.interrupt_train = True
    assert run_cli("run", str(config)).exit_code == 130
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["status"], manifest["current_stage"], list(manifest["stages"])) == (
        "running", "train", ["grade", "select"])
    scripted.interrupt_train = False
    result = run_cli("run", str(config))
    assert result.exit_code == 0, result.output
    assert scripted.trained == [("filtered", True), ("baseline", False)]
    assert "train filtered" in result.output and "resumed from its last checkpoint, 2 steps" in result.output


def test_run_shows_each_stage_working_named_in_its_progress_bar(tmp_path, scripted, monkeypatch):
    """`gasus run` draws each working stage's bar on stderr, named as the stage (it used to say
    nothing until a stage ended: minutes, at the paper's scale hours)."""
    import re

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # stderr drawn as on a terminal
    monkeypatch.setenv("COLUMNS", "160")
    result = run_cli("run", str(_scripted_config(tmp_path)))
    assert result.exit_code == 0, result.output
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr).replace("\r", "\n")  # a redraw a line
    spinner = "".join(chr(c) for c in range(0x2800, 0x2900))
    bars = {line.split("\u2501")[0].strip(" " + spinner) for line in screen.splitlines()
            if "\u2501" in line}  # the bar's own character
    assert bars == {"grade", "train filtered", "train baseline", "generate filtered", "generate baseline", "judge"}
    assert re.search(r"grade +\u2501+ 40/40 10 from cache, 0 failed ", screen), screen
    assert re.search(r"train filtered +\u2501+ 2/2 loss 1\.0000 ", screen), screen
    assert re.search(r"train baseline +\u2501+ 0/\? loading the base model embedded ", screen), screen
    assert re.search(r"generate baseline +\u2501+ 4/4 ", screen), screen
    assert re.search(r"judge +\u2501+ 8/8 ", screen), screen


def test_demo_run_dir_and_threshold(tmp_path, scripted, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", "--demo", "--run-dir", "d", "--threshold", "3")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["config"]["out_dir"] == str(tmp_path / "d")
    assert manifest["config"]["select"] == {"threshold": 3.0, "top_k": None, "seed": 0}
    assert manifest["config"]["grade"]["mode"] == "expected"
    assert manifest["inputs"]["data"]["path"] == str(FIXTURES / "mini_alpaca.json")
    assert (tmp_path / "d" / "report.html").is_file()


@pytest.mark.parametrize("args,message", [
    ((), "Error: give a CONFIG file, or --demo"),
    (("x.toml", "--demo"), "Error: give a CONFIG file or --demo, not both"),
    (("--demo", "--threshold", "nan"), "Error: --threshold must be a finite number, got nan"),
])
def test_run_demo_arguments(args, message):
    result = run_cli("run", *args)
    assert (result.exit_code, result.output.strip()) == (2, message)


def test_run_data_max_expansion_refuses_a_decompression_bomb(tmp_path):
    """[data] max_expansion is the run's --max-expansion: a bomb is refused before any stage runs."""
    import gzip

    bomb = tmp_path / "d.jsonl.gz"
    bomb.write_bytes(gzip.compress(b" " * 2**22))
    size = bomb.stat().st_size
    config = _write(tmp_path, f"out_dir = 'out'\n[data]\npath = '{bomb}'\nmax_expansion = 50\n")
    result = run_cli("run", str(config))
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, f"Error: {bomb}: decompresses to more than {2**20:,} bytes, over --max-expansion 50 times its {size:,} "
           "bytes; give a larger --max-expansion (0: no limit) to read it")
    result = run_cli("run", str(_write(tmp_path, f"[data]\npath = '{bomb}'\nmax_expansion = -1\n")))
    assert (result.exit_code, result.output) == (
        2, f"Error: {tmp_path / 'run.toml'}: [data] max_expansion must be at least 0, got -1\n")
