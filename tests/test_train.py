"""gasus train: presets and checks, the label mask, a few CPU steps with the embedded model,
reloading and generating, an overfit run, LoRA with resume, and one-line errors."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest

from gasus.errors import BadInputError
from gasus.io import load_examples
from gasus.prompts import alpaca_prompt
from gasus.train import (
    PRESETS,
    BatchPlan,
    TrainConfig,
    converted_gguf_dir,
    plan_batches,
    resolve_base,
    resolve_precision,
    training_rows,
)
from tests.conftest import FIXTURES, run_cli

MINI = FIXTURES / "mini_alpaca.json"
NO_GPU = {"device": "cpu", "name": "x86_64", "count": 2, "bf16": False, "tf32": False}
BF16_GPU = {"device": "cuda", "name": "NVIDIA A100", "count": 4, "bf16": True, "tf32": True}


def load_model(path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------- configs and checks (fast)


def test_presets_hold_the_papers_settings():
    seven = TrainConfig.from_preset("alpagasus-7b")
    assert (seven.epochs, seven.learning_rate, seven.batch_size, seven.max_length, seven.weight_decay,
            seven.warmup_ratio, seven.lr_scheduler, seven.precision, seven.max_steps) == (
        3.0, 2e-5, 128, 512, 0.0, 0.03, "cosine", "bf16", None)
    thirteen = TrainConfig.from_preset("alpagasus-13b")
    assert (thirteen.epochs, thirteen.learning_rate) == (5.0, 1e-5)
    assert {k: v for k, v in thirteen.to_dict().items() if k not in ("preset", "epochs", "learning_rate")} == \
        {k: v for k, v in seven.to_dict().items() if k not in ("preset", "epochs", "learning_rate")}
    smoke = TrainConfig.from_preset("cpu-smoke")
    assert (smoke.batch_size, smoke.max_length, smoke.max_steps, smoke.precision) == (4, 128, 4, "auto")
    assert set(PRESETS) == {"alpagasus-7b", "alpagasus-13b", "cpu-smoke"}
    from gasus.cli.train import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)  # the CLI lists them without importing gasus.train


def test_overrides_replace_preset_values_and_none_keeps_them():
    config = TrainConfig.from_preset("alpagasus-7b", epochs=1, learning_rate=None, max_steps=7, seed=3)
    assert (config.epochs, config.learning_rate, config.max_steps, config.seed, config.preset) == (1, 2e-5, 7, 3, "alpagasus-7b")


def test_global_batch_splits_like_alpaca():
    config = TrainConfig.from_preset("alpagasus-7b")
    assert plan_batches(config, world_size=4) == BatchPlan(4, 4, 8)  # Alpaca: 4 GPUs x 4 x 8 accumulation
    assert plan_batches(config, world_size=1) == BatchPlan(1, 4, 32)
    assert plan_batches(TrainConfig.from_preset("alpagasus-7b", batch_size=6), 1) == BatchPlan(1, 2, 3)
    assert plan_batches(TrainConfig.from_preset("alpagasus-7b", micro_batch_size=16), 2).global_batch_size == 128
    with pytest.raises(BadInputError, match="the global batch size 128 does not divide by 3 processes"):
        plan_batches(config, world_size=3)


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 0}, "the batch size must be at least 1, got 0"),
    ({"learning_rate": 0.0}, "the learning rate must be above 0, got 0.0"),
    ({"epochs": -1.0}, "epochs must be above 0, got -1.0"),
    ({"max_steps": 0}, "max steps must be at least 1, got 0"),
    ({"warmup_ratio": 1.0}, "the warmup ratio must be in [0, 1), got 1.0"),
    ({"precision": "fp16"}, "unknown precision 'fp16': choose one of auto, bf16, fp32"),
    ({"batch_size": 6, "micro_batch_size": 4}, "the batch size 6 is not a multiple of the per-device batch size 4"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_preset("alpagasus-7b", **overrides)
    assert str(info.value) == message


def test_unknown_preset_and_setting():
    with pytest.raises(ValueError, match="unknown preset 'llama-70b'"):
        TrainConfig.from_preset("llama-70b")
    with pytest.raises(ValueError, match="unknown training setting\\(s\\): lr"):
        TrainConfig.from_preset("cpu-smoke", lr=1e-3)


def test_precision_bf16_and_tf32_on_gpus_fp32_on_cpu():
    seven = TrainConfig.from_preset("alpagasus-7b")
    assert resolve_precision(seven, BF16_GPU) == (True, True, [])
    assert resolve_precision(TrainConfig.from_preset("cpu-smoke"), NO_GPU) == (False, False, [])
    assert resolve_precision(TrainConfig.from_preset("cpu-smoke"), BF16_GPU) == (True, True, [])
    assert resolve_precision(TrainConfig.from_preset("alpagasus-7b", precision="fp32"), BF16_GPU) == (False, False, [])
    assert resolve_precision(seven, NO_GPU) == (False, False, [
        "the alpagasus-7b preset trains in bf16, which needs a GPU with bf16 (found no GPU): training in fp32 instead"])
    with pytest.raises(BadInputError) as info:
        resolve_precision(TrainConfig.from_preset("alpagasus-13b", fp32_fallback=False), NO_GPU)
    assert str(info.value) == ("the alpagasus-13b preset trains in bf16, which needs a GPU with bf16 (found no GPU); "
                               "train on a GPU that has it, or use --precision fp32")
    with pytest.raises(BadInputError) as info:
        resolve_precision(TrainConfig.from_preset("cpu-smoke", precision="bf16", fp32_fallback=False),
                          {**BF16_GPU, "name": "Tesla V100", "bf16": False, "tf32": False})
    assert str(info.value) == ("--precision bf16 trains in bf16, which needs a GPU with bf16 (found Tesla V100); "
                               "train on a GPU that has it, or use --precision fp32")


def _fake_conversion(gguf, target):
    """Stands in for the slow dequantization: the converted directory appears, as convert_gguf leaves it."""
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    return target


def test_train_leaves_the_cache_dir_a_gasus_cache(tmp_path, embedded_gguf, monkeypatch):
    """Converting a GGUF base into a cache dir that does not exist yet leaves a cache every command opens."""
    from gasus.cache import MARKER, Cache
    from gasus.train import base

    monkeypatch.setattr(base, "convert_gguf", _fake_conversion)
    root = tmp_path / "cache"
    converted = converted_gguf_dir(embedded_gguf)
    assert converted.parent == root / "models"
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "models"]
    cache = Cache()
    cache.put("k", {"text": "4"})
    assert (cache.directory, Cache().get("k")) == (root, {"text": "4"})


def test_train_leaves_the_cache_dir_a_gasus_cache_after_an_older_gasus_left_it_unmarked(tmp_path):
    """A cache dir holding only the models an older `gasus train` converted is gasus's own; any other
    file still makes it foreign."""
    from gasus.cache import Cache
    from gasus.errors import CacheError

    root = tmp_path / "cache"
    _fake_conversion(None, root / "models" / f"gguf-{'0' * 64}")
    assert len(Cache()) == 0
    (root / "notes.txt").write_text("mine")
    (root / "gasus-cache.json").unlink()
    with pytest.raises(CacheError, match="not a gasus cache"):
        Cache()


def test_resolve_base(tmp_path, embedded_gguf):
    assert resolve_base(None).kind == "gguf" and resolve_base(None).location == str(embedded_gguf)
    assert resolve_base(str(embedded_gguf)).kind == "gguf"
    assert resolve_base("hf:HuggingFaceTB/SmolLM2-135M").location == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_base("huggyllama/llama-7b").kind == "hub"
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "missing.gguf"): "no such GGUF file",
        str(tmp_path / "empty"): "the directory has no config.json (not a transformers model)",
        "./runs/nothing-here": "no such file or directory",
        str(MINI): "not a .gguf file or a model directory",
    }
    for spec, message in cases.items():
        with pytest.raises(BadInputError) as info:
            resolve_base(spec)
        assert str(info.value) == f"base model {spec}: {message}"


def test_training_rows_use_the_alpaca_prompt():
    examples = load_examples(MINI)
    rows = training_rows(examples)
    assert rows[2] == {"prompt": alpaca_prompt("Translate the sentence into French.", "Good morning, my friend."),
                       "completion": "Bonjour, mon ami."}
    assert rows[0]["prompt"].endswith("### Instruction:\nName the largest planet in the solar system.\n\n### Response:")


# ---------------------------------------------------------------- the command line (fast paths)


def test_help_has_description_and_example():
    result = run_cli("train", "--help")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "Fine-tune a model on instruction data with the AlpaGasus (Stanford Alpaca) recipe." in flat
    assert "Example:\n    gasus train kept.json -o runs/smoke --preset cpu-smoke" in result.output
    for option in ("--base", "--preset", "--epochs", "--lr", "--batch-size", "--max-length", "--max-steps",
                   "--seed", "--lora", "--resume", "--summary-json"):
        assert option in result.output


def test_train_help_says_the_default_preset_is_the_papers_7b():
    """Without --preset, train takes the 7B settings (bf16, global batch 128, 3 epochs); the help says so."""
    seven_b = PRESETS["alpagasus-7b"]
    assert (seven_b["precision"], seven_b["batch_size"], seven_b["epochs"], seven_b["learning_rate"],
            seven_b["max_length"]) == ("bf16", 128, 3.0, 2e-5, 512)
    flat = " ".join(run_cli("train", "--help").output.split())
    assert ("Without --preset it trains with the paper's 7B settings (alpagasus-7b: bf16, global batch 128, "
            "3 epochs); on a CPU try --preset cpu-smoke.") in flat
    assert ("alpagasus-7b, the default: bf16 (fp32 where no GPU has bf16), global batch 128, 3 epochs, lr 2e-5, "
            "max length 512; alpagasus-13b: the same with 5 epochs at lr 1e-5; cpu-smoke: 4 steps of batch 4, "
            "max length 128, lr 1e-4, for a quick check on a CPU. [default: alpagasus-7b]") in flat


def test_fp32_note_is_shown_once(tmp_path, monkeypatch):
    """The note that bf16 falls back to fp32 reaches the screen once, as a Note: line (it was logged
    too, and with no logging set up Python printed the bare line as well)."""
    import logging

    from gasus.train import trainer

    def stop(base, **_):
        raise BadInputError("stopped before loading the model")

    # logging as in `gasus train` run from a shell: no handler anywhere (pytest adds its own to the root)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(trainer, "detect_hardware", lambda: NO_GPU)
    monkeypatch.setattr(trainer, "load_base", stop)
    result = run_cli("train", str(MINI), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "Note: the alpagasus-7b preset trains in bf16, which needs a GPU with bf16 (found no GPU): "
        "training in fp32 instead",
        "Error: stopped before loading the model"]


def test_train_prints_the_mean_loss_its_summary_holds(tmp_path, monkeypatch):
    """The loss on the screen is the run's mean loss, the train_loss of --summary-json and the manifest,
    not the last step's (which swings from batch to batch)."""
    from gasus import train as training

    out = tmp_path / "out"
    manifest = {"train": {"steps": 2, "tokens": 100, "tokens_per_second": 50.0, "train_seconds": 2.0,
                          "train_loss": 1.5, "loss_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]}}
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: training.TrainResult(out, manifest))
    result = run_cli("train", str(MINI), "-o", str(out), "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"trained 2 steps on 40 examples in 2.0 s (50.0 tokens/s, mean loss 1.5000) -> {out}\n"
    assert json.loads((tmp_path / "s.json").read_text())["train_loss"] == 1.5


def test_library_future_warnings_stay_out_of_train_output(tmp_path, monkeypatch):
    """A FutureWarning that transformers or trl raise about their own API during training is not shown
    (it broke into the progress display and told the user nothing they could act on)."""
    import warnings

    from gasus import train as training

    out = tmp_path / "out"
    manifest = {"train": {"steps": 1, "tokens": 10, "tokens_per_second": 5.0, "train_seconds": 2.0,
                          "train_loss": 1.5, "loss_history": [{"step": 1, "loss": 1.5}]}}

    def deprecated_inside(*args, **kwargs):
        warnings.warn("`old_name` is deprecated and will be removed in v6. Use `new_name` instead.", FutureWarning,
                      stacklevel=2)
        return training.TrainResult(out, manifest)

    monkeypatch.setattr(training, "train", deprecated_inside)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = run_cli("train", str(MINI), "-o", str(out), "--preset", "cpu-smoke")
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in shown if issubclass(w.category, FutureWarning)] == []
    assert result.stderr == ""


@pytest.mark.parametrize("code", [
    "import gasus.train",
    "from gasus.cli import main; main(['train', '--help'])",
    "from gasus.cli import main; main(['train', '--show-fsdp-config'])",
])
def test_train_help_and_module_import_nothing_heavy(code):
    import subprocess
    import sys

    heavy = ["torch", "transformers", "trl", "datasets", "peft", "accelerate"]
    probe = f"""
import sys, json
try:
    {code}
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_show_fsdp_config_prints_the_shipped_file():
    result = run_cli("train", "--show-fsdp-config")
    assert result.exit_code == 0
    path = Path(result.output.strip())
    assert path.name == "fsdp.yaml" and path.is_file()
    import yaml

    config = yaml.safe_load(path.read_text())
    assert config["distributed_type"] == "FSDP" and config["mixed_precision"] == "bf16"
    assert config["fsdp_config"]["fsdp_sharding_strategy"] == "FULL_SHARD"
    assert config["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert config["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert config["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_empty_dataset_is_a_one_line_error(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    line = one_line_error(run_cli("train", str(tmp_path / "empty.json"), "-o", str(tmp_path / "out")))
    assert line == f"Error: {tmp_path / 'empty.json'}: the dataset has no examples"
    assert not (tmp_path / "out").exists()


def test_batch_that_does_not_split_is_a_one_line_error(tmp_path):
    line = one_line_error(run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--batch-size", "6",
                                  "--per-device-batch-size", "4"))
    assert line == "Error: the batch size 6 is not a multiple of the per-device batch size 4"


def test_missing_base_model_is_a_one_line_error(tmp_path):
    line = one_line_error(run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--base", str(tmp_path / "no.gguf")))
    assert line == f"Error: base model {tmp_path / 'no.gguf'}: no such GGUF file"


def test_unknown_hub_model_offline_is_a_one_line_error(tmp_path):
    result = run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--base", "gasus-test/no-such-model",
                     "--precision", "fp32")
    assert one_line_error(result) == (  # HF_HUB_OFFLINE (tests/conftest.py): said before transformers loads
        "Error: base model gasus-test/no-such-model: cannot be found: not a local file or directory, and "
        "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_bf16_preset_without_gpu_and_without_fallback_is_a_one_line_error(tmp_path):
    line = one_line_error(run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--preset", "alpagasus-7b",
                                  "--no-fp32-fallback"))
    assert line == ("Error: the alpagasus-7b preset trains in bf16, which needs a GPU with bf16 (found no GPU); "
                    "train on a GPU that has it, or use --precision fp32")


def test_output_dir_with_files_is_a_one_line_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = one_line_error(run_cli("train", str(MINI), "-o", str(out), "--preset", "cpu-smoke"))
    assert line == (f"Error: {out}: the output directory already holds files; choose an empty one "
                    "(or pass --resume to continue an interrupted run)")
    line = one_line_error(run_cli("train", str(MINI), "-o", str(tmp_path / "new"), "--preset", "cpu-smoke", "--resume"))
    assert line == f"Error: {tmp_path / 'new'}: no checkpoint to resume from in {tmp_path / 'new' / 'checkpoints'}"


@pytest.mark.slow  # needs the converted model's tokenizer
def test_max_length_below_the_prompt_is_a_one_line_error(tmp_path, base_dir):
    line = one_line_error(run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--base", str(base_dir),
                                  "--preset", "cpu-smoke", "--max-length", "60"))
    # The 40 prompts are 34 to 83 tokens long (SmolLM2's tokenizer); 6 have 60 or more; row 4 is the longest.
    assert line == ("Error: the max length 60 is below the prompt length of 6 of 40 examples (longest prompt: "
                    "83 tokens, row 4), leaving no room for the response: use a max length of at least 84")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the label mask


@pytest.mark.slow
def test_label_mask_covers_exactly_the_response_tokens(tmp_path, base_dir):
    from gasus.train import build_trainer

    examples = load_examples(MINI)
    model, tokenizer = load_model(base_dir)
    trainer = build_trainer(examples, TrainConfig.from_preset("cpu-smoke"), model, tokenizer, tmp_path / "out")
    data = trainer.train_dataset
    assert len(data) == 40
    eos = tokenizer.eos_token_id

    # Row 0, Alpaca's template without input: 38 prompt tokens masked, then the response and EOS.
    ids, labels = data[0]["input_ids"], data[0]["labels"]
    assert (len(ids), labels.count(-100)) == (50, 38)
    assert labels == [-100] * 38 + ids[38:]
    assert tokenizer.decode(ids[:38]) == alpaca_prompt("Name the largest planet in the solar system.")
    assert tokenizer.decode(ids[38:]) == "Jupiter is the largest planet in the solar system.<|im_end|>"

    # Row 2, the template with input.
    ids, labels = data[2]["input_ids"], data[2]["labels"]
    assert labels == [-100] * 57 + [30904, 24583, 28, 1091, 744, 89, 30, eos]
    assert tokenizer.decode(ids[:57]) == alpaca_prompt("Translate the sentence into French.", "Good morning, my friend.")

    # Every row: the masked part is exactly the tokenized prompt, the rest exactly the response + EOS.
    for example, row in zip(examples, data, strict=True):
        prompt_ids = tokenizer(alpaca_prompt(example.instruction, example.input))["input_ids"]
        n = len(prompt_ids)
        assert row["input_ids"][:n] == prompt_ids
        assert row["labels"] == [-100] * n + row["input_ids"][n:]
        assert tokenizer.decode(row["labels"][n:]) == example.output + tokenizer.eos_token
        assert row["labels"][-1] == eos


@pytest.mark.slow
def test_progress_output_stays_ours_converting_a_gguf_prints_no_bar(tmp_path, embedded_gguf, capfd):
    """With transformers' own bars off, as `gasus train` turns them off, converting prints nothing:
    its GGUF tensor bar is a plain tqdm those settings do not reach."""
    from transformers.utils import logging as hf_logging

    from gasus.train import convert_gguf

    hf_logging.disable_progress_bar()
    try:
        convert_gguf(embedded_gguf, tmp_path / "converted")
    finally:
        hf_logging.enable_progress_bar()
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "")
    assert (tmp_path / "converted" / "model.safetensors").is_file()


# ---------------------------------------------------------------- warmup and dtype


def test_warmup_declared_transformers_floor_reads_a_float_as_a_ratio():
    """transformers reads warmup_steps=0.03 as 3% of the steps from 5.0 on; before, it is 0.03
    steps (no warmup at all), and from_pretrained(dtype=) is not known before 4.56."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    deps = tomllib.loads((FIXTURES.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [Requirement(d).specifier for d in deps if Requirement(d).name == "transformers"]
    assert [v for v in ("4.46.0", "4.56.0", "4.57.6") if Version(v) in spec] == []
    assert Version("5.0.0") in spec


@pytest.mark.slow
def test_warmup_is_the_papers_ratio_of_the_steps_in_the_built_trainer(tmp_path, base_dir):
    """The scheduler the trainer builds: 3% of 100 steps is 3 steps of linear warmup, then cosine."""
    from gasus.train import build_trainer

    model, tokenizer = load_model(base_dir)
    config = TrainConfig.from_preset("alpagasus-7b", batch_size=4, max_steps=100)
    trainer = build_trainer(load_examples(MINI), config, model, tokenizer, tmp_path / "out")
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    rates = []
    for _ in range(5):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert rates[:4] == pytest.approx([0.0, 2e-5 / 3, 4e-5 / 3, 2e-5])
    assert 0 < rates[4] < 2e-5


@pytest.mark.slow
def test_warmup_dtype_a_bf16_base_trains_in_fp32_weights(tmp_path, base_dir):
    """load_base asks for fp32 by the name the declared transformers floor knows (dtype=)."""
    import torch

    from gasus.train import BaseModel, load_base

    model, tokenizer = load_model(base_dir)
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    tokenizer.save_pretrained(tmp_path / "bf16")
    loaded, _, _ = load_base(BaseModel("bf16", "dir", str(tmp_path / "bf16")))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}


