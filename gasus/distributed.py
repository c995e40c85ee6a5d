"""Which process of a multi-process launch this is, read from the launcher's environment.

`torchrun` and `accelerate launch` (GPUs) set RANK and WORLD_SIZE in every process they start;
MPI launchers set their own names. Reading them needs no torch, so the CLI can ask before
anything heavy is imported, for instance to print an error that every rank raises only once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_RANK = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
_WORLD_SIZE = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return default
    return default


def world_size() -> int:
    """Processes in this run: WORLD_SIZE as set by torchrun / `accelerate launch`, else 1."""
    return max(1, _env_int(_WORLD_SIZE, 1))


def process_rank() -> int:
    """This process's global rank: 0 in a run of one process."""
    return max(0, _env_int(_RANK, 0)) if world_size() > 1 else 0


def is_main_process() -> bool:
    """True in rank 0, the one process that writes shared outputs and prints for the run."""
    return process_rank() == 0


def lone_accelerate_cpu_process() -> bool:
    """True when `accelerate launch --cpu --num_processes N` (N > 1) ran this as its only process:
    accelerate starts several CPU processes only through MPI, and without it runs the command
    once, with MASTER_ADDR set (as for several processes) but no rank."""
    return (world_size() == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
            and "MASTER_ADDR" in os.environ)


def _state():
    import torch
    from accelerate import PartialState

    # The Trainer builds its state as PartialState(cpu=not CUDA): the same here, whichever comes first.
    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in a run of one process)."""
    if world_size() > 1:
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first, the others after it finished (all at once in a run of one process)."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def backend() -> str | None:
    """The torch.distributed backend of a multi-process run (gloo on CPUs, nccl on GPUs), else None."""
    if world_size() == 1:
        return None
    return _state().backend
