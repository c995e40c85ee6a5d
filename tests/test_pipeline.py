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
    cfg = load_run_config(_write(tmp_path, '[data]\npath = "d.json"\n[train]\npreset = "cpu-smoke"\nmax_steps = 3\n'))
    assert cfg.data.path == str(tmp_path / "d.json")
    assert cfg.out_dir == tmp_path / "gasus-run"
    assert (cfg.grade.mode, cfg.judge.order, cfg.judge.rule, cfg.generate.testsets) == ("generate", "both", "paper", ("all",))
    assert cfg.train.overrides == {"max_steps": 3}


@pytest.mark.parametrize("text,message", [
    ("[grade]\nmode = 'expected'\n", r"run\.toml: \[data\] path is required"),
    ("[data]\npath = 'd.json'\n[grade]\nmode = 'fast'\n", r"\[grade\] mode must be generate, score or expected, got 'fast'"),
    ("[data]\npath = 'd.json'\n[select]\nthreshold = 4\ntop_k = 3\n", r"\[select\] give threshold or top_k, not both"),
    ("[data]\npath = 'd.json'\n[judge]\ncolour = 'red'\n", r"unknown setting\(s\) in \[judge\]: colour"),
    ("[data]\npath = 'd.json'\n[evaluate]\n", r"unknown setting\(s\) evaluate"),
    ("[data\n", r"run\.toml: invalid TOML"),
])
def test_config_errors(tmp_path, text, message):
    with pytest.raises(BadInputError, match=message):
        load_run_config(_write(tmp_path, text))


def test_run_cli_bad_config_exit_2(tmp_path):
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
        "answers", "baseline.json", "filtered.json", "judgements.jsonl", "models", "scores.jsonl",
        "verdicts.jsonl", "verdicts.png"]
    assert len(json.loads((out / "filtered.json").read_text())) == 8
    assert len(json.loads((out / "baseline.json").read_text())) == 8
    assert len((out / "scores.jsonl").read_text().splitlines()) == 40
    for name in ("filtered", "baseline"):
        manifest = json.loads((out / "models" / name / "manifest.json").read_text())
        assert manifest["data"]["rows"] == 8 and manifest["train"]["steps"] == 2
        answers = [json.loads(line) for line in (out / "answers" / f"{name}.jsonl").read_text().splitlines()]
        assert [(a["testset"], a["id"], a["model"]) for a in answers] == [(s, i, name) for s, i in FIRST_QUESTIONS]
    judgements = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert [(j["testset"], j["id"], j["order"]) for j in judgements] == [
        (s, i, o) for s, i in FIRST_QUESTIONS for o in ("ab", "ba")]
    assert all(j["status"] == "ok" for j in judgements)
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 4
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["command"] == "run" and summary["items"] == 8
    # Where the two models wrote the same answer (whether they do is the CPU's rounding), both
    # orders render the same judge prompt: one call serves both.
    same = sum(a == b for a, b in zip(*(_answers(out, name) for name in ("filtered", "baseline"))))
    assert summary["model_calls"] == 40 + 4 + 4 + 8 - same

    again = run_cli("run", str(config), "--summary-json", str(tmp_path / "s2.json"))
    assert again.exit_code == 0, again.output
    summary = json.loads((tmp_path / "s2.json").read_text())
    assert (summary["model_calls"], summary["cache_hits"]) == (0, 56)
    assert [s["detail"].startswith("reused") for s in summary["stages"] if s["name"].startswith("train")] == [True, True]


FIRST_QUESTIONS = [("vicuna", "1"), ("koala", "toy_koala_0"), ("wizardlm", "1"), ("sinstruct", "toy_task_0")]


def _answers(out, name):
    return [json.loads(line)["answer"] for line in (out / "answers" / f"{name}.jsonl").read_text().splitlines()]