# ---------------------------------------------------------------- training runs


@pytest.mark.slow
def test_train_cli_steps_with_the_embedded_model_reload_and_generate(tmp_path, base_cache, monkeypatch, one_thread):
    import torch

    from gasus.train import detect_hardware

    # The default base is the embedded GGUF; its conversion is memoised in the cache dir.
    monkeypatch.setenv("GASUS_CACHE_DIR", str(base_cache))
    converted = next((base_cache / "models").iterdir())
    converted_mtime = (converted / "model.safetensors").stat().st_mtime_ns
    out = tmp_path / "run"
    result = run_cli("train", str(MINI), "-o", str(out), "--preset", "alpagasus-7b", "--batch-size", "4",
                     "--max-length", "128", "--max-steps", "2", "--summary-json", str(tmp_path / "summary.json"))
    assert result.exit_code == 0, result.output
    assert (converted / "model.safetensors").stat().st_mtime_ns == converted_mtime

    gpu_bf16 = detect_hardware()["bf16"]
    note = ("the alpagasus-7b preset trains in bf16, which needs a GPU with bf16 (found no GPU): "
            "training in fp32 instead")
    if not gpu_bf16:
        assert f"Note: {note}" in result.stderr
    assert result.stdout.startswith("trained 2 steps on 40 examples in ")
    assert result.stdout.rstrip().endswith(f"-> {out}")

    assert sorted(p.name for p in out.iterdir()) == [
        ".gasus-train", "chat_template.jinja", "config.json", "generation_config.json", "manifest.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["rows"] == 40
    assert manifest["data"]["sha256"] == hashlib.sha256(MINI.read_bytes()).hexdigest()
    assert manifest["data"]["source"] == str(MINI)
    assert manifest["settings"] == TrainConfig.from_preset("alpagasus-7b", batch_size=4, max_length=128,
                                                           max_steps=2).to_dict()
    assert manifest["run"]["per_device_batch_size"] * manifest["run"]["gradient_accumulation_steps"] == 4
    assert manifest["run"]["precision"] == ("bf16" if gpu_bf16 else "fp32")
    assert manifest["notes"] == ([] if gpu_bf16 else [note])
    assert manifest["base"]["kind"] == "gguf" and manifest["base"]["spec"] == "embedded"
    assert manifest["base"]["loaded_from"] == str(converted)
    assert manifest["base"]["sha256"] == converted.name.removeprefix("gguf-")
    assert manifest["libraries"]["transformers"] == importlib.metadata.version("transformers")
    assert manifest["libraries"]["trl"] == importlib.metadata.version("trl")
    run = manifest["train"]
    assert run["steps"] == 2 and [h["step"] for h in run["loss_history"]] == [1, 2]
    assert run["tokens"] > 0 and run["train_seconds"] > 0
    # both are rounded from the unrounded wall time: 0.01 tokens/s and 1 ms apart at most
    assert run["tokens_per_second"] == pytest.approx(run["tokens"] / run["train_seconds"], abs=0.01, rel=1e-3)
    assert run["wall_seconds"] >= run["train_seconds"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["items"], summary["steps"], summary["output"]) == (40, 2, str(out))

    # The checkpoint reloads with plain transformers, differs from the base, and generates.
    model, tokenizer = load_model(out)
    base, _ = load_model(converted)
    trained, original = model.state_dict(), base.state_dict()
    assert trained.keys() == original.keys()
    assert any(not torch.equal(trained[k], original[k]) for k in trained)
    prompt = tokenizer(alpaca_prompt("Name the largest planet in the solar system."), return_tensors="pt")
    n = prompt["input_ids"].shape[1]
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    again = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(generated[:, :n], prompt["input_ids"])
    assert n < generated.shape[1] <= n + 8
    assert torch.equal(generated, again)
    assert tokenizer.decode(generated[0, n:], skip_special_tokens=True).strip() != ""


@pytest.mark.slow
def test_train_says_what_it_does_before_its_first_step(tmp_path, base_dir, monkeypatch, one_thread):
    """Loading the libraries and the model and tokenizing take a while before step 1: the bar is there
    from the start and says which (it used to be silent until the first step)."""
    import re

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # stderr drawn as on a terminal
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "out"
    result = run_cli("train", str(MINI), "-o", str(out), "--base", str(base_dir), "--preset", "cpu-smoke",
                     "--max-steps", "1")
    assert result.exit_code == 0, result.output
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr).replace("\r", "\n")
    said = [m.group(1) for m in re.finditer(r"training +[\u2501\u2578\u257a ]+ \d+/\S+ (.+?) \.\.\. ", screen)]
    assert [s for i, s in enumerate(said) if i == 0 or said[i - 1] != s] == [
        "loading the training libraries", f"loading the base model {base_dir}", "tokenizing 40 examples",
        "starting the first step"]
    assert re.search(r"training +\u2501+ 1/1 loss \d\.\d{4} ", screen), screen
    assert "Warning" not in screen and "Note" not in screen, screen


