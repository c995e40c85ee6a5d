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
