"""gasus train over several processes: two CPU ranks through torchrun (gloo) keep the global
batch and the loss of one process, rank 0 alone writes the output; the shipped FSDP config
as the README launches it; errors that every rank raises are printed once."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gasus.io import load_examples
from gasus.train import TrainConfig, fsdp_config_path
from tests.conftest import FIXTURES, run_cli

ROOT = Path(__file__).resolve().parent.parent
MINI = FIXTURES / "mini_alpaca.json"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]  # torchrun, this interpreter's

# Run by each rank: records every write, rename and removal under the watched directory
# (Python's audit hooks see them all) in LOG.rankN, then runs the gasus CLI.
AUDIT = """
import json, os, sys

watch, log = os.path.abspath(sys.argv[1]), open(f"{sys.argv[2]}.rank{os.environ['RANK']}", "w")
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITES)
        path = path if writes else None
    elif event == "os.rename":
        path = args[1]
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        path = args[0]
    else:
        return
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(path))
        if path == watch or path.startswith(watch + os.sep):
            log.write(json.dumps([event, os.path.relpath(path, watch)]) + "\\n")
            log.flush()


sys.addaudithook(hook)
from gasus.cli import main

main(sys.argv[3:], prog_name="gasus")
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"  # one torch thread per rank: CI shares two cores
    env.update(extra)
    return env


def _audit(log: Path, rank: int) -> list[tuple[str, str]]:
    return [tuple(json.loads(line)) for line in Path(f"{log}.rank{rank}").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_keep_the_global_batch_and_the_loss_and_rank_0_writes_once(tmp_path, base_dir, one_thread):
    from gasus.train import train

    data = tmp_path / "four.json"
    data.write_text(json.dumps(json.loads(MINI.read_text())[:4]))
    settings = {"batch_size": 2, "micro_batch_size": 1, "max_length": 64, "max_steps": 2}
    one = train(load_examples(data), TrainConfig.from_preset("cpu-smoke", **settings), tmp_path / "one",
                base=str(base_dir))

    out, log, script = tmp_path / "two", tmp_path / "audit", tmp_path / "audit.py"
    script.write_text(AUDIT)
    command = [*TORCHRUN, "--nproc_per_node", "2", str(script), str(out), str(log),
               "train", str(data), "-o", str(out), "--base", str(base_dir), "--preset", "cpu-smoke",
               "--batch-size", "2", "--per-device-batch-size", "1", "--max-length", "64", "--max-steps", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr

    # Both ranks started, on gloo, each with half of the global batch.
    said = [line for line in done.stderr.splitlines() if line.startswith("rank ")]
    assert sorted(said) == [
        f"rank {r} of 2 (gloo, cpu): per-device batch 1 x accumulation 1 x 2 processes = global batch 2"
        for r in (0, 1)]
    assert done.stdout.count("trained 2 steps on 4 examples in ") == 1  # rank 0 reports

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["world_size"] == 2 and manifest["run"]["distributed_backend"] == "gloo"
    assert (manifest["run"]["per_device_batch_size"], manifest["run"]["gradient_accumulation_steps"]) == (1, 1)
    assert (one.manifest["run"]["per_device_batch_size"], one.manifest["run"]["gradient_accumulation_steps"]) == (1, 2)
    assert manifest["run"]["global_batch_size"] == one.manifest["run"]["global_batch_size"] == 2
    assert manifest["train"]["tokens"] == one.manifest["train"]["tokens"]  # both ranks' tokens counted
    # The same examples in each step, so the same losses up to float summation order.
    assert [h["step"] for h in manifest["train"]["loss_history"]] == [1, 2]
    assert [h["loss"] for h in manifest["train"]["loss_history"]] == pytest.approx(one.losses, rel=1e-3)

    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in one.output_dir.iterdir())
    # Rank 0 claims the directory and writes the manifest, each once and through a rename;
    # rank 1 only makes the checkpoint's directory, for the Trainer to save its RNG state there
    # (torch.save writes past the audit hook), and rank 0 removes the checkpoints after both are done.
    rank0, rank1 = _audit(log, 0), _audit(log, 1)
    assert [e for e in rank0 if e[1] in (".gasus-train", "manifest.json")] == [
        ("os.rename", ".gasus-train"), ("os.rename", "manifest.json")]
    assert [e for e in rank0 if e[0] == "open" and e[1] in (".gasus-train", "manifest.json")] == []
    assert set(rank1) == {("os.mkdir", "checkpoints/checkpoint-2")}
    assert ("shutil.rmtree", "checkpoints") in rank0


@pytest.mark.slow
def test_two_processes_an_error_every_rank_raises_is_printed_once(tmp_path):
    command = [*TORCHRUN, "--nproc_per_node", "2", "-m", "gasus", "train", str(MINI), "-o", str(tmp_path / "out"),
               "--batch-size", "3", "--precision", "fp32"]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode != 0
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: the global batch size 3 does not divide by 2 processes: "
                      "use a multiple of 2 for --batch-size"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "3"], "the global batch size 3 does not divide by 2 processes: use a multiple of 2 for --batch-size"),
    (["--batch-size", "6", "--per-device-batch-size", "2"],
     "the global batch size 6 does not divide by 2 processes x per-device batch size 2 = 4: "
     "use a multiple of 4 for --batch-size"),
    pytest.param(["--preset", "alpagasus-7b", "--no-fp32-fallback"],
                 "the alpagasus-7b preset trains in bf16, which needs a GPU with bf16 (found no GPU); "
                 "train on a GPU that has it, or use --precision fp32",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")),
])
def test_errors_every_rank_raises_print_once_with_exit_code_2_in_each(tmp_path, monkeypatch, args, message):
    """Each rank of `torchrun --nproc_per_node 2` runs these checks before the ranks meet: rank 0
    prints the one line, rank 1 stays silent, both exit with 2 and leave nothing behind."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", rank)
        result = run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--summary-json",
                         str(tmp_path / "summary.json"), *args)
        assert result.exit_code == 2, result.output
        assert result.stderr == ("" if rank == "1" else f"Error: {message}\n")
        assert result.stdout == ""
    assert not (tmp_path / "out").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["error"] == message


def test_accelerate_parses_the_readme_fsdp_launch_as_full_shard_of_llama_layers_in_bf16():
    """The README's `accelerate launch` line, run through accelerate's own parser and the shipped
    config, sets what an FSDP run on GPUs relies on, and the gasus command in it parses."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env
    from transformers.models.llama import modeling_llama

    from gasus.cli import main

    lines = _readme_commands("accelerate launch")
    assert len(lines) == 1
    argv = shlex.split(lines[0].replace('"$(gasus train --show-fsdp-config)"', shlex.quote(str(fsdp_config_path()))))
    assert argv[:2] == ["accelerate", "launch"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv[2:]))
    assert (args.use_fsdp, args.num_processes, args.module, args.training_script) == (True, 4, True, "gasus")
    env = prepare_multi_gpu_env(args)
    assert {k: env[k] for k in ("ACCELERATE_USE_FSDP", "ACCELERATE_MIXED_PRECISION", "FSDP_SHARDING_STRATEGY",
                                "FSDP_AUTO_WRAP_POLICY", "FSDP_TRANSFORMER_CLS_TO_WRAP", "FSDP_STATE_DICT_TYPE")} == {
        "ACCELERATE_USE_FSDP": "true", "ACCELERATE_MIXED_PRECISION": "bf16", "FSDP_SHARDING_STRATEGY": "FULL_SHARD",
        "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP", "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer",
        "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT"}
    # The class to wrap is the decoder layer of LLaMA (and of the embedded SmolLM2, a Llama model).
    assert "LlamaDecoderLayer" in modeling_llama.LlamaForCausalLM._no_split_modules
    assert args.training_script_args[0] == "train"
    main.make_context("gasus", list(args.training_script_args))  # every option it names exists


