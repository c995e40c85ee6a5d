"""What every command shares: the error boundary, --summary-json, dataset options, consoles."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
import warnings
from collections.abc import Callable
from typing import Any

import click

from ..distributed import is_main_process
from ..errors import GasusError, GasusWarning, OutputConflictError, OutputPathError

INTERRUPTED = "gasus.interrupted"  # ctx.meta key: the message Ctrl-C prints
MAX_EXPANSION = "gasus.max_expansion"  # ctx.meta key: the command's --max-expansion


def console(stderr: bool = False):
    """A rich console that shows every string as it is: data, file names and model output may hold
    brackets or :colons: that rich would read as markup or emoji. Styles come as Text or table styles."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, emoji=False)


class GasusCommand(click.Command):
    """A command whose GasusErrors become one line on stderr and exit code 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        problem = _nul_argument(self, args)
        if problem is not None:
            if is_main_process():
                click.echo(f"Error: {problem}", err=True)
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # Under torchrun every rank runs the command and meets the same bad input: rank 0 says so.
        say = is_main_process()
        try:
            with _warnings_as_lines(say):
                # What the options set for the library (--max-expansion) lasts as long as this command.
                return contextvars.copy_context().run(self._invoke_with_limits, ctx)
        except GasusError as exc:
            if say:
                click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except ValueError as exc:  # configs check themselves in __post_init__ with ValueError
            if type(exc) is not ValueError:
                raise
            if say:
                click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            # A command that keeps more than cached calls (a run dir, checkpoints) says so in ctx.meta.
            if say:
                click.echo(ctx.meta.get(INTERRUPTED, "Interrupted: everything finished so far is in the cache; "
                                                     "rerun to continue."), err=True)
            ctx.exit(130)

    def _invoke_with_limits(self, ctx: click.Context) -> Any:
        if MAX_EXPANSION in ctx.meta:
            from ..io import set_max_expansion

            set_max_expansion(ctx.meta[MAX_EXPANSION])
        return super().invoke(ctx)


def _nul_argument(command: click.Command, args: list[str]) -> str | None:
    """Which argument holds a NUL byte, as "LABEL: 'value'", or None. A NUL names no file: click's own
    path checks would fail on it with a traceback, so the raw arguments are looked at first."""
    options = {name: p for p in command.params if isinstance(p, click.Option) for name in p.opts + p.secondary_opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    positional, i, rest = 0, 0, False
    while i < len(args):
        arg, label, value = args[i], None, args[i]
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
        if not rest and arg == "--":
            rest = True
        elif not rest and arg.startswith("-") and name in options:
            option = options[name]
            label = "/".join(option.opts)
            if arg != name:  # --opt=value, -ovalue
                value = arg[len(name) + (1 if arg.startswith("--") else 0):]
            elif not (option.is_flag or option.count):
                i += 1
                value = args[i] if i < len(args) else ""
        else:
            param = arguments[min(positional, len(arguments) - 1)] if arguments else None
            label = param.human_readable_name if param is not None else "an argument"
            positional += 1
        if "\0" in value or "\0" in arg:
            return f"{label}: {value!r} holds a NUL byte, which no file or name can hold"
        i += 1
    return None


def _keep_max_expansion(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < 0:
        raise click.BadParameter(f"must be at least 0, got {value}")
    ctx.meta[MAX_EXPANSION] = value
    return value


def max_expansion_option(func: Callable) -> Callable:
    """--max-expansion, the guard on compressed inputs; it reaches the library through the command's
    context (io.max_expansion()), not as an argument of the command."""
    return click.option(
        "--max-expansion", type=int, default=200, show_default=True, expose_value=False, callback=_keep_max_expansion,
        help="Refuse a compressed input (.gz, .bz2, .xz, .zst) that decompresses to more than this many times "
             "its size, checked as it is read (0: no limit).")(func)


@contextlib.contextmanager
def _warnings_as_lines(say: bool):
    """Each distinct GasusWarning the library raises becomes one `Warning: ...` line on stderr."""
    shown: set[str] = set()
    previous = warnings.showwarning

    def show(message, category, *args, **kwargs):
        if not issubclass(category, GasusWarning):
            return previous(message, category, *args, **kwargs)
        if say and str(message) not in shown:
            shown.add(str(message))
            click.echo(f"Warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", GasusWarning)  # a later run in one process is told again
        warnings.showwarning = show
        yield


class GasusGroup(click.Group):
    command_class = GasusCommand
    group_class = type


def summary_option(func: Callable) -> Callable:
    """Adds --summary-json PATH and a `summary` recorder passed to the command."""

    @click.option("--summary-json", "summary_json", type=click.Path(dir_okay=False),
                  help="Write {command, items, model_calls, cache_hits, failures, seconds} here as JSON.")
    @functools.wraps(func)
    def wrapper(*args, summary_json: str | None = None, **kwargs):
        summary = Summary(_command_name(click.get_current_context()), summary_json)
        # Every command's summary is checked (not inside the cache, writable) before it does anything,
        # so one that forgets to call check_paths still cannot write it over the cache; a command
        # with inputs and outputs checks them all again, the summary among them.
        check_paths(summary)
        try:
            result = func(*args, summary=summary, **kwargs)
        except GasusError as exc:
            # A run that failed part-way still accounts for what it did (and says why it stopped);
            # one whose outputs clash with its inputs or cannot be written writes nothing at all.
            if summary_json and is_main_process() and not isinstance(exc, (OutputConflictError, OutputPathError)):
                summary.extra["error"] = str(exc)
                summary.write(summary_json)
            raise
        if summary_json and is_main_process():  # one file for the run, not one write per rank
            summary.write(summary_json)
        return result

    return wrapper


def _command_name(ctx: click.Context) -> str:
    """'cache export' for `gasus cache export`, however the program itself was invoked."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


