"""Every command: a described --help with an example; start-up stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gasus.cli import COMMANDS, main
from gasus.io import load_examples
from tests.conftest import FIXTURES, run_cli

HEAVY = ["torch", "transformers", "trl", "datasets", "llama_cpp", "peft", "matplotlib", "sklearn", "scipy"]


def _commands():
    names = []
    for name in sorted(COMMANDS):
        command = main.get_command(None, name)
        names.append([name])
        for sub in getattr(command, "commands", {}):
            names.append([name, sub])
    return names


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p))
def test_help_has_description_and_example(path):
    result = run_cli(*path, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert len(result.output.split("Options:")[0].strip().splitlines()) >= 3


def test_top_level_help_lists_commands():
    result = run_cli("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("code", [
    "import gasus",
    "from gasus.cli import main; main(['--help'])",
    "from gasus.cli import main; main(['select', '--help'])",
])
def test_start_up_imports_nothing_heavy(code):
    probe = f"""
import sys
try:
    {code}
except SystemExit:
    pass
import json
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_select_imports_nothing_heavy(tmp_path, mini_alpaca):
    probe = f"""
import sys, json
from gasus.cli import main
try:
    main(['select', {str(mini_alpaca)!r}, '--random', '5', '-o', {str(tmp_path / 'k.json')!r}])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
    assert len(json.loads((tmp_path / "k.json").read_text())) == 5


def test_console_script_exit_code_for_bad_input(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gasus", "select", str(tmp_path / "none.json"), "--random", "1",
                             "-o", str(tmp_path / "k.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {tmp_path / 'none.json'}: no such file"
    assert "Traceback" not in result.stderr


def test_summary_names_the_command_however_invoked(tmp_path):
    summary = tmp_path / "s.json"
    subprocess.run([sys.executable, "-m", "gasus", "cache", "stats", "--summary-json", str(summary)],
                   check=True, capture_output=True)
    assert json.loads(summary.read_text())["command"] == "cache stats"


# ---------------------------------------------------------------- issue 18.1: outputs never destroy inputs


def _files(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi."}) + "\n")
    scores = tmp_path / "scores.jsonl"
    scores.write_text("{}\n")
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps({"testset": "vicuna", "id": "1", "question": "Q?", "answer": "A.", "model": "m"})
                       + "\n")
    return data, scores, answers


@pytest.mark.parametrize("case", ["grade onto dataset", "select onto scores", "judge onto A", "summary onto dataset",
                                  "summary onto output", "verdicts onto output", "symlink to dataset",
                                  "hard link to dataset", "export into cache", "summary into cache"])
def test_an_output_cannot_destroy_an_input_or_the_cache(tmp_path, case):
    data, scores, answers = _files(tmp_path)
    cache_dir = tmp_path / "cache"  # GASUS_CACHE_DIR (tests/conftest.py)
    link = tmp_path / "link.jsonl"
    out = tmp_path / "out.jsonl"
    if case == "symlink to dataset":
        link.symlink_to(data)
    elif case == "hard link to dataset":
        link.hardlink_to(data)
    args, message = {
        "grade onto dataset": (["grade", str(data), "-o", str(data)],
                               f"{data}: -o/--output would overwrite the input DATASET ({data})"),
        "select onto scores": (["select", str(data), str(scores), "-o", str(scores)],
                               f"{scores}: -o/--output would overwrite the input SCORES ({scores})"),
        "judge onto A": (["judge", str(answers), str(answers), "-o", str(answers)],
                         f"{answers}: -o/--output would overwrite the input ANSWERS_A ({answers})"),
        "summary onto dataset": (["select", str(data), "--random", "1", "-o", str(out), "--summary-json", str(data)],
                                 f"{data}: --summary-json would overwrite the input DATASET ({data})"),
        "summary onto output": (["grade", str(data), "-o", str(out), "--summary-json", str(out)],
                                f"{out}: --summary-json and -o/--output ({out}) name the same file"),
        "verdicts onto output": (["judge", str(answers), str(answers), "-o", str(out), "--verdicts", str(out)],
                                 f"{out}: --verdicts and -o/--output ({out}) name the same file"),
        "symlink to dataset": (["select", str(data), "--random", "1", "-o", str(link)],
                               f"{link}: -o/--output would overwrite the input DATASET ({data})"),
        "hard link to dataset": (["select", str(data), "--random", "1", "-o", str(link)],
                                 f"{link}: -o/--output would overwrite the input DATASET ({data})"),
        "export into cache": (["cache", "export", str(cache_dir / "cache.db")],
                              f"{cache_dir / 'cache.db'}: FILE is inside the cache directory {cache_dir}"),
        "summary into cache": (["cache", "stats", "--summary-json", str(cache_dir / "s.json")],
                               f"{cache_dir / 's.json'}: --summary-json is inside the cache directory {cache_dir}"),
    }[case]
    run_cli("cache", "stats")  # the cache exists, with its database

    def snapshot():  # sqlite's -wal and -shm files come and go with connections
        return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}

    before = snapshot()
    result = run_cli(*args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {message}; ")
    assert len(result.output.strip().splitlines()) == 1
    assert snapshot() == before  # nothing written or replaced
    assert run_cli("cache", "stats").exit_code == 0


# Each command (leaf of the group) with arguments it accepts; the test below checks the table names them all.
SUMMARY_ARGS = {
    "agree": ["agree", "{t}/scores.jsonl", "{t}/scores.jsonl"],
    "batch cancel": ["batch", "cancel", "--all"],
    "batch status": ["batch", "status"],
    "batch wait": ["batch", "wait"],
    "cache clear": ["cache", "clear", "--yes"],
    "cache export": ["cache", "export", "{t}/export.jsonl"],
    "cache import": ["cache", "import", "{t}/scores.jsonl"],
    "cache migrate": ["cache", "migrate"],
    "cache stats": ["cache", "stats"],
    "cache verify": ["cache", "verify"],
    "check": ["check", "{t}/data.jsonl", "--against", "vicuna"],
    "generate": ["generate", "embedded", "-o", "{t}/answers.jsonl"],
    "grade": ["grade", "{t}/data.jsonl", "-o", "{t}/out.jsonl"],
    "judge": ["judge", "{t}/a.jsonl", "{t}/a.jsonl", "-o", "{t}/out.jsonl"],
    "report": ["report", "{t}"],
    "run": ["run", "--demo", "--run-dir", "{t}/demo"],
    "select": ["select", "{t}/data.jsonl", "{t}/scores.jsonl", "-o", "{t}/kept.json"],
    "train": ["train", "{t}/data.jsonl", "-o", "{t}/model", "--preset", "cpu-smoke"],
}


def _leaf_commands() -> list[str]:
    names = []
    for path in _commands():
        command = main.get_command(None, path[0])
        if len(path) == 2 or not getattr(command, "commands", None):
            names.append(" ".join(path))
    return names


def test_summary_json_onto_the_cache_is_refused_by_every_command(tmp_path):
    """Issue 23 item 11: `--summary-json CACHE/cache.db` is refused by every command, before it does
    anything (batch status|wait|cancel, cache migrate and report used to write it over the cache)."""
    assert sorted(SUMMARY_ARGS) == sorted(_leaf_commands())  # a new command gets a line here
    _files(tmp_path)
    cache_dir = tmp_path / "cache"
    run_cli("cache", "stats")  # the cache exists, with its database
    db = cache_dir / "cache.db"
    before = db.read_bytes()
    for name, args in SUMMARY_ARGS.items():
        result = run_cli(*(a.replace("{t}", str(tmp_path)) for a in args), "--summary-json", str(db))
        assert (name, result.exit_code, result.output) == (
            name, 2, f"Error: {db}: --summary-json is inside the cache directory {cache_dir}; choose a file outside it\n")
        assert db.read_bytes() == before, name
    assert run_cli("cache", "stats").exit_code == 0


# ---------------------------------------------------------------- issue 18.10: data never reaches rich as markup


def test_markup_in_data_is_shown_as_text(tmp_path):
    from gasus.judge import judge_messages

    odd = "[/vicuna] [bold]:smile:"
    answers = {}
    for side, text in (("a", "Yes."), ("b", "No.")):
        answers[side] = tmp_path / f"[red]{side}.jsonl"
        answers[side].write_text(json.dumps({"testset": odd, "id": "1", "question": "Q?", "answer": text,
                                             "model": side}) + "\n")
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"messages": judge_messages("Q?", first, second), "text": "9 2"}) + "\n"
                              for first, second in (("Yes.", "No."), ("No.", "Yes."))))
    verdicts = tmp_path / "v.jsonl"
    result = run_cli("judge", str(answers["a"]), str(answers["b"]), "-o", str(tmp_path / "j.jsonl"),
                     "--judge", f"replay:{replay}", "--verdicts", str(verdicts),
                     "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    assert f"│ {odd} │" in result.output.replace("  ", " ").replace("  ", " ")
    assert "[red]a vs [red]b (paper rule, order both)" in result.output
    assert json.loads(verdicts.read_text()) == {"testset": odd, "id": "1", "verdict": "tie"}

    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"id": "x", "index": 0, "score": 5, "status": "ok"}) + "\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"index": 0, "[/kept]": True}) + "\n")
    result = run_cli("agree", str(scores), str(labels))
    assert result.exit_code == 0, result.output
    assert "kept by [/kept]" in result.output


# ---------------------------------------------------------------- issue 29 item 3: outputs in new folders


def _replays(t):
    """Recorded replies for one grade (2 rows), one generate (vicuna, 2 questions) and one judge (both orders)."""
    from gasus.grade import grading_prompt
    from gasus.judge import judge_messages
    from gasus.prompts import alpaca_prompt
    from gasus.testsets import load_testsets

    def write(name, rows):
        (t / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    prompt = grading_prompt("accuracy")
    write("grader.jsonl", [{"messages": prompt.messages(e), "text": "5"}
                           for e in load_examples(FIXTURES / "mini_alpaca.json")[:2]])
    questions = load_testsets(["vicuna"], FIXTURES / "testsets", limit=2)
    write("model.jsonl", [{"messages": [{"role": "user", "content": alpaca_prompt(q.instruction, q.input)}],
                           "text": "An answer."} for q in questions])
    write("answers.jsonl", [{"testset": "vicuna", "id": q.id, "question": q.question, "answer": "An answer.",
                             "model": "m"} for q in questions])
    write("judge.jsonl", [{"messages": judge_messages(q.question, "An answer.", "An answer."), "text": "7 7"}
                          for q in questions])
    (t / "data.jsonl").write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi."}) + "\n")


# Every command with its outputs (and --summary-json) in folders that do not exist yet; train is below,
# marked slow. The test checks the table names every leaf command.
NEW_FOLDER_ARGS = {
    "agree": ["agree", "{t}/scores.jsonl", "{t}/scores.jsonl"],
    "batch cancel": ["batch", "cancel", "--all"],
    "batch status": ["batch", "status"],
    "batch wait": ["batch", "wait"],
    "cache clear": ["cache", "clear", "--yes"],
    "cache export": ["cache", "export", "{t}/new/export/cache.jsonl"],
    "cache import": ["cache", "import", "{t}/new/export/cache.jsonl"],
    "cache migrate": ["cache", "migrate"],
    "cache stats": ["cache", "stats"],
    "cache verify": ["cache", "verify"],
    "check": ["check", "{t}/data.jsonl", "--against", "vicuna", "--testsets-dir", "{fixtures}/testsets",
              "-o", "{t}/new/audit/audit.json"],
    "generate": ["generate", "replay:{t}/model.jsonl", "--testset", "vicuna", "--limit", "2",
                 "--testsets-dir", "{fixtures}/testsets", "-o", "{t}/new/answers/a.jsonl"],
    "grade": ["grade", "{fixtures}/mini_alpaca.json", "--limit", "2", "--grader", "replay:{t}/grader.jsonl",
              "-o", "{t}/new/runs/scores.jsonl"],
    "judge": ["judge", "{t}/answers.jsonl", "{t}/answers.jsonl", "--judge", "replay:{t}/judge.jsonl",
              "-o", "{t}/new/j/judgements.jsonl", "--verdicts", "{t}/new/v/verdicts.jsonl",
              "--plot", "{t}/new/out/plot.png"],
    "report": None,  # writes only inside the run dir it reads (which must exist)
    "run": None,  # trains (its out_dir was always made; its --summary-json goes through check_paths as here)
    "select": ["select", "{fixtures}/mini_alpaca.json", "{t}/scores.jsonl", "-o", "{t}/new/kept/kept.json",
               "--decisions", "{t}/new/why/why.jsonl"],
    "train": None,  # trains: test_train_writes_into_new_folders (slow)
}


def test_every_command_writes_its_outputs_into_new_folders(tmp_path):
    """Issue 29 item 3: `-o runs/...`, `--plot out/...`, `--summary-json new/...` in a fresh clone:
    each output's missing folders are made (they used to be refused as 'the directory ... does not exist')."""
    assert sorted(NEW_FOLDER_ARGS) == sorted(_leaf_commands())  # a new command gets a line here
    _replays(tmp_path)
    scores = [{"id": e.id, "index": e.index, "score": 5.0 if e.index % 2 else 3.0, "status": "ok"}
              for e in load_examples(FIXTURES / "mini_alpaca.json")]
    (tmp_path / "scores.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scores))
    for name, args in NEW_FOLDER_ARGS.items():
        if args is None:
            continue
        summary = tmp_path / "new" / "summaries" / name.replace(" ", "-") / "s.json"
        args = [a.replace("{t}", str(tmp_path)).replace("{fixtures}", str(FIXTURES)) for a in args]
        result = run_cli(*args, "--summary-json", str(summary))
        assert (name, result.exit_code) == (name, 0), result.output
        assert json.loads(summary.read_text())["command"] == name
        for path in args:
            if path.startswith(str(tmp_path / "new")) and name != "cache import":
                assert Path(path).is_file(), (name, path)


def test_a_refused_command_leaves_no_new_folder(tmp_path):
    """The folders are made only once every output passed its checks: an output over an input or inside
    the cache refuses the whole command, and none of its new folders appear."""
    _files(tmp_path)
    cache_dir = tmp_path / "cache"
    run_cli("cache", "stats")
    cases = [
        ["select", "{t}/data.jsonl", "--random", "1", "-o", "{t}/new/a/kept.json", "--decisions", "{t}/data.jsonl"],
        ["select", "{t}/data.jsonl", "--random", "1", "-o", "{t}/new/a/kept.json",
         "--summary-json", "{t}/cache/s.json"],
        ["grade", "{t}/data.jsonl", "-o", "{t}/new/b/scores.jsonl", "--summary-json", "{t}/new/b/scores.jsonl"],
        ["judge", "{t}/a.jsonl", "{t}/a.jsonl", "-o", "{t}/new/c/j.jsonl", "--verdicts", "{t}/a.jsonl",
         "--plot", "{t}/new/d/p.png"],
        ["cache", "export", "{t}/cache/new/e.jsonl", "--summary-json", "{t}/new/e/s.json"],
    ]
    for args in cases:
        result = run_cli(*(a.replace("{t}", str(tmp_path)) for a in args))
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("Error: ")
        assert not (tmp_path / "new").exists(), args
        assert sorted(p.name for p in cache_dir.iterdir() if p.is_dir()) == [], args


@pytest.mark.slow
def test_train_writes_into_new_folders(tmp_path):
    """Issue 29 item 3, the command that trains: `gasus train -o runs/smoke` with its summary in a new folder."""
    out, summary = tmp_path / "runs" / "smoke", tmp_path / "new" / "train" / "s.json"
    result = run_cli("train", str(FIXTURES / "mini_alpaca.json"), "-o", str(out), "--preset", "cpu-smoke",
                     "--max-steps", "1", "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file() and json.loads(summary.read_text())["command"] == "train"


# ---------------------------------------------------------------- issue 29 item 9: names


def test_llamacpp_default_is_the_embedded_model(tmp_path):
    """`llamacpp:default` (the README's name for the embedded model) used to be read as a file ./default."""
    from gasus.backends import parse_spec, spec_file
    from gasus.manifest import model_record
    from gasus.train import resolve_base

    assert parse_spec("llamacpp:default") == parse_spec(None)
    assert spec_file("llamacpp:default") is None
    assert resolve_base("llamacpp:default") == resolve_base(None)
    assert model_record("llamacpp:default")["sha256"] == model_record(None)["sha256"]
    plain = run_cli("grade", str(FIXTURES / "mini_alpaca.json"), "--limit", "2", "--dry-run")
    named = run_cli("grade", str(FIXTURES / "mini_alpaca.json"), "--limit", "2", "--dry-run",
                    "--grader", "llamacpp:default")
    assert (named.exit_code, named.output) == (0, plain.output)
    assert "2 model call(s) needed with llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf" in named.output


def test_grade_help_names_every_backend():
    help_text = " ".join(run_cli("grade", "--help").output.split())
    for spec in ("llamacpp:FILE.gguf", "llamacpp:default", "openai:MODEL", "hf:DIR_OR_HUB_ID", "replay:FILE.jsonl"):
        assert spec in help_text, spec


def test_run_help_names_every_table_and_key():
    """`gasus run --help` lists each table of a run config with all its keys ([check] was missing)."""
    import dataclasses

    from gasus.pipeline.config import _SECTIONS, BackendSettings

    help_text = run_cli("run", "--help").output
    lines: dict[str, str] = {}
    for line in help_text.splitlines():
        if line.strip().startswith("["):
            lines.setdefault(line.split("]")[0].strip() + "]", line)
    shared = {f.name for f in dataclasses.fields(BackendSettings)}
    for table, config in _SECTIONS.items():
        keys = [f.name for f in dataclasses.fields(config) if f.name not in shared | {"overrides"}]
        assert all(f" {key}" in lines[f"[{table}]"].replace(",", " ") for key in keys), (table, keys)
    also = " ".join(help_text.split()).split("also take ")[1]
    assert all(key in also for key in shared), also


def test_the_demo_writes_where_make_demo_does_and_git_ignores_it(tmp_path, monkeypatch):
    """`gasus run --demo` wrote ./gasus-demo, `make demo` out/demo-run, and git ignored neither."""
    from gasus.pipeline import DEMO_RUN_DIR

    root = FIXTURES.parent
    assert DEMO_RUN_DIR == "out/demo-run"
    assert "--run-dir $${DEMO_DIR:-out/demo-run}" in (root / "Makefile").read_text()
    assert "/out/" in (root / ".gitignore").read_text().splitlines()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").write_text("a file where the demo's folder goes")
    result = run_cli("run", "--demo")
    assert (result.exit_code, result.output) == (
        2, f"Error: {tmp_path}/out/demo-run/manifest.json: out_dir/manifest.json: {tmp_path}/out is not a directory\n")


# ---------------------------------------------------------------- issue 29 item 9: wording


def test_a_count_of_one_reads_in_the_singular(tmp_path):
    """'1 answers', '1 model calls', 'exported 1 entries' read as '1 answer', '1 model call', '1 entry'."""
    _replays(tmp_path)
    answers = tmp_path / "a.jsonl"
    result = run_cli("generate", f"replay:{tmp_path / 'model.jsonl'}", "--testset", "vicuna", "--limit", "1",
                     "--testsets-dir", str(FIXTURES / "testsets"), "-o", str(answers))
    assert (result.exit_code, " ".join(result.output.split())) == (
        0, f"1 answer -> {answers} (1 model call, 0 from the cache)")
    result = run_cli("judge", str(answers), str(answers), "--judge", f"replay:{tmp_path / 'judge.jsonl'}",
                     "--order", "ab", "-o", str(tmp_path / "j.jsonl"))
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).endswith(f" 1 judgement -> {tmp_path / 'j.jsonl'}")
    run_cli("cache", "clear", "--yes")
    run_cli("generate", f"replay:{tmp_path / 'model.jsonl'}", "--testset", "vicuna", "--limit", "1",
            "--testsets-dir", str(FIXTURES / "testsets"), "-o", str(answers))
    result = run_cli("cache", "export", str(tmp_path / "e.jsonl"))
    assert " ".join(result.output.split()) == f"exported 1 entry -> {tmp_path / 'e.jsonl'}"


# ---------------------------------------------------------------- issue 29 item 9: bench


def test_select_speed_bench_runs_without_the_shared_sample(tmp_path):
    """bench/select_speed.py swept 5.5 (off the scale) and, without ../shared, printed 'skipped' and exited 0."""
    bench = FIXTURES.parent / "bench" / "select_speed.py"
    done = subprocess.run([sys.executable, str(bench), "--repeat", "1", "--data", str(tmp_path / "none.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == [f"{tmp_path / 'none.json'} not found: timing 9229 generated rows instead",
                         "9229 examples, median of 1 runs each",
                         f"{'run':34} {'wall s':>8} {'x python start':>15} {'< 1 s':>6}"]
    assert [line[:34].strip() for line in lines[3:]] == [
        "python -c pass", "gasus --help", "select --threshold 4.5", "select --sweep 3,3.5,4,4.5,5"]


# ---------------------------------------------------------------- issue 29 item 9: a hub name offline


@pytest.mark.parametrize("hub", ["offline", "unreachable"])
@pytest.mark.parametrize("command", ["grade", "train", "generate"])
def test_a_hub_name_that_cannot_load_fails_at_once_in_one_line(tmp_path, hub, command):
    """Offline (the flags tests/conftest.py sets) or with the hub out of reach, a hub dataset or base model that
    is in no local cache is one line, before datasets, transformers or torch load: no 20 s of retry lines."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                            "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    if hub == "offline":
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        why = "HF_HUB_OFFLINE is set"
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: refused at once
        why = "the Hugging Face hub cannot be reached"
    args = {"grade": ["grade", "gasus-test/no-such-dataset", "--dry-run"],
            "train": ["train", str(FIXTURES / "mini_alpaca.json"), "-o", str(tmp_path / "m"),
                      "--base", "gasus-test/no-model"],
            "generate": ["generate", "hf:gasus-test/no-model", "--testsets-dir", str(FIXTURES / "testsets"),
                         "-o", str(tmp_path / "a.jsonl")]}[command]
    probe = f"""
import sys
from gasus.cli import main
try:
    main({args!r})
except SystemExit as exc:
    print(exc.code, sorted(m for m in ("datasets", "transformers", "torch") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    expected = {"grade": "Error: gasus-test/no-such-dataset: cannot load the Hugging Face hub dataset: ",
                "train": "Error: base model gasus-test/no-model: cannot be found: not a local file or directory, and ",
                "generate": "Error: gasus-test/no-model: cannot load the Hugging Face hub model: "}[command]
    assert (done.stdout, done.stderr) == ("2 []\n", f"{expected}{why} and it is not in the local Hugging Face cache\n")
