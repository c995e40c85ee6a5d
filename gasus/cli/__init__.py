"""The gasus command line: a click group whose commands live one per module.

Commands are imported lazily by name, so `gasus --help` loads none of the heavy libraries.
"""

from __future__ import annotations

import importlib
import os

import click

from .. import __version__
from .common import GasusGroup

# command name -> "module:attribute"; add a line here to add a command.
COMMANDS = {
    "select": "gasus.cli.select:select",
    "cache": "gasus.cli.cache:cache",
    "train": "gasus.cli.train:train",
    "grade": "gasus.cli.grade:grade",
    "agree": "gasus.cli.agree:agree",
    "generate": "gasus.cli.generate:generate",
    "judge": "gasus.cli.judge:judge",
    "run": "gasus.cli.run:run",
    "report": "gasus.cli.report:report",
    "batch": "gasus.cli.batch:batch",
    "check": "gasus.cli.check:check",
}


class LazyGroup(GasusGroup):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, _, attr = COMMANDS[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gasus")
def main():
    """gasus: the AlpaGasus recipe as software.

    Grade every (instruction, input, response) triplet with an LLM, keep the best
    (score >= 4.5), fine-tune on them, and judge the result against a baseline, offline
    by default with a local GGUF model. Every model call is cached.

    \b
    Example:
      gasus grade fixtures/mini_alpaca.json -o scores.jsonl
      gasus select fixtures/mini_alpaca.json scores.jsonl -o kept.json
    """
    # gasus draws its own progress; the libraries' bars and info lines would interleave with
    # it. Read when those libraries are imported; set any of them to override.
    for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                        ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(name, value)
