"""Prompt templates, kept as data in gasus/prompts/*.txt; a template's hash is its version."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError
from .records import sha256_text

PROMPTS_DIR = Path(__file__).with_name("prompts")


@dataclass(frozen=True)
class Template:
    """A named prompt text with {field} slots. `version` changes whenever the text does."""

    name: str
    text: str

    @property
    def version(self) -> str:
        return sha256_text(self.text)[:16]

    def render(self, **fields: str) -> str:
        try:
            return self.text.format(**fields)
        except KeyError as exc:
            raise BadInputError(f"prompt template '{self.name}' uses {{{exc.args[0]}}}, which is not available") from None
        except (IndexError, ValueError) as exc:
            raise BadInputError(f"prompt template '{self.name}' is not a valid template: {exc}") from None


@functools.cache
def load_template(name: str) -> Template:
    """A built-in template by name (the file gasus/prompts/NAME.txt, read byte for byte)."""
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.txt")))
        raise BadInputError(f"no built-in prompt '{name}' (known: {known})")
    return Template(name, path.read_text(encoding="utf-8"))


def template_from_file(path: str | Path) -> Template:
    """A user's template file (--prompt-file)."""
    path = Path(path)
    try:
        return Template(path.name, path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the prompt file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: the prompt file is not UTF-8 text") from None


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """Stanford Alpaca's prompt (with or without input): the text training and generation share."""
    if input:
        return load_template("alpaca_input").render(instruction=instruction, input=input)
    return load_template("alpaca_no_input").render(instruction=instruction)
