"""gasus run's optional check stage: between select and train, in the manifest and the report."""

from __future__ import annotations

import json

import pytest

from gasus.errors import BadInputError
from gasus.pipeline import load_run_config
from tests.conftest import FIXTURES, run_cli
from tests.test_pipeline import _write, scripted  # noqa: F401  (the scripted-models fixture)


def test_run_check_stage_drops_contaminated_and_duplicate_rows(tmp_path, scripted):  # noqa: F811
    rows = json.loads((FIXTURES / "mini_alpaca.json").read_text())
    rows += [{"instruction": "How do I keep a sourdough starter alive while travelling for two weeks?",
              "input": "", "output": "Feed it, then refrigerate it."}, dict(rows[3])]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    config = _write(tmp_path, f'out_dir = "out"\n[data]\npath = "data.json"\n[train]\npreset = "cpu-smoke"\n'
                              f'[generate]\ntestsets = ["vicuna", "koala"]\nlimit = 1\n'
                              f'testsets_dir = "{FIXTURES / "testsets"}"\n[check]\nenabled = true\n')
    result = run_cli("run", str(config))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["stages"]) == ["grade", "select", "check", "train", "generate", "judge", "report"]
    assert manifest["stages"]["check"]["items"] == 42 and manifest["stages"]["check"]["failures"] == 1
    found = manifest["check"]
    assert (found["contaminated_rows"], found["exact_hits"], found["duplicate_rows"], found["kept"]) == (1, 1, 1, 40)
    assert manifest["outputs"]["filtered"]["rows"] == manifest["outputs"]["baseline"]["rows"] == 40
    assert manifest["outputs"]["decisions"]["rows"] == 42
    audit = json.loads((out / "audit.json").read_text())
    assert [(h["index"], h["testset"], h["question_id"], h["kind"]) for h in audit["hits"] if h["testset"] != "self"] \
        == [(40, "vicuna", "1", "exact")]
    assert audit["groups"] == [[3, 41]]
    reasons = {d["index"]: d["reason"] for d in map(json.loads, (out / "decisions.jsonl").read_text().splitlines())}
    assert (reasons[3], reasons[40], reasons[41]) == ("selected", "contaminated", "near_duplicate")
    filtered = json.loads((out / "filtered.json").read_text())
    assert rows[40] not in filtered and filtered.count(rows[3]) == 1
    md = (out / "report.md").read_text()
    assert ("- check: 1 of 42 rows overlap the test sets (1 exact, 0 near hits), 1 near-duplicate; "
            "all left out of training (audit.json)\n") in md
    assert "selection: top" not in md and "kept 40 of 42 graded" in md
    assert "| check | 42 | 0 | 0 | 1 |" in md


@pytest.mark.parametrize("text,message", [
    ("[check]\nenabled = 'yes'\n", r"\[check\] enabled must be true or false, got 'yes'"),
    ("[check]\nthreshold = 2.0\n", r"\[check\] threshold must be in \(0, 1\], got 2"),
    ("[check]\nagainst = 'mmlu'\n", r"\[check\] unknown test set 'mmlu'"),
    ("[check]\nagainst = 'held.jsonl'\n", r"\[check\] against .*held\.jsonl: no such file"),
])
def test_run_check_config_errors(tmp_path, text, message):
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(BadInputError, match=message):
        load_run_config(_write(tmp_path, "[data]\npath = 'd.json'\n" + text))
