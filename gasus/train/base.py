"""The base model to fine-tune: resolving a `--base` spec, converting a GGUF to a safetensors
directory (memoised in the cache dir), and loading model and tokenizer.

torch and transformers are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import distributed
from ..errors import BadInputError, MissingDependencyError
from ..io import current_umask


@dataclass(frozen=True)
class BaseModel:
    """Where the weights to fine-tune come from: a GGUF file, a local directory or a hub id."""

    spec: str
    kind: str  # "gguf" | "dir" | "hub"
    location: str  # the GGUF file, the directory, or the hub id
    sha256: str | None = None  # of the GGUF file's bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_base(spec: str | None) -> BaseModel:
    """The base model a `--base` value names: None for the embedded SmolLM2-135M-Instruct GGUF,
    a `.gguf` path (optionally `llamacpp:`), a directory with config.json, or a hub id
    (optionally `hf:`). Nothing is loaded here."""
    from ..backends import embedded_model_path, is_embedded

    if is_embedded(spec):
        path = embedded_model_path()
        return BaseModel("embedded", "gguf", str(path))
    target = spec
    for prefix in ("hf:", "llamacpp:"):
        if target.startswith(prefix):
            target = target[len(prefix):]
            break
    path = Path(target).expanduser()
    if target.lower().endswith(".gguf"):
        if not path.is_file():
            raise BadInputError(f"base model {spec}: no such GGUF file")
        return BaseModel(spec, "gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BadInputError(f"base model {spec}: the directory has no config.json (not a transformers model)")
        return BaseModel(spec, "dir", str(path))
    if path.exists():
        raise BadInputError(f"base model {spec}: not a .gguf file or a model directory")
    if target.startswith((".", "/", "~")) or target.count("/") > 1 or not target:
        raise BadInputError(f"base model {spec}: no such file or directory")
    return BaseModel(spec, "hub", target)


def check_base_available(base: BaseModel) -> None:
    """Refuse a hub base that is in no local cache while offline or with the hub out of reach: at once,
    before torch and transformers load and retry for 20 s."""
    from ..hub import unavailable

    why = unavailable("models", base.location) if base.kind == "hub" else None
    if why is not None:
        raise BadInputError(f"base model {base.spec}: cannot be found: not a local file or directory, and {why}")


def _gguf_sha256(path: str | Path) -> str:
    from ..backends.base import file_sha256

    return file_sha256(path)


def converted_gguf_dir(gguf: str | Path, cache_dir: str | Path | None = None, *,
                       status: Callable[[str], None] | None = None) -> Path:
    """A GGUF dequantized to a safetensors model directory (with its tokenizer), memoised in the
    gasus cache dir under the GGUF's sha256, so the slow conversion happens once per file.
    `status` hears that a conversion starts."""
    from ..cache import MODELS, prepare_cache_dir

    target = prepare_cache_dir(cache_dir) / MODELS / f"gguf-{_gguf_sha256(gguf)}"
    if (target / "config.json").is_file():
        return target
    with distributed.main_process_first():  # one GGUF conversion, not one per process
        if not (target / "config.json").is_file():
            if status is not None:
                status(f"converting {Path(gguf).name} to safetensors (once per file)")
            convert_gguf(gguf, target)
    return target


def convert_gguf(gguf: str | Path, target: str | Path) -> Path:
    """Dequantize a GGUF file with transformers and save model + tokenizer as safetensors in
    `target`, which appears whole or not at all."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, target = Path(gguf), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        try:
            with _quiet_gguf_reader():
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                             dtype=torch.float32)
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "gguf", "Loading a GGUF base model") from None
        except (ValueError, OSError, KeyError, RuntimeError) as exc:
            raise BadInputError(f"{gguf}: transformers cannot load this GGUF as a trainable model: "
                                f"{_first_line(exc)}") from None
        # The loaded model still carries the GGUF quantizer and its config entry; without them the
        # safetensors copy loads and trains like any other model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _quiet_gguf_reader() -> Iterator[None]:
    """Silence transformers' GGUF tensor bar: it is a plain tqdm that neither its logging
    settings nor disable_progress_bar() reach, and in a log it prints line after line."""
    import functools
    from unittest import mock

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    with mock.patch.object(gguf_utils, "tqdm", functools.partial(bar, disable=True)):
        yield


def load_base(base: BaseModel, *, status: Callable[[str], None] | None = None) -> tuple[Any, Any, str]:
    """(model in fp32, tokenizer, the path or id loaded) for a resolved base model; `status` hears
    of each slow step (a GGUF's conversion, the loading)."""
    check_base_available(base)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = str(converted_gguf_dir(base.location, status=status)) if base.kind == "gguf" else base.location
    if status is not None:
        status(f"loading the base model {base.spec}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    except OSError as exc:
        if base.kind == "hub":
            raise BadInputError(f"base model {base.spec}: cannot be found: not a local file or directory, and "
                                f"not loadable from the Hugging Face hub (offline, gated, or no such model?): "
                                f"{_first_line(exc)}") from None
        raise BadInputError(f"base model {base.spec}: cannot load: {_first_line(exc)}") from None
    except ValueError as exc:
        raise BadInputError(f"base model {base.spec}: not a causal language model transformers can "
                            f"train: {_first_line(exc)}") from None
    return model, tokenizer, location


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
