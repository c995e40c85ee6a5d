"""Prompt templates, kept as data in gasus/prompts/*.txt; a template's hash is its version."""

from __future__ import annotations

import functools
import string
from collections.abc import Collection
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

    def fields(self, allowed: Collection[str], label: str | None = None) -> set[str]:
        """The fields the text fills in, parsed as str.format parses them (`{{x}}` is a literal).

        Only bare names from `allowed` are accepted, with an optional conversion (`!s`): an index,
        an attribute or a format spec (`{input:>3000000000}` pads to gigabytes) is refused.
        """
        label = label or self.name
        names = set()
        try:
            parsed = list(string.Formatter().parse(self.text))
        except ValueError as exc:
            raise BadInputError(f"prompt '{label}': not a valid template: {exc}") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name not in allowed:
                known = ", ".join("{" + a + "}" for a in allowed)
                raise BadInputError(f"prompt '{label}': unknown field {written} (use {known})")
            if spec:
                raise BadInputError(f"prompt '{label}': {written} has a format spec; write the bare field")
            names.add(name)
        return names

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