class Summary:
    """The machine-readable account of one command run (DESIGN.md keys, plus command-specific extras)."""

    def __init__(self, command: str, path: str | None = None):
        self.command = command
        self.path = path
        self.started = time.perf_counter()
        self.items = 0
        self.model_calls = 0
        self.cache_hits = 0
        self.failures = 0
        self.extra: dict[str, Any] = {}

    def add_stats(self, stats: Any) -> None:
        self.model_calls += stats.model_calls
        self.cache_hits += stats.cache_hits
        self.failures += stats.failures
        for name in ("retries", "errors", "served"):  # by kind: {"http_429": 3, "timeout": 1}
            counts = self.extra.setdefault(name, {})
            for kind, n in getattr(stats, name, {}).items():
                counts[kind] = counts.get(kind, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "items": self.items, "model_calls": self.model_calls,
                "cache_hits": self.cache_hits, "failures": self.failures,
                "seconds": round(time.perf_counter() - self.started, 3), **self.extra}

    def write(self, path: str) -> None:
        from ..io import write_json

        write_json(path, self.to_dict())


def check_paths(summary: Summary, *, inputs: dict[str, Any] | None = None,
                outputs: dict[str, Any] | None = None, makes_dirs: bool = True) -> None:
    """Refuse outputs (with --summary-json among them) that are an input, each other, or inside the cache,
    or that cannot be written. Once all of them pass, their missing parent directories are made when
    the output is written (`makes_dirs`), so a refused command, or one that stops before writing,
    leaves no new directory behind."""
    from ..cache import default_cache_dir
    from ..io import check_outputs, make_dirs_for

    outputs = {**(outputs or {}), "--summary-json": summary.path}
    check_outputs(outputs, inputs, protected_dir=default_cache_dir())
    for label, path in outputs.items():
        if path is not None:
            check_output_dir(path, label, makes_dirs=makes_dirs)
    if makes_dirs:
        make_dirs_for(path for path in outputs.values() if path is not None)


