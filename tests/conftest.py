"""Shared fixtures: every test gets its own cache and data dirs, and paths to real data.

Tests about the real data in ../shared/data (the Alpaca sample and its labels, the paper's
test sets, GPT-4's recorded reviews) take the `shared_data` fixture: they are marked
`needs_shared` and skip where the folder is absent, or where GASUS_TEST_NO_SHARED=1 hides it
(CI runs the suite that way too, as a public clone has it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Point the cache and every user dir at tmp_path, and keep API keys out of tests."""
    monkeypatch.setenv("GASUS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("GASUS_DATA_DIR", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture
def mini_alpaca() -> Path:
    return FIXTURES / "mini_alpaca.json"


def pytest_collection_modifyitems(items):
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_shared)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test when it is absent (a fresh clone elsewhere) or hidden."""
    if os.environ.get("GASUS_TEST_NO_SHARED") == "1":
        pytest.skip("../shared/data is hidden (GASUS_TEST_NO_SHARED=1)")
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def embedded_gguf() -> Path:
    from gasus.backends import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def base_cache(tmp_path_factory) -> Path:
    """A gasus cache dir holding the embedded GGUF dequantized to safetensors, converted once
    per session (about 25 s): tests that train point GASUS_CACHE_DIR here or use the dir."""
    from gasus.backends import embedded_model_path
    from gasus.train import converted_gguf_dir

    root = tmp_path_factory.mktemp("gasus-cache")
    converted_gguf_dir(embedded_model_path(), cache_dir=root)
    return root


@pytest.fixture
def base_dir(base_cache) -> Path:
    (path,) = (base_cache / "models").iterdir()
    return path


@pytest.fixture
def one_thread():
    """CI shares two cores among several jobs; two torch threads there spin against each other
    and a step swings from 4 s to 40 s. One thread keeps the training tests steady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(*args: str, input: str | None = None):
    """Invoke the gasus CLI in-process; returns click's Result."""
    from click.testing import CliRunner

    from gasus.cli import main

    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
