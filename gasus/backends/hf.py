"""`hf:PATH_OR_ID`: a transformers causal LM (a hub id, or a local dir such as `gasus train`'s output).

Batched greedy generation with left padding; bf16 on a GPU, float32 on the CPU. Raw requests
(the Alpaca prompt) are tokenized as they are; chat requests go through the tokenizer's chat
template. torch and transformers are imported on first use only.

Modes: "generate" and "score" generate up to `max_tokens` and end at the first `stop` string
("score" is a short generation stopped at the line's end, as on API backends: grammars hold
GGUF models only); "expected" is one forward pass and the log-probabilities of the score
tokens "0".."5" at the answer position.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError, MissingDependencyError
from ..parsing import SCORE_TOKENS
from ..records import canonical_json, sha256_text
from ..thinking import template_kwargs, template_thinks
from .base import Backend, BackendOptions, Request, chat_fragments, file_sha256, single_token_ids

# Files whose bytes decide what the model writes: weights, config, tokenizer.
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".gguf", ".txt", ".jinja")


def _import_torch_transformers():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "transformers", "The hf backend", "torch transformers") from None
    return torch, transformers


class HFBackend(Backend):
    """A transformers model; `target` is a local directory or a hub id, optionally `id@revision`."""

    name = "hf"

    def __init__(self, target: str, options: BackendOptions | None = None):
        super().__init__(target, options)
        path = Path(target).expanduser()
        self.local_dir: Path | None = path if path.is_dir() else None
        if self.local_dir is None and (target.startswith((".", "/", "~")) or path.exists()):
            raise BackendError(f"{target}: not a model directory (hf: takes a directory or a hub id)")
        self.model_id, _, revision = target.partition("@") if self.local_dir is None else (target, "", "")
        self.revision = revision or None
        if self.local_dir is None:
            from ..hub import unavailable

            why = unavailable("models", self.model_id)
            if why is not None:  # before torch and transformers are imported, and retry for 20 s
                raise BackendError(f"{target}: cannot load the Hugging Face hub model: {why}")
        self._tokenizer = None
        self._model = None
        self._device = None
        self._score_ids: list[int] | None = None

    # -------------------------------------------------------------- identity

    def identity(self) -> str:
        """sha256 over the model directory's files (weights, config, tokenizer); a hub model's
        id and the commit its revision resolves to."""
        if self.local_dir is not None:
            # Only the top level is what transformers loads: a training run's checkpoints/ and its
            # manifest.json (which holds wall times) must not change the model's identity.
            files = sorted(p for p in self.local_dir.iterdir()
                           if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES and not p.name.startswith(".")
                           and p.name != "manifest.json")
            if not any(p.suffix in (".safetensors", ".bin", ".gguf") for p in files):
                raise BackendError(f"{self.local_dir}: no model weights (*.safetensors or *.bin) in the directory")
            h = hashlib.sha256()
            for p in files:
                h.update(f"{p.relative_to(self.local_dir).as_posix()}\0{file_sha256(p, self.cache)}\n".encode())
            return h.hexdigest()
        return f"{self.model_id}@{self._hub_commit()}"

    def _hub_commit(self) -> str:
        try:
            import huggingface_hub
        except ImportError:
            raise MissingDependencyError("huggingface_hub", "The hf backend") from None
        revision = self.revision or "main"
        try:
            snapshot = huggingface_hub.snapshot_download(self.model_id, revision=revision, local_files_only=True,
                                                         allow_patterns=["config.json"])
            return Path(snapshot).name
        except Exception:  # not in the local hub cache: ask the hub
            pass
        try:
            return huggingface_hub.HfApi().model_info(self.model_id, revision=revision).sha or revision
        except Exception as exc:  # offline, gated, unknown id
            raise BackendError(f"hf:{self.target}: cannot resolve the model on the Hugging Face hub: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None

    def cache_params(self) -> dict[str, Any]:
        torch, _ = _import_torch_transformers()
        tokenizer = self._load_tokenizer()
        template = getattr(tokenizer, "chat_template", None)
        return {"transformers": importlib.metadata.version("transformers"),
                "torch": torch.__version__,
                "dtype": "bfloat16" if self._use_cuda(torch) else "float32",
                # rows of a batch are left-padded to its longest: padding changes the numbers
                "batch_size": max(1, self.options.batch_size),
                "seed": self.options.seed,
                "chat_template": sha256_text(canonical_json(template)) if template else None,
                "data_as_text": True}  # see LlamaCppBackend.cache_params

    def thinks(self, request: Request) -> bool:
        """--thinking on, or auto with a reasoning model's chat template (as LlamaCppBackend.thinks)."""
        thinking = request.params.get("thinking", "auto")
        if thinking != "auto" or request.is_raw:
            return thinking == "on"
        template = getattr(self._load_tokenizer(), "chat_template", None)
        return template_thinks(template if isinstance(template, str) else canonical_json(template) if template else None)

    # -------------------------------------------------------------- loading

    @staticmethod
    def _use_cuda(torch) -> bool:
        return bool(torch.cuda.is_available())

    def _source(self) -> tuple[str, dict[str, Any]]:
        if self.local_dir is not None:
            ggufs = sorted(self.local_dir.glob("*.gguf"))
            has_weights = any(self.local_dir.glob("*.safetensors")) or any(self.local_dir.glob("*.bin"))
            if ggufs and not has_weights:
                return str(self.local_dir), {"gguf_file": ggufs[0].name}
            return str(self.local_dir), {}
        return self.model_id, {"revision": self.revision} if self.revision else {}

    def _load_tokenizer(self):
        if self._tokenizer is None:
            _, transformers = _import_torch_transformers()
            source, kwargs = self._source()
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            except Exception as exc:  # OSError for a missing model, ValueError for a bad one
                raise BackendError(f"hf:{self.target}: cannot load the tokenizer: {str(exc).splitlines()[0]}") from None
            tokenizer.padding_side = "left"  # generation continues from the right end of every row
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer = tokenizer
        return self._tokenizer

    def _load(self):
        if self._model is None:
            torch, transformers = _import_torch_transformers()
            tokenizer = self._load_tokenizer()
            source, kwargs = self._source()
            cuda = self._use_cuda(torch)
            dtype = torch.bfloat16 if cuda else torch.float32
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
            except Exception as exc:
                raise BackendError(f"hf:{self.target}: cannot load the model: {str(exc).splitlines()[0]}") from None
            self._device = torch.device("cuda" if cuda else "cpu")
            model.to(self._device)
            model.eval()
            if model.generation_config.pad_token_id is None:
                model.generation_config.pad_token_id = tokenizer.pad_token_id
            self._model = model
        return self._model, self._tokenizer

    # -------------------------------------------------------------- generation

    def prompt_ids(self, request: Request, tokenizer) -> list[int]:
        """The token ids of a request's prompt, in which data is always text: a raw prompt gets
        only the special tokens the tokenizer adds itself (BOS for LLaMA, as in training); a
        chat only those its template writes."""
        if request.is_raw:
            return tokenizer(request.messages[0]["content"], split_special_tokens=True)["input_ids"]
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError(f"hf:{self.target}: the tokenizer has no chat template; use the Alpaca prompt")
        specials = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
        extra = template_kwargs(request.params)  # --thinking on/off, by Qwen3's convention
        try:
            fragments = chat_fragments(
                lambda ms: tokenizer.apply_chat_template(ms, tokenize=False, add_generation_prompt=True, **extra),
                request.messages, specials)
        except BackendError as exc:
            raise BackendError(f"hf:{self.target}: {exc}") from None
        ids: list[int] = []
        for text, special in fragments:
            ids += tokenizer(text, add_special_tokens=False, split_special_tokens=not special)["input_ids"]
        return ids

    def _batch(self, requests: Sequence[Request]) -> Any:
        """The prompts of requests that share their params, tokenized (data as text, see
        `prompt_ids`) and left-padded on the device."""
        _, tokenizer = self._load()
        return tokenizer.pad({"input_ids": [self.prompt_ids(r, tokenizer) for r in requests]},
                             return_tensors="pt", padding=True).to(self._device)

    def _generate(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        torch, _ = _import_torch_transformers()
        model, tokenizer = self._load()
        params = requests[0].params
        batch = self._batch(requests)
        temperature = float(params.get("temperature") or 0)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(self.options.seed)
            sampling = {"do_sample": True, "temperature": temperature}
        stop = [str(s) for s in params.get("stop") or ()]
        if stop:  # end each row at its first stop string; the text is cut before it below
            sampling.update(stop_strings=stop, tokenizer=tokenizer)
        max_tokens = int(params.get("max_tokens") or (8 if params.get("mode") == "score" else 256))
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id, **sampling)
        new = out[:, batch["input_ids"].shape[1]:]
        results = []
        for row in new:
            n_tokens = int((row != tokenizer.pad_token_id).sum())
            text = tokenizer.decode(row, skip_special_tokens=True)
            ends = [text.find(s) for s in stop if s in text]
            results.append({"text": text[:min(ends)] if ends else text, "completion_tokens": n_tokens})
        return results

    def _score_token_ids(self, tokenizer) -> list[int]:
        """The vocabulary ids of "0".."5"; each must be a single token."""
        if self._score_ids is None:
            self._score_ids = single_token_ids(lambda t: tokenizer.encode(t, add_special_tokens=False),
                                               SCORE_TOKENS, f"hf:{self.target}")
        return self._score_ids

    def _expected(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        """One forward pass per batch: the log-probabilities of "0".."5" as the answer's first token."""
        torch, _ = _import_torch_transformers()
        model, tokenizer = self._load()
        ids = self._score_token_ids(tokenizer)
        batch = self._batch(requests)
        mask = batch["attention_mask"]
        # Left padding: positions count from each row's first real token, as generate() does.
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions).logits
        logprobs = torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu()
        return [{"text": tokenizer.decode([int(row.argmax())]),
                 "logprobs": {d: float(row[i]) for d, i in zip(SCORE_TOKENS, ids)},
                 "usage": {"prompt_tokens": int(n), "completion_tokens": 0}}
                for row, n in zip(logprobs, mask.sum(-1))]

    def _answer(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        if requests[0].params.get("mode") == "expected":
            return self._expected(requests)
        return self._generate(requests)

    def complete(self, request: Request) -> dict[str, Any]:
        return self._answer([request])[0]

    def complete_many(self, requests: Sequence[Request]) -> Iterator[tuple[int, dict[str, Any] | BackendError]]:
        """Batches of `batch_size` requests that share their decoding settings, longest prompts first
        so that rows of one batch need little padding."""
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(canonical_json(r.params), []).append(i)
        size = max(1, self.options.batch_size)
        for positions in groups.values():
            positions = sorted(positions, key=lambda i: -sum(len(m["content"]) for m in requests[i].messages))
            for start in range(0, len(positions), size):
                chunk = positions[start:start + size]
                try:
                    outputs = self._answer([requests[i] for i in chunk])
                except BackendError as exc:
                    for i in chunk:
                        yield i, exc
                    continue
                except RuntimeError as exc:  # CUDA out of memory and similar
                    err = BackendError(f"hf:{self.target}: generation failed: {str(exc).splitlines()[0]}")
                    for i in chunk:
                        yield i, err
                    continue
                for i, value in zip(chunk, outputs):
                    yield i, value

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
