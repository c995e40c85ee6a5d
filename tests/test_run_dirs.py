"""gasus run deletes only a model directory it can prove it made, never through a symlink,
and only after the settings and the base model have been checked (issue 18.2)."""

from __future__ import annotations

import json

import pytest

from gasus.grade import grade_request, grading_prompt
from gasus.io import load_examples
from tests.conftest import run_cli


def _run_config(tmp_path, base):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(2)]))
    prompt = grading_prompt("accuracy")
    replay = tmp_path / "grades.jsonl"
    replay.write_text("".join(json.dumps({"messages": grade_request(prompt, e, "generate").messages, "text": "5"})
                              + "\n" for e in load_examples(data)))
    config = tmp_path / "run.toml"
    config.write_text(f'out_dir = "out"\n[data]\npath = "data.json"\n[grade]\ngrader = "replay:{replay}"\n'
                      f'[train]\nbase = "{base}"\npreset = "cpu-smoke"\n')
    return config


def _user_dir(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    return path


@pytest.mark.parametrize("case", ["missing base", "not made by gasus", "models is a symlink"])
def test_gasus_run_deletes_only_a_directory_it_made(tmp_path, case):
    base = tmp_path / "base"  # a model directory that passes the checks but cannot be loaded
    _user_dir(base)
    (base / "config.json").write_text("{}")
    if case == "missing base":
        config = _run_config(tmp_path, tmp_path / "missing.gguf")
        user = _user_dir(tmp_path / "out" / "models" / "filtered")
        # checked with the whole config, before any stage runs
        message = f"Error: {config}: [train] base model {tmp_path / 'missing.gguf'}: no such GGUF file"
    elif case == "not made by gasus":
        config = _run_config(tmp_path, base)
        user = _user_dir(tmp_path / "out" / "models" / "filtered")
        message = (f"Error: {user}: not replacing this directory: gasus did not make it (no .gasus-train in it); "
                   "move it away or delete it yourself")
    else:
        config = _run_config(tmp_path, base)
        user = _user_dir(tmp_path / "elsewhere" / "filtered")
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "models").symlink_to(tmp_path / "elsewhere")
        message = (f"Error: {tmp_path / 'out' / 'models'}: is a symlink; gasus run does not replace a model "
                   "directory through a symlink: make it a plain directory inside out_dir")
    try:
        result = run_cli("run", str(config))
        output = result.output.strip().splitlines()[-1]
    except Exception as exc:  # the old code went on to load the unloadable base
        output = f"{type(exc).__name__}: {exc}"
    assert (user / "thesis.tex").read_text() == "years of work"
    assert output == message


def test_a_directory_train_made_is_replaced_only_when_asked(tmp_path):
    from gasus.errors import BadInputError
    from gasus.train import OWNER_MARKER, prepare_output_dir

    out = tmp_path / "model"
    assert prepare_output_dir(out, resume=False) is None
    assert sorted(p.name for p in out.iterdir()) == [OWNER_MARKER]
    assert prepare_output_dir(out, resume=False) is None  # holding only the marker, it is still empty
    (out / "model.safetensors").write_text("old weights")
    with pytest.raises(BadInputError, match="already holds files"):
        prepare_output_dir(out, resume=False)
    prepare_output_dir(out, resume=False, replace=True)
    assert sorted(p.name for p in out.iterdir()) == [OWNER_MARKER]


# ---------------------------------------------------------------- issue 23: run dirs made or edited by hand


def _hand_run(tmp_path, **manifest):
    """A run dir written by hand: a manifest, three grades and two judged questions in both orders."""
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(3)]
    (run / "scores.jsonl").write_text("".join(
        json.dumps({"id": e.id, "index": i, "score": 5.0 - i, "status": "ok"}) + "\n"
        for i, e in enumerate(load_examples_from(tmp_path, rows))))
    testset = manifest.pop("testset", "vicuna")
    (run / "judgements.jsonl").write_text("".join(
        json.dumps({"testset": testset, "id": str(q), "order": order, "scores": [8, 6], "status": "ok", "raw": "8 6"})
        + "\n" for q in (1, 2) for order in ("ab", "ba")))
    base = {"gasus": "0", "status": "finished", "current_stage": None, "config": {"select": {"top_k": 2}},
            "models": {}, "stages": {"grade": {"items": 3, "model_calls": 0, "cache_hits": 3, "failures": 0,
                                               "seconds": 0.5}}}
    (run / "manifest.json").write_text(json.dumps({**base, **manifest}))
    return run


def load_examples_from(tmp_path, rows):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    return load_examples(path)


def test_report_summary_json_onto_the_run_files_is_refused(tmp_path):
    """Issue 23 item 11: `gasus report RUN --summary-json RUN/scores.jsonl` (or onto the manifest, or
    its own report.md) is refused before anything is written, and the run's files are as they were."""
    run = _hand_run(tmp_path)
    (run / "models" / "filtered").mkdir(parents=True)
    (run / "models" / "filtered" / "manifest.json").write_text('{"train": {"loss_history": []}}')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for name, message in (("scores.jsonl", "would overwrite the input RUN_DIR/scores.jsonl ({}); choose another path"),
                          ("manifest.json", "would overwrite the input RUN_DIR/manifest.json ({}); choose another path"),
                          ("models/filtered/manifest.json", "would overwrite the input RUN_DIR/models ({}); "
                                                            "choose another path"),
                          ("report.md", "and RUN_DIR/report.md ({}) name the same file; give each output its own path")):
        result = run_cli("report", str(run), "--summary-json", str(run / name))
        where = run / name.split("/")[0]
        assert (result.exit_code, result.output) == (2, f"Error: {run / name}: --summary-json {message.format(where)}\n")
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert run_cli("report", str(run), "--summary-json", str(tmp_path / "s.json")).exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text())["items"] == 7  # 5 plots, report.md, report.html


