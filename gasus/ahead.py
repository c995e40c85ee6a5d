"""Reading one input in a second process while this one reads another.

A select at a million rows reads two files that do not depend on each other: the dataset (into
examples, each hashed to its id) and the scores (into an index of id -> score). Each takes a few
seconds of pure Python, so on two cores the scores are read in a forked child while the parent
reads the dataset, and the child's result comes back pickled through a pipe (an index of a
million scores: 73 MB, about half a second to load).

The child is forked, so it starts with what the parent has already imported and costs
milliseconds; elsewhere than Linux, where only one CPU is usable, or where the input is small,
the work runs in this process when its result is asked for, with the same result and errors.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import GasusError

T = TypeVar("T")
MIN_BYTES = 16 * 2**20  # an input smaller than this is read in this process: a child would save nothing


def can_fork() -> bool:
    """Whether a forked child can read ahead: on Linux (macOS's system libraries are not fork-safe),
    while this process runs one thread (a lock another thread holds would stay held in the child),
    with a second CPU this process may use."""
    return sys.platform.startswith("linux") and _one_thread() and len(os.sched_getaffinity(0)) > 1


def _one_thread() -> bool:
    return threading.active_count() == 1


class Ahead(Generic[T]):
    """`func(*args)`, started now in a forked child when `size` reaches `min_bytes` and a second CPU
    is free, else run in this process by `result()`. Use it as a context manager: leaving the block
    stops a child whose result was never asked for (an error in the parent's own reading)."""

    def __init__(self, func: Callable[..., T], *args: Any, size: int, min_bytes: int | None = None):
        self.func, self.args = func, args
        self.process = self.receive = None
        if size >= (MIN_BYTES if min_bytes is None else min_bytes) and can_fork():
            context = multiprocessing.get_context("fork")
            self.receive, send = context.Pipe(duplex=False)
            self.process = context.Process(target=_child, args=(self.receive, send, os.getpid(), func, args),
                                           daemon=True)
            self.process.start()
            send.close()  # the child holds the only write end: if it dies, recv() ends with EOFError

    @classmethod
    def reading(cls, func: Callable[..., T], path: str | Path, *args: Any, min_bytes: int | None = None) -> Ahead[T]:
        """func(path, *args), ahead when the file at `path` is large (a missing file: in this process,
        which then raises func's own error)."""
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        return cls(func, path, *args, size=size, min_bytes=min_bytes)

    @property
    def forked(self) -> bool:
        return self.process is not None

    def result(self) -> T:
        """The result, waiting for the child if there is one; raises what func raised."""
        if self.process is None:
            return self.func(*self.args)
        try:
            ok, value = self.receive.recv()
        except EOFError:
            self.process.join()
            raise GasusError(f"the process reading {self.args[0]} stopped without a result "
                             f"(exit code {self.process.exitcode})") from None
        finally:
            self.receive.close()
        self.process.join()
        self.process = None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.join()
            self.receive.close()
            self.process = None

    def __enter__(self) -> Ahead[T]:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with(parent: int) -> None:
    """Have Linux kill this process when its parent dies (a parent killed by a signal runs no cleanup
    that would stop it), and exit now if the parent died before that was asked."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the closed read end below still ends a write with EPIPE
        pass
    if os.getppid() != parent:  # orphaned already: adopted by init or a subreaper
        os._exit(1)


def _child(receive: Any, send: Any, parent: int, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # The read end came with the fork: held here too, a dead parent would leave the child's write of its
    # result waiting forever on a pipe with a reader; closed, the write fails (EPIPE) instead.
    receive.close()
    _die_with(parent)
    # Ctrl-C reaches the whole process group: the parent stops this child, which says nothing itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        payload: tuple[bool, Any] = (True, func(*args))
    except Exception as exc:  # sent back and raised in the parent, as if it had run there
        payload = (False, exc)
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an exception that does not survive pickling: its message, as a GasusError
            payload = (False, GasusError(str(exc)) if isinstance(exc, GasusError) else
                       RuntimeError(f"{type(exc).__name__}: {exc}"))
    try:
        send.send(payload)
    except BrokenPipeError:  # the parent stopped waiting (it failed first)
        pass
    finally:
        send.close()