def _saved_dtypes(out: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        return {f.get_slice(k).get_dtype() for k in f.keys()}


@pytest.mark.slow
def test_saved_models_keep_their_training_precision(tmp_path, base_dir, monkeypatch, one_thread):
    """A bf16 run (CPU autocast stands in for a bf16 GPU) saves bf16 weights, half the fp32 size,
    unless --save-dtype says otherwise; the manifest records which."""
    from gasus import train as training
    from gasus.train import trainer

    monkeypatch.setattr(trainer, "detect_hardware", lambda: {**NO_GPU, "bf16": True})
    examples = load_examples(MINI)[:4]
    result = training.train(examples, TrainConfig.from_preset("cpu-smoke", precision="bf16", max_steps=1),
                            tmp_path / "bf16", base=str(base_dir))
    out = result.output_dir
    assert _saved_dtypes(out) == {"BF16"} and _saved_dtypes(base_dir) == {"F32"}
    assert (result.manifest["run"]["precision"], result.manifest["run"]["saved_dtype"]) == ("bf16", "bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    ratio = (out / "model.safetensors").stat().st_size / (base_dir / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.51
    model, _ = load_model(out)  # still loads, and the forward pass runs
    assert model(**_prompt_ids(out)).logits.isfinite().all()

    kept = training.train(examples, TrainConfig.from_preset("cpu-smoke", precision="bf16", max_steps=1,
                                                            save_dtype="fp32"), tmp_path / "fp32", base=str(base_dir))
    assert kept.manifest["run"]["saved_dtype"] == "float32"
    assert _saved_dtypes(kept.output_dir) == {"F32"}


def _prompt_ids(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)(alpaca_prompt("Say hi."), return_tensors="pt")


@pytest.mark.slow
def test_overfits_four_examples(tmp_path, base_dir, one_thread):
    from gasus.train import train

    examples = load_examples(MINI)[:4]
    config = TrainConfig.from_preset("cpu-smoke", learning_rate=1e-4, lr_scheduler="constant", max_steps=3,
                                     epochs=10)
    result = train(examples, config, tmp_path / "out", base=str(base_dir))
    losses = result.losses
    assert len(losses) == 3
    assert losses[-1] <= losses[0] / 2, losses
    assert result.manifest["data"]["rows"] == 4 and result.manifest["data"]["sha256"] is None


@pytest.mark.slow
def test_lora_run_resumes_from_its_checkpoint(tmp_path, base_dir, one_thread):
    import torch

    from gasus.train import train

    examples = load_examples(MINI)[:8]
    out = tmp_path / "out"
    first = TrainConfig.from_preset("cpu-smoke", lora=True, learning_rate=1e-3, max_steps=1, save_steps=1,
                                    keep_checkpoints=True)
    train(examples, first, out, base=str(base_dir))
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-1"]
    with pytest.raises(BadInputError, match="already holds a finished run"):
        train(examples, first, out, base=str(base_dir))

    second = TrainConfig.from_preset("cpu-smoke", lora=True, learning_rate=1e-3, max_steps=2, save_steps=1)
    result = train(examples, second, out, base=str(base_dir), resume=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert manifest["run"]["resumed_from"] == "checkpoint-1"
    assert manifest["train"]["steps"] == 2
    assert [h["step"] for h in manifest["train"]["loss_history"]] == [1, 2]
    assert manifest["settings"]["lora"] is True
    assert not (out / "checkpoints").exists()

    # The adapters are merged: the directory is a plain model, and its weights moved.
    assert not (out / "adapter_config.json").exists()
    model, _ = load_model(out)
    base, _ = load_model(base_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[name], base.state_dict()[name])
    assert torch.equal(model.state_dict()["model.layers.0.input_layernorm.weight"],
                       base.state_dict()["model.layers.0.input_layernorm.weight"])


def test_interrupted_train_says_checkpoints_are_kept(tmp_path, monkeypatch, mini_alpaca):
    from gasus import train as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    result = run_cli("train", str(mini_alpaca), "-o", str(tmp_path / "m"), "--preset", "cpu-smoke")
    assert result.exit_code == 130
    assert result.output.splitlines()[-1] == (
        f"Interrupted: the checkpoints written so far are in {tmp_path / 'm' / 'checkpoints'}; "
        "rerun with --resume to continue from the last one.")
