"""The paper's four test sets (Vicuna, Koala, WizardLM, Self-Instruct), read by name.

They are read from a directory the user names (--testsets-dir or $GASUS_DATA_DIR), else
downloaded once from the public AlpaGasus repository into the user data dir. A directory of
smaller sets in the same layouts (the toy sets in fixtures/testsets) declares its own sizes in
`gasus-testsets.json`; every other file must hold the paper's number of questions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInputError
from .io import atomic_write, iter_jsonl

RAW_BASE_URL = "https://raw.githubusercontent.com/gpt4life/alpagasus/main/test_data"
SIZES_FILE = "gasus-testsets.json"


@dataclass(frozen=True)
class TestSetSpec:
    """Where one test set's file is and which fields hold its id and question."""

    name: str
    filename: str
    size: int
    id_field: str
    question_field: str


SPECS: dict[str, TestSetSpec] = {
    "vicuna": TestSetSpec("vicuna", "vicuna_test_set.jsonl", 80, "question_id", "text"),
    "koala": TestSetSpec("koala", "koala_test_set.jsonl", 180, "id", "prompt"),
    "wizardlm": TestSetSpec("wizardlm", "wizardlm_test_set.jsonl", 218, "idx", "Instruction"),
    "sinstruct": TestSetSpec("sinstruct", "sinstruct_test_set.jsonl", 252, "id", "instruction"),
}
NAMES = tuple(SPECS)


@dataclass(frozen=True)
class TestQuestion:
    """One test question. `instruction` and `input` fill the Alpaca prompt; `question` is
    what the judge sees (Self-Instruct's input appended as " Input: ...", as the paper's
    evaluation script does)."""

    __test__ = False  # not a pytest test class

    testset: str
    id: str
    instruction: str
    input: str = ""

    @property
    def question(self) -> str:
        return f"{self.instruction} Input: {self.input}" if self.input else self.instruction


def data_dir() -> Path:
    """Where downloaded test sets are kept: $XDG_DATA_HOME/gasus/test_sets (~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "gasus" / "test_sets"


def resolve_names(names: str | Sequence[str]) -> list[str]:
    """Test-set names in the paper's order; "all" means the four; "a,b" lists are accepted.

    >>> resolve_names("all")
    ['vicuna', 'koala', 'wizardlm', 'sinstruct']
    >>> resolve_names(["koala,vicuna"])
    ['vicuna', 'koala']
    """
    if isinstance(names, str):
        names = [names]
    wanted: set[str] = set()
    for item in names:
        for name in (part.strip().lower() for part in item.split(",")):
            if name == "all":
                wanted.update(NAMES)
            elif name in SPECS:
                wanted.add(name)
            else:
                raise BadInputError(f"unknown test set '{name}': choose from {', '.join(NAMES)} or all")
    if not wanted:
        raise BadInputError(f"no test set named: choose from {', '.join(NAMES)} or all")
    return [n for n in NAMES if n in wanted]


def _question(spec: TestSetSpec, row: Any, where: str, path: Path) -> TestQuestion:
    if not isinstance(row, dict):
        raise BadInputError(f"{path}: {where}: expected a JSON object")
    raw_id = row.get(spec.id_field)
    text = row.get(spec.question_field)
    if raw_id is None or not isinstance(text, str):
        raise BadInputError(
            f"{path}: {where}: a {spec.name} question needs '{spec.id_field}' and a string '{spec.question_field}'"
        )
    input_ = ""
    if spec.name == "sinstruct":
        instances = row.get("instances")
        if not (isinstance(instances, list) and instances and isinstance(instances[0], dict)):
            raise BadInputError(f"{path}: {where}: a sinstruct task needs a non-empty 'instances' list")
        input_ = instances[0].get("input") or ""
        if not isinstance(input_, str):
            raise BadInputError(f"{path}: {where}: instances[0].input must be a string")
    return TestQuestion(spec.name, str(raw_id), text, input_)


def declared_size(name: str, directory: Path) -> int:
    """The number of questions a test-set file must hold: the paper's, unless the directory's
    gasus-testsets.json declares its own (a smaller set in the same layout)."""
    manifest = directory / SIZES_FILE
    if not manifest.is_file():
        return SPECS[name].size
    try:
        sizes = json.loads(manifest.read_text(encoding="utf-8")).get("sizes")
    except (OSError, ValueError, AttributeError) as exc:
        raise BadInputError(f"{manifest}: not a test-set sizes file ({exc})") from None
    size = sizes.get(name) if isinstance(sizes, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise BadInputError(f"{manifest}: 'sizes' must give the {name} test set a positive whole number")
    return size


def read_testset_file(name: str, path: str | Path) -> list[TestQuestion]:
    """The questions of one test-set file, its size checked against the paper's (or the
    size its directory declares)."""
    spec = SPECS[name]
    path = Path(path)
    size = declared_size(name, path.parent)
    questions = [_question(spec, row, f"line {lineno}", path) for lineno, row in iter_jsonl(path)]
    if len(questions) != size:
        raise BadInputError(f"{path}: the {name} test set has {size} questions, this file has {len(questions)}")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise BadInputError(f"{path}: question id '{dup}' appears more than once")
    return questions


def download_testset(name: str, directory: Path, *, timeout: float = 60.0) -> Path:
    """Fetch one test-set file from the AlpaGasus repository into `directory` (atomically)."""
    import httpx

    spec = SPECS[name]
    url = f"{RAW_BASE_URL}/{spec.filename}"
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        if isinstance(exc, httpx.HTTPStatusError):
            reason = f"HTTP {exc.response.status_code}"
        else:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"
        raise BadInputError(
            f"the {name} test set is not here and cannot be downloaded from {url} ({reason}); "
            "give --testsets-dir DIR or set GASUS_DATA_DIR to a folder holding the test-set files"
        ) from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"{directory}: cannot create the data directory: {exc.strerror}") from None
    target = directory / spec.filename
    with atomic_write(target, "wb") as handle:
        handle.write(response.content)
    return target


def testset_path(name: str, testsets_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """The file of one test set: in `testsets_dir`, else $GASUS_DATA_DIR, else the user data dir."""
    spec = SPECS[name]
    given = testsets_dir or os.environ.get("GASUS_DATA_DIR")
    if given:
        directory = Path(given).expanduser()
        path = directory / spec.filename
        if not path.exists():
            source = "--testsets-dir" if testsets_dir else "GASUS_DATA_DIR"
            raise BadInputError(f"{path}: no such file (the {name} test set, looked for in {source})")
        return path
    path = data_dir() / spec.filename
    if path.exists():
        return path
    if not download:
        raise BadInputError(f"{path}: the {name} test set has not been downloaded")
    return download_testset(name, data_dir())


def load_testsets(names: str | Sequence[str], testsets_dir: str | Path | None = None,
                  *, limit: int | None = None) -> list[TestQuestion]:
    """The questions of the named test sets, in file order; `limit` keeps the first N of each."""
    if limit is not None and limit < 1:
        raise BadInputError("--limit must be at least 1")
    questions: list[TestQuestion] = []
    for name in resolve_names(names):
        qs = read_testset_file(name, testset_path(name, testsets_dir))
        questions.extend(qs[:limit] if limit else qs)
    return questions