def test_readme_runs_two_cpu_processes_with_torchrun_as_the_test_does():
    """accelerate starts several CPU processes only through MPI (`--cpu --num_processes 2` runs one);
    the README shows torchrun, the launcher the two-process test uses."""
    lines = _readme_commands("torchrun")
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:4] == ["torchrun", "--standalone", "--nproc_per_node", "2"]
    assert argv[4:7] == ["-m", "gasus", "train"]
    from gasus.cli import main

    main.make_context("gasus", argv[6:])


def _readme_commands(start: str) -> list[str]:
    """The shell commands in README.md's code blocks that start with `start`, continuation lines joined."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip().startswith(start + " ")]


@pytest.fixture
def stop_before_loading(monkeypatch):
    """train() stops with an error where it would load the model: the notes before it are out."""
    from gasus.errors import BadInputError
    from gasus.train import trainer

    def stop(base, **_):
        raise BadInputError("stopped before loading")

    monkeypatch.setattr(trainer, "load_base", stop)


def test_accelerate_cpu_launch_that_started_one_process_says_so(tmp_path, monkeypatch, stop_before_loading):
    """`accelerate launch --cpu --num_processes 2` runs the command once, with no rank in its
    environment (accelerate starts CPU processes only through MPI): gasus says so instead of
    training as one process without a word."""
    for name, value in (("ACCELERATE_USE_CPU", "True"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    result = run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--preset", "cpu-smoke")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Note: accelerate launch started one CPU process: it starts several only through MPI; "
        "for N processes on CPUs use torchrun --standalone --nproc_per_node N -m gasus train ...",
        "Error: stopped before loading"]
    monkeypatch.delenv("MASTER_ADDR")  # a plain `accelerate launch --cpu`: one process, as asked
    result = run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--preset", "cpu-smoke")
    assert result.stderr.splitlines() == ["Error: stopped before loading"]


def test_fp32_fallback_note_of_a_bf16_preset_is_printed_once_by_rank_0(tmp_path, monkeypatch, stop_before_loading):
    from gasus.train import trainer

    monkeypatch.setattr(trainer, "detect_hardware", lambda: {"device": "cpu", "name": "x86_64", "count": 2,
                                                              "bf16": False, "tf32": False})
    monkeypatch.setenv("WORLD_SIZE", "2")
    said = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        result = run_cli("train", str(MINI), "-o", str(tmp_path / "out"), "--preset", "alpagasus-7b")
        assert result.exit_code == 2
        said[rank] = result.stderr.splitlines()
    assert said == {"0": ["Note: the alpagasus-7b preset trains in bf16, which needs a GPU with bf16 (found no GPU): "
                          "training in fp32 instead", "Error: stopped before loading"], "1": []}
