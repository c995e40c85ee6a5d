"""gasus cache: inspect, move and empty the cache of model calls."""

from __future__ import annotations

import click

from ..wording import counted
from .common import GasusGroup, check_paths, console, max_expansion_option, summary_option


def _open(**kwargs):
    from ..cache import Cache

    return Cache(**kwargs)


def _list(out, keys, limit: int = 20) -> None:
    for key in keys[:limit]:
        out.print(f"  {key}", soft_wrap=True)
    if len(keys) > limit:
        out.print(f"  ... and {len(keys) - limit} more (all in --summary-json)")


@click.group(cls=GasusGroup)
def cache():
    """Manage the cache of model calls ($GASUS_CACHE_DIR, else ~/.cache/gasus).

    \b
    Example:
      gasus cache stats
      gasus cache export work.jsonl && gasus cache import work.jsonl
    """


@cache.command()
@summary_option
def stats(summary):
    """Show where the cache is, how many entries it holds and their size.

    \b
    Example:
      gasus cache stats
    """
    check_paths(summary)
    info = _open().stats()
    summary.items = info["entries"]
    summary.extra.update(info)
    out = console()
    out.print(f"cache: {info['directory']}")
    out.print(f"entries: {info['entries']}  ({info['bytes'] / 1e6:.1f} MB)")
    for backend, n in info["by_backend"].items():
        out.print(f"  {backend}: {n}")
    if info["broken"]:
        out.print(f"broken: {info['broken']} (stored as pickles, never loaded; `gasus cache migrate` "
                  "converts or drops them)", soft_wrap=True)


@cache.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@summary_option
def export_(file, summary):
    """Write every cache entry to FILE as JSON Lines, to merge into another machine's cache.

    \b
    Example:
      gasus cache export grades.jsonl
    """
    check_paths(summary, outputs={"FILE": file})
    store = _open()
    summary.items = n = store.export(file)
    broken = f" ({counted(len(store.broken), 'broken entry', 'broken entries')} left out)" if store.broken else ""
    console().print(f"exported {counted(n, 'entry', 'entries')} -> {file}{broken}", soft_wrap=True)


@cache.command()
@summary_option
def verify(summary):
    """Read every cache entry and report the broken ones; changes nothing.

    Checks the database's integrity, then that each entry reads as JSON, that a value kept in a
    file of its own still exists, and that each model call's entry has the shape gasus writes.
    Exit code 1 when something is broken (`gasus cache migrate` drops entries gasus cannot read).

    \b
    Example:
      gasus cache verify
    """
    check_paths(summary)
    report = _open().verify()
    summary.items = report.checked
    summary.extra["broken"] = [{"key": key, "problem": problem} for key, problem in report.broken]
    out = console()
    if not report.broken:
        out.print(f"checked {counted(report.checked, 'entry', 'entries')}: all readable")
        return
    out.print(f"checked {counted(report.checked, 'entry', 'entries')}: {len(report.broken)} broken")
    _list(out, [f"{key}: {problem}" for key, problem in report.broken])
    if summary.path:
        summary.write(summary.path)  # the exit below skips the usual write
    click.get_current_context().exit(1)


@cache.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True,
              help="Replace an entry this cache holds with a different value (by default it is kept and listed).")
@max_expansion_option
@summary_option
def import_(file, overwrite, summary):
    """Merge the entries of FILE (written by `gasus cache export`) into this cache.

    Every line is checked before anything is written; internal memos and malformed entries
    are refused. An imported entry is trusted for what a model said: import only files
    from people you trust.

    \b
    Example:
      gasus cache import grades.jsonl
    """
    check_paths(summary, inputs={"FILE": file})
    report = _open().import_(file, overwrite=overwrite)
    summary.items = report.read
    summary.extra.update(added=report.added, unchanged=report.unchanged, replaced=report.replaced,
                         conflicts=report.conflicts)
    out = console()
    line = f"read {counted(report.read, 'entry', 'entries')} from {file}: {report.added} new, {report.unchanged} already present"
    if report.replaced:
        line += f", {report.replaced} replaced"
    if report.conflicts:
        out.print(line + f", {len(report.conflicts)} conflict(s) kept as they were (--overwrite replaces them):",
                  soft_wrap=True)
        _list(out, report.conflicts)
    else:
        out.print(line, soft_wrap=True)


@cache.command()
@summary_option
def migrate(summary):
    """Convert a cache written by an older gasus (values pickled) to JSON values, once.

    Old values are read by an unpickler that can build plain data only, never code; entries
    that are not gasus entries are dropped and listed, memos of file hashes are recomputed on use.

    \b
    Example:
      gasus cache migrate
    """
    check_paths(summary)
    report = _open(migrating=True).migrate()
    summary.items = report.converted
    summary.extra.update(memos=report.memos, broken=report.broken)
    out = console()
    line = f"converted {counted(report.converted, 'entry', 'entries')} to JSON"
    if report.memos:
        line += f"; dropped {report.memos} memo(s) of file hashes or chat templates (recomputed on use)"
    if report.broken:
        out.print(line + f"; dropped {len(report.broken)} broken entry(ies):", soft_wrap=True)
        _list(out, report.broken)
    else:
        out.print(line, soft_wrap=True)


@cache.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@summary_option
def clear(yes, summary):
    """Delete every entry of the cache.

    \b
    Example:
      gasus cache clear --yes
    """
    check_paths(summary)
    store = _open(migrating=True)  # an old cache may be emptied without converting it first
    if not yes:
        click.confirm(f"Delete all {counted(len(store), 'entry', 'entries')} of {store.directory}?", abort=True)
    summary.items = n = store.clear()
    console().print(f"cleared {counted(n, 'entry', 'entries')}")