def check_output_dir(path: str, label: str, makes_dirs: bool = False) -> None:
    """Refuse, before any model call, an output file whose directory is missing (unless the command
    makes it), a file, or read-only: the run would otherwise pay for every call and then fail to write."""
    import os
    from pathlib import Path

    parent = Path(path).parent
    if not parent.exists():
        if not makes_dirs:
            raise OutputPathError(f"{path}: {label}: the directory {parent} does not exist")
        parent = next(p for p in parent.parents if p.exists())
    if not parent.is_dir():
        raise OutputPathError(f"{path}: {label}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: {label}: the directory {parent} is not writable")


def dataset_options(func: Callable) -> Callable:
    """Options that map a dataset's columns to instruction / input / output."""
    options = [
        click.option("--format", "fmt", type=click.Choice(["alpaca", "dolly"]), default="alpaca", show_default=True,
                     help="Field layout: alpaca (instruction/input/output) or dolly (instruction/context/response)."),
        click.option("--instruction-field", help="Field holding the instruction."),
        click.option("--input-field", help="Field holding the optional input."),
        click.option("--output-field", help="Field holding the response."),
        click.option("--split", default="train", show_default=True, help="Split of a Hugging Face hub dataset."),
        click.option("--max-rows", type=int, default=1_000_000, show_default=True,
                     help="Refuse a dataset with more rows than this (0: no limit); Parquet is checked before "
                          "any row is read."),
        max_expansion_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def load_dataset_arg(source: str, fmt: str, instruction_field: str | None, input_field: str | None,
                     output_field: str | None, split: str, max_rows: int):
    from ..io import FieldMap, load_examples

    fields = FieldMap.for_format(fmt, instruction=instruction_field, input=input_field, output=output_field)
    return load_examples(source, fields=fields, split=split, max_rows=max_rows)


_MODEL_OPTIONS = [
    click.option("--base-url", help="OpenAI-compatible server URL (openai: models).  [default: the OpenAI API]"),
    click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                 help="Environment variable holding the API key (openai: models); the key is never stored."),
    click.option("--concurrency", type=int, default=4, show_default=True,
                 help="Requests in flight at once (openai: models)."),
    click.option("--timeout", type=float, default=120.0, show_default=True,
                 help="Seconds before a request is abandoned and retried (openai: models)."),
    click.option("--max-attempts", type=int, default=6, show_default=True,
                 help="Tries per request, with exponential backoff, before it is an error (openai: models)."),
    click.option("--batch-size", type=int, default=8, show_default=True,
                 help="Prompts per forward batch (hf: models)."),
    click.option("--n-ctx", type=int, default=4096, show_default=True,
                 help="Context length of a GGUF model (llamacpp: models)."),
    click.option("--threads", type=int, default=None,
                 help="CPU threads of a GGUF model (llamacpp: models).  [default: all cores]"),
    click.option("--offline", is_flag=True,
                 help="Answer only from the cache; a request it does not hold is an error."),
    click.option("--require-snapshot", metavar="NAME",
                 help="Take only replies the server says NAME served (its model, e.g. a dated snapshot, its "
                      "system_fingerprint, or MODEL|FINGERPRINT); others are errors and are not cached, and cached "
                      "ones are asked again (openai: models)."),
]
_MODEL_OPTION_NAMES = ("base_url", "api_key_env", "concurrency", "timeout", "max_attempts", "batch_size",
                       "n_ctx", "threads", "offline", "require_snapshot")


