"""The bad-input catalogue (issue 11 item 3): malformed inputs across every command, each refused
with one line `Error: ...` that names the problem, exit code 2, no traceback, and no file left behind.

None of these cases loads a model: every refusal comes before the first model call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from gasus.records import example_id
from tests.conftest import FIXTURES, run_cli

MINI = str(FIXTURES / "mini_alpaca.json")
TESTSETS = str(FIXTURES / "testsets")


def _scores(score: float = 4.0) -> str:
    """A valid scores file for fixtures/mini_alpaca.json."""
    rows = json.loads((FIXTURES / "mini_alpaca.json").read_text())
    return "".join(json.dumps({"id": example_id(r["instruction"], r["input"], r["output"]), "index": i,
                               "score": score, "status": "ok"}) + "\n" for i, r in enumerate(rows))


def _answer(qid: str, model: str, **fields) -> str:
    return json.dumps({"testset": "vicuna", "id": qid, "question": "Q?", "answer": "A.", "model": model,
                       **fields}) + "\n"


@dataclass
class Case:
    args: list[str]  # "{t}" is the test's tmp dir
    error: str  # the whole message after "Error: "
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


GRADE = ["grade", MINI, "-o", "{t}/scores.jsonl"]
ONE_SCORE = json.dumps({"id": "f" * 64, "index": 0, "score": 5.0, "status": "ok"}) + "\n"

CATALOGUE = {
    # datasets
    "dataset missing": Case(["grade", "{t}/nope.json", "-o", "{t}/s.jsonl"], "{t}/nope.json: no such file"),
    "dataset not JSON": Case(["grade", "{t}/d.json", "-o", "{t}/s.jsonl"],
                             "{t}/d.json: invalid JSON at line 1, column 2: Expecting property name enclosed in "
                             "double quotes", {"d.json": "{not json"}),
    "dataset JSONL bad line": Case(["grade", "{t}/d.jsonl", "-o", "{t}/s.jsonl"],
                                   "{t}/d.jsonl: invalid JSON at line 2, column 4: Expecting value",
                                   {"d.jsonl": '{"instruction": "a", "output": "b"}\n[1,\n'}),
    "dataset without instruction": Case(["grade", "{t}/d.json", "-o", "{t}/s.jsonl"],
                                        "{t}/d.json: row 0: missing required field 'instruction'",
                                        {"d.json": '[{"output": "b"}]'}),
    "dataset not records": Case(["grade", "{t}/d.json", "-o", "{t}/s.jsonl"],
                                "{t}/d.json: expected a JSON array of records at the top level, got an object",
                                {"d.json": '{"a": 1}'}),
    "dataset empty": Case(["grade", "{t}/d.json", "-o", "{t}/s.jsonl"], "{t}/d.json: the dataset has no examples",
                          {"d.json": "[]"}),
    "dataset not UTF-8": Case(["grade", "{t}/d.csv", "-o", "{t}/s.jsonl"],
                              "{t}/d.csv: not UTF-8 text: undecodable byte 0xff at line 1 (byte offset 0)",
                              {"d.csv": b"\xff\xfe\x00garbage"}),
    "negative --max-rows": Case(GRADE + ["--max-rows", "-1"], "--max-rows must be at least 0"),
    # grade options and model specs
    "negative --limit": Case(GRADE + ["--limit", "-3"], "--limit must be at least 1"),
    "zero --threads": Case(GRADE + ["--threads", "0"], "--threads must be at least 1"),
    "grader not a GGUF": Case(GRADE + ["--grader", "{t}/m.gguf"],
                              "{t}/m.gguf: not a readable GGUF file: no GGUF magic number", {"m.gguf": "not a model"}),
    "grader path missing": Case(GRADE + ["--grader", "llamacpp:{t}/none.gguf"],
                                "{t}/none.gguf: cannot read the model file: No such file or directory"),
    "unknown backend": Case(GRADE + ["--grader", "bogus:thing"],
                            "cannot read model spec 'bogus:thing': expected BACKEND:MODEL with BACKEND one of hf, "
                            "llamacpp, openai, replay, or a .gguf path"),
    "replay file not JSONL": Case(GRADE + ["--grader", "replay:{t}/r.jsonl"],
                                  "{t}/r.jsonl: invalid JSON at line 1, column 1: Expecting value", {"r.jsonl": "no\n"}),
    "prompt without {output}": Case(GRADE + ["--prompt-file", "{t}/p.txt"],
                                    "prompt 'p.txt': the user message must contain {output}, the response to grade",
                                    {"p.txt": "Rate {instruction}"}),
    # outputs and the cache
    "output overwrites the dataset": Case(["grade", "{t}/d.json", "-o", "{t}/d.json"],
                                          "{t}/d.json: -o/--output would overwrite the input DATASET ({t}/d.json); "
                                          "choose another path", {"d.json": '[{"instruction": "a", "output": "b"}]'}),
    # a missing folder is made (issue 29 item 3), one under a file cannot be
    "output dir under a file": Case(["grade", MINI, "-o", "{t}/f/no/scores.jsonl"],
                                    "{t}/f/no/scores.jsonl: -o/--output: {t}/f is not a directory", {"f": "x"}),
    "output dir is a file": Case(["grade", MINI, "-o", "{t}/f/scores.jsonl"],
                                 "{t}/f/scores.jsonl: -o/--output: {t}/f is not a directory", {"f": "x"}),
    "summary dir under a file": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json", "--summary-json",
                                      "{t}/f/no/sum.json"],
                                     "{t}/f/no/sum.json: --summary-json: {t}/f is not a directory",
                                     {"s.jsonl": _scores(), "f": "x"}),
    "cache dir unwritable": Case(GRADE, "{t}/cachefile/c: the cache directory is not writable: Not a directory",
                                 {"cachefile": "x"}, {"GASUS_CACHE_DIR": "{t}/cachefile/c"}),
    "cache import not JSONL": Case(["cache", "import", "{t}/i.jsonl"],
                                   "{t}/i.jsonl: invalid JSON at line 1, column 1: Expecting value", {"i.jsonl": "no\n"}),
    # scores, thresholds and select
    "threshold above 5": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json", "--threshold", "7"],
                              "--threshold must be within the score scale 0-5, got 7", {"s.jsonl": _scores()}),
    "threshold below 0": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json", "--threshold", "-0.5"],
                              "--threshold must be within the score scale 0-5, got -0.5", {"s.jsonl": _scores()}),
    "sweep threshold above 5": Case(["select", MINI, "{t}/s.jsonl", "--sweep", "4,5.5"],
                                    "--sweep thresholds must be within the score scale 0-5, got 5.5",
                                    {"s.jsonl": _scores()}),
    "negative --top-k": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json", "--top-k", "-2"],
                             "--top-k must be at least 0", {"s.jsonl": _scores()}),
    "scores of another dataset": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json"],
                                      "40 example(s) have no score (first: row 0, id d8876851a1b9); were the scores "
                                      "made from another dataset?", {"s.jsonl": ONE_SCORE}),
    "scores not JSONL": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json"],
                             "{t}/s.jsonl: invalid JSON at line 1, column 1: Expecting value", {"s.jsonl": "no\n"}),
    "score not a number": Case(["select", MINI, "{t}/s.jsonl", "-o", "{t}/k.json"],
                               "{t}/s.jsonl: line 1: 'score' must be a number or null",
                               {"s.jsonl": json.dumps({"id": "a", "index": 0, "score": "high", "status": "ok"})}),
    "agree threshold above 5": Case(["agree", "{t}/s.jsonl", "{t}/s2.jsonl", "--threshold", "9"],
                                    "--threshold must be within the score scale 0-5, got 9",
                                    {"s.jsonl": _scores(), "s2.jsonl": _scores(3.0)}),
    "labels without index": Case(["agree", "{t}/s.jsonl", "{t}/l.jsonl"], "{t}/l.jsonl: line 1: 'index' must be an "
                                 "integer", {"s.jsonl": _scores(), "l.jsonl": json.dumps({"keep": True}) + "\n"}),
    # answers and judge
    "answers not JSONL": Case(["judge", "{t}/a.jsonl", "{t}/b.jsonl", "-o", "{t}/j.jsonl"],
                              "{t}/a.jsonl: invalid JSON at line 1, column 1: Expecting value",
                              {"a.jsonl": "x\n", "b.jsonl": "y\n"}),
    "answers with mismatched ids": Case(["judge", "{t}/a.jsonl", "{t}/b.jsonl", "-o", "{t}/j.jsonl"],
                                        "the answers do not match: 1 question(s) answered in {t}/a.jsonl only "
                                        "(vicuna/1); 1 in {t}/b.jsonl only (vicuna/2)",
                                        {"a.jsonl": _answer("1", "A"), "b.jsonl": _answer("2", "B")}),
    "answer without question": Case(["judge", "{t}/a.jsonl", "{t}/b.jsonl", "-o", "{t}/j.jsonl"],
                                    "{t}/a.jsonl: line 1: an answer needs a string 'question'",
                                    {"a.jsonl": _answer("1", "A", question=None), "b.jsonl": _answer("1", "B")}),
    # generate
    "generate model path missing": Case(["generate", "{t}/none.gguf", "-o", "{t}/ans.jsonl", "--testsets-dir",
                                         TESTSETS], "{t}/none.gguf: cannot read the model file: No such file or "
                                        "directory"),
    "generate negative --limit": Case(["generate", "default", "-o", "{t}/ans.jsonl", "--limit", "-1",
                                       "--testsets-dir", TESTSETS], "--limit must be at least 1"),
    "unknown test set": Case(["generate", "default", "-o", "{t}/ans.jsonl", "--testset", "nope", "--testsets-dir",
                              TESTSETS], "unknown test set 'nope': choose from vicuna, koala, wizardlm, sinstruct or all"),
    # train
    "train dataset missing": Case(["train", "{t}/nope.json", "-o", "{t}/model", "--preset", "cpu-smoke"],
                                  "{t}/nope.json: no such file"),
    "train negative epochs": Case(["train", MINI, "-o", "{t}/model", "--preset", "cpu-smoke", "--epochs", "-1"],
                                  "epochs must be above 0, got -1.0"),
    # run configs
    "config not TOML": Case(["run", "{t}/c.toml"], "{t}/c.toml: invalid TOML: Invalid value (at end of document)",
                            {"c.toml": "out_dir = [\n"}),
    "config out_dir under a file": Case(["run", "{t}/c.toml"], "{t}/f/out/manifest.json: out_dir/manifest.json: "
                                        "{t}/f is not a directory",
                                        {"f": "x", "c.toml": f'out_dir = "f/out"\n[data]\npath = "{MINI}"\n'}),
    "config unknown setting": Case(["run", "{t}/c.toml"], "{t}/c.toml: unknown setting(s) bogus; tables: data, grade, "
                                   "select, check, train, generate, judge", {"c.toml": f'out_dir = "o"\nbogus = 1\n'
                                                                      f'[data]\npath = "{MINI}"\n'}),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_input_catalogue(name, tmp_path, monkeypatch):
    case = CATALOGUE[name]
    t = str(tmp_path)
    for file, content in case.files.items():
        path = tmp_path / file
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.replace("{t}", t))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_cli(*(a.replace("{t}", t) for a in case.args))  # an exception (a traceback) fails the test
    assert (result.exit_code, result.output) == (2, f"Error: {case.error.replace('{t}', t)}\n")
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "cache"))
    assert after == before


def test_the_catalogue_covers_every_command():
    assert len(CATALOGUE) >= 20
    assert {c.args[0] for c in CATALOGUE.values()} == {"grade", "select", "agree", "judge", "generate", "train", "run", "cache"}
