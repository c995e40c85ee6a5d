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