@pytest.mark.parametrize("manifest,problem", [
    ({"check": {"rows": 3, "exact_hits": 0, "near_hits": 0, "duplicate_rows": 0}}, "check.contaminated_rows: Field required"),
    ({"config": {"select": {"top_k": "2"}}}, "config.select.top_k: Input should be a valid integer"),
    ({"config": {"select": {"top_k": -2}}}, "config.select.top_k: Input should be greater than or equal to 1"),
    ({"config": {"judge": {"rule": "lenient"}}}, "config.judge.rule: Input should be 'paper' or 'strict'"),
    ({"stages": {"grade": {"failures": "none"}}}, "stages.grade.failures: Input should be a valid integer"),
    ({"stages": []}, "stages: Input should be a valid dictionary"),
    ({"models": {"grader": {"spec": "x", "weights_sha256": {"a": 5}}}},
     "models.grader.weights_sha256.a: Input should be a valid string"),
])
def test_report_on_a_hand_edited_manifest_names_the_entry_and_field(tmp_path, manifest, problem):
    """Issue 23 item 16: a manifest whose entries lack a field or hold the wrong type is one line naming
    the entry and field, not a traceback; nothing is written."""
    run = _hand_run(tmp_path, **manifest)
    result = run_cli("report", str(run))
    assert (result.exit_code, result.output) == (2, f"Error: {run / 'manifest.json'}: not a run manifest: {problem}\n")
    assert sorted(p.name for p in run.iterdir()) == ["judgements.jsonl", "manifest.json", "scores.jsonl"]


@pytest.mark.parametrize("model_manifest,problem", [
    ("[1]", "a JSON object was expected, not list"),
    ('{"train": 5}', "train: Input should be a valid dictionary or instance of Train"),
    ('{"train": {"loss_history": 5}}', "train.loss_history: Input should be a valid list"),
    ('{"train": {"loss_history": [{"step": 1, "loss": "low"}]}}', "train.loss_history.0.loss: Input should be a valid number"),
])
def test_report_on_a_hand_edited_model_manifest_names_the_entry_and_field(tmp_path, model_manifest, problem):
    """Issue 23 item 16: a trained model's manifest in the run dir is checked the same way."""
    run = _hand_run(tmp_path)
    path = run / "models" / "filtered" / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(model_manifest)
    result = run_cli("report", str(run))
    assert (result.exit_code, result.output) == (2, f"Error: {path}: not a trained model's manifest: {problem}\n")
    assert sorted(p.name for p in run.iterdir()) == ["judgements.jsonl", "manifest.json", "models", "scores.jsonl"]


@pytest.mark.filterwarnings("ignore:Glyph 13")  # the test set's \r in the plot's labels
def test_report_md_escapes_markdown_in_untrusted_strings(tmp_path):
    """Issue 23 item 17: model names, statuses, stage and test-set names reach report.md as text: no remote
    image, link, heading or emphasis, whatever line breaks they hold; report.html shows them escaped."""
    from markdown_it import MarkdownIt

    image = "![x](http://host/track.png)"
    run = _hand_run(tmp_path, testset=f"{image}\r# set", status="\r# heading\u2028## two",
                    current_stage="*bold* [a]: http://host/def",
                    models={"grader": {"spec": f"openai:{image}", "remote_name": "<img src=http://host/i.png>"},
                            "judge": {"spec": "\n1. item\r\n- list _em_ `code` ~~s~~ | cell"}},
                    stages={"grade": {"items": 3}, f"\r# {image}": {"items": 1}})
    result = run_cli("report", str(run))
    assert result.exit_code == 0, result.output
    md = (run / "report.md").read_text()
    lines = md.splitlines()
    assert "- status:  # heading ## two (stopped in or before the \\*bold\\* [a\\]: http://host/def stage)" in lines
    assert "- grader: openai:![x\\](http://host/track.png) (&lt;img src=http://host/i.png>)" in lines
    assert "- judge:  1. item - list \\_em\\_ \\`code\\` \\~\\~s\\~\\~ \\| cell ()" in lines
    assert "|  # ![x\\](http://host/track.png) | 1 |  |  |  |  |" in lines
    assert "| ![x\\](http://host/track.png) # set | 0 | 2 | 0 | 0 | 2 | 1.000 [1.000, 1.000] |" in lines
    page = MarkdownIt("commonmark").enable("table").render(md)
    import re

    assert re.findall(r"<img src=\"([^\"]*)\"", page) == [f"plots/{n}.png" for n in ("scores", "sweep", "verdicts", "bias")]
    assert re.findall(r"<h\d>", page) == ["<h1>", "<h2>", "<h2>", "<h2>", "<h2>"]
    assert re.findall(r"<(?:a|em|strong|code|s|del|ol|blockquote)[ >]", page) == []
    # a line that starts with untrusted text opens no block either
    from gasus.report.run import _md_line

    assert [_md_line(t) for t in ("# h", " > q", "- l", "+ l", "12. n", "3) n", "[ ] t", "===", "1.5 ok")] == [
        "\\# h", " \\> q", "\\- l", "\\+ l", "12\\. n", "3\\) n", "\\[ ] t", "\\===", "1.5 ok"]
    html_page = (run / "report.html").read_text()
    assert "<img src=http" not in html_page and "&lt;img src=http://host/i.png&gt;" in html_page
