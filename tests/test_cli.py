"""Every command: a described --help with an example; start-up stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gasus.cli import COMMANDS, main
from tests.conftest import run_cli

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
