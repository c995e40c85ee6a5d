"""gasus cache: inspect, move and empty the cache of model calls."""

from __future__ import annotations

import click

from .common import GasusGroup, check_paths, console, summary_option


def _open():
    from ..cache import Cache

    return Cache()


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
    summary.items = n = _open().export(file)
    console().print(f"exported {n} entries -> {file}")


@cache.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@summary_option
def import_(file, summary):
    """Merge the entries of FILE (written by `gasus cache export`) into this cache.

    \b
    Example:
      gasus cache import grades.jsonl
    """
    check_paths(summary, inputs={"FILE": file})
    summary.items = n = _open().import_(file)
    console().print(f"imported {n} entries from {file}")


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
    store = _open()
    if not yes:
        click.confirm(f"Delete all {len(store)} entries of {store.directory}?", abort=True)
    summary.items = n = store.clear()
    console().print(f"cleared {n} entries")