def model_options(func: Callable) -> Callable:
    """The options that reach a model's backend, passed to the command as one `model_opts` dict."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        model_opts = {name: kwargs.pop(name) for name in _MODEL_OPTION_NAMES}
        return func(*args, model_opts=model_opts, **kwargs)

    for option in reversed(_MODEL_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def open_model(spec: str | None, model_opts: dict[str, Any]):
    """The CachedModel a spec names, with the backend options given on the command line."""
    from ..backends import BackendOptions, CachedModel, load_backend
    from ..cache import Cache
    from ..errors import BadInputError

    opts = dict(model_opts)
    if opts["threads"] is not None and opts["threads"] < 1:
        raise BadInputError("--threads must be at least 1")
    offline = opts.pop("offline")
    opts["n_threads"] = opts.pop("threads")
    return CachedModel(load_backend(spec, BackendOptions(**opts)), Cache(), offline=offline)


def progress_callback(total: int, description: str):
    """A rich progress bar on stderr and the on_result callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = console(stderr=True)
    # markup=False: a description may hold a server's words (a batch's id and state)
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
    task = progress.add_task(description, total=total)

    def on_result(i, result):
        progress.advance(task)

    return progress, on_result


@contextlib.contextmanager
def library_deprecations_hidden():
    """Hide the FutureWarnings torch, transformers and trl raise about their own APIs: they speak to
    gasus's developers (the tests see them), not to someone training a model, and would break into
    the progress display."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def working_bar(err, *, label_style: str = "", disable: bool = False):
    """A transient bar for long work whose count may be unknown at first: a spinner, the task's
    description, the bar, N/M, the task's `note` field (what it is doing), elapsed time and an ETA.
    Shared by `gasus train` and `gasus run`'s stages."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    # markup=False: a description or a note may quote a file name
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}", markup=False, style=label_style), BarColumn(),
        MofNCompleteColumn(), TextColumn("{task.fields[note]}", markup=False), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True, disable=disable)


class StageBars:
    """`gasus run`'s progress on stderr: a bar for each working stage, named as the stage lines name it
    ("grade", "train filtered", "generate baseline"), with its count, what it is doing, and an ETA;
    a stage's bar goes when the stage ends. Like the single commands' bars, drawn only on a terminal."""

    def __init__(self, err):
        self.progress = working_bar(err, label_style="bold", disable=not err.is_terminal)
        self.tasks: dict[str, Any] = {}
        self.shown: dict[str, tuple[int | None, str]] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, event) -> None:
        """Takes a pipeline StageProgress."""
        if self.progress.disable:  # nothing to draw, per grade of a million
            return
        task = self.tasks.get(event.stage)
        # A new stage, or a step before its count starts (loading, converting), is drawn at once: it may
        # be over before the next tick. Counts wait for the tick: a refresh per grade would cost more.
        shown = (event.total, event.note)
        before = self.shown.get(event.stage)
        self.shown[event.stage] = shown
        if task is None:
            self.tasks[event.stage] = self.progress.add_task(event.stage, total=event.total, completed=event.done,
                                                             note=event.note)
            self.progress.refresh()
        else:
            self.progress.update(task, total=event.total, completed=event.done, note=event.note,
                                 refresh=shown != before and (event.total is None or event.total != before[0]))

    def finish(self, stage: str) -> None:
        task = self.tasks.pop(stage, None)
        self.shown.pop(stage, None)
        if task is not None:
            self.progress.refresh()  # its last count, which the tick may not have drawn yet
            self.progress.remove_task(task)
            self.progress.refresh()  # the stage's line printed next must not come with its old bar


def thinking_options(func: Callable) -> Callable:
    """--thinking and --max-new-tokens-cap, for commands whose model may be a reasoning model."""
    from ..thinking import DEFAULT_TOKEN_CAP, THINKING_CHOICES

    options = [
        click.option("--thinking", type=click.Choice(THINKING_CHOICES), default="auto", show_default=True,
                     help="Whether a reasoning model thinks before it answers: auto (whatever the model does), on, "
                          "or off (asks the server, or renders a local chat template, not to think)."),
        click.option("--max-new-tokens-cap", "max_tokens_cap", type=int, default=DEFAULT_TOKEN_CAP, show_default=True,
                     help="A reply cut off inside its thinking is asked again with twice the tokens, up to this "
                          "many; one still cut off here is 'truncated'."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
