"""The transformers backend on the CPU, with the embedded SmolLM2-135M converted from its GGUF
into a safetensors model directory once per session (what `gasus train` writes looks the same)."""

from __future__ import annotations

import json
import shutil

import pytest

from gasus.backends import BackendOptions, CachedModel, Request, load_backend
from gasus.backends.hf import HFBackend
from gasus.cache import Cache
from gasus.errors import BackendError
from gasus.prompts import alpaca_prompt
from tests.conftest import FIXTURES, run_cli

# Converting the GGUF and loading transformers takes about a minute on two busy cores.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from gasus.backends import embedded_model_path

    gguf = embedded_model_path()
    out = tmp_path_factory.mktemp("smollm2-hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A model loaded from GGUF is marked as quantized and refuses save_pretrained: copy its
    # (dequantized) weights into a plain model of the same config.
    model = transformers.AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


PROMPTS = ["What is the capital of France?", "Name a primary colour.", "How many legs does a spider have?"]


def _raw(prompt, n=8):
    return Request.raw(alpaca_prompt(prompt), temperature=0, max_tokens=n)


def test_greedy_batched_equals_one_by_one(hf_model_dir):
    requests = [_raw(p) for p in PROMPTS]
    batched = HFBackend(str(hf_model_dir), BackendOptions(batch_size=3))
    single = HFBackend(str(hf_model_dir), BackendOptions(batch_size=1))
    by_batch = dict(batched.complete_many(requests))
    by_one = dict(single.complete_many(requests))
    texts = [by_batch[i]["text"] for i in range(3)]
    assert texts == [by_one[i]["text"] for i in range(3)]
    assert texts == HF_RAW_TEXTS


HF_RAW_TEXTS = ["\nThe capital of France is Paris.", "\nThe primary colour is red.", "\nA spider has 8 legs."]


def test_chat_request_uses_the_chat_template(hf_model_dir):
    backend = HFBackend(str(hf_model_dir))
    out = backend.complete(Request.chat([{"role": "user", "content": "Say hi."}], temperature=0, max_tokens=6))
    assert out["text"] == HF_CHAT_TEXT
    assert out["completion_tokens"] == 6


HF_CHAT_TEXT = "Hello there! I'm here"


def test_identity_follows_the_files(hf_model_dir, tmp_path):
    a = HFBackend(str(hf_model_dir)).identity()
    assert a == HFBackend(str(hf_model_dir)).identity() and len(a) == 64
    copy = tmp_path / "copy"
    shutil.copytree(hf_model_dir, copy)
    assert HFBackend(str(copy)).identity() == a  # content, not location
    # A training run's manifest (wall times) and kept checkpoints are not the model.
    (copy / "manifest.json").write_text('{"wall_seconds": 12.5}')
    (copy / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (copy / "checkpoints" / "checkpoint-1" / "model.safetensors").write_bytes(b"other weights")
    assert HFBackend(str(copy)).identity() == a
    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert HFBackend(str(copy)).identity() != a


def test_cache_params_and_cached_calls(hf_model_dir):
    import transformers

    model = CachedModel(load_backend(f"hf:{hf_model_dir}"), Cache())
    params = model.backend.cache_params()
    assert params["transformers"] == transformers.__version__
    assert params["dtype"] == "float32"
    assert params["chat_template"] is not None and len(params["chat_template"]) == 64
    first = model.run([_raw(PROMPTS[0], 4)])
    again = model.run([_raw(PROMPTS[0], 4)])
    assert (model.stats.model_calls, model.stats.cache_hits) == (1, 1)
    assert again[0].value == first[0].value and again[0].cached


def test_not_a_model_dir(tmp_path):
    with pytest.raises(BackendError, match="not a model directory"):
        HFBackend(str(tmp_path / "missing"))
    with pytest.raises(BackendError, match="no model weights"):
        HFBackend(str(tmp_path)).identity()


def test_generate_command_with_hf(hf_model_dir, tmp_path):
    result = run_cli("generate", f"hf:{hf_model_dir}", "--testset", "vicuna", "--limit", "2", "--max-new-tokens", "8",
                     "--testsets-dir", str(FIXTURES / "testsets"), "-o", str(tmp_path / "a.jsonl"),
                     "--model-name", "smol-hf", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [(r["id"], r["model"]) for r in rows] == [("1", "smol-hf"), ("2", "smol-hf")]
    assert all(r["answer"] for r in rows)


# ---------------------------------------------------------------- modes and the cache key


def test_backends_that_ignore_a_mode_hf_expected_is_one_forward_pass(hf_model_dir, mini_alpaca):
    from gasus.grade import grade_from_value, grade_request, grading_prompt
    from gasus.io import load_examples

    requests = [grade_request(grading_prompt("accuracy"), e, "expected") for e in load_examples(mini_alpaca)[:3]]
    batched = dict(HFBackend(str(hf_model_dir), BackendOptions(batch_size=3)).complete_many(requests))
    single = dict(HFBackend(str(hf_model_dir), BackendOptions(batch_size=1)).complete_many(requests))
    grades = [grade_from_value(batched[i], "expected") for i in range(3)]
    assert [g["status"] for g in grades] == ["ok"] * 3
    assert [sorted(g["probs"]) for g in grades] == [["0", "1", "2", "3", "4", "5"]] * 3
    assert [round(sum(g["probs"].values()), 4) for g in grades] == [1.0] * 3
    assert [batched[i]["usage"]["completion_tokens"] for i in range(3)] == [0, 0, 0]
    # Left padding changes no row's numbers beyond float rounding: positions follow the mask.
    for i in range(3):
        assert batched[i]["logprobs"].keys() == single[i]["logprobs"].keys()
        assert max(abs(batched[i]["logprobs"][d] - single[i]["logprobs"][d]) for d in "012345") < 1e-3


def test_backends_that_ignore_a_mode_hf_stop_ends_the_text(hf_model_dir):
    backend = HFBackend(str(hf_model_dir))
    free = backend.complete(_raw(PROMPTS[0], 8))["text"]
    stop = free.split()[2]  # a word the greedy text is known to reach
    stopped = backend.complete(Request.raw(alpaca_prompt(PROMPTS[0]), temperature=0, max_tokens=8, stop=[stop]))
    assert stopped["text"] == free[:free.index(stop)]
    assert stopped["completion_tokens"] < 8


def test_cache_key_gaps_hf_batch_size_and_torch_version_miss_the_cache(hf_model_dir, monkeypatch):
    import torch

    from tests.test_cache import _misses_after_change

    request = _raw(PROMPTS[0], 4)
    assert _misses_after_change(HFBackend(str(hf_model_dir), BackendOptions(batch_size=8)),
                                lambda: HFBackend(str(hf_model_dir), BackendOptions(batch_size=1)), request) == [0]

    def newer_torch():
        monkeypatch.setattr(torch, "__version__", torch.__version__ + ".post1")
        return HFBackend(str(hf_model_dir))

    assert _misses_after_change(HFBackend(str(hf_model_dir)), newer_torch, request) == [0]
