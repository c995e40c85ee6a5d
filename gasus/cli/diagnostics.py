"""The options and stderr warnings of the grader's score health, shared by select, grade and agree."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click

from .common import console


def health_options(func: Callable) -> Callable:
    """--collapse-share and --length-bias-rho, passed to the command as one `health` dict."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, collapse_share: float, length_bias_rho: float, **kwargs):
        from ..diagnostics import check_rho, check_share

        health = {"collapse_share": check_share(collapse_share, "--collapse-share"),
                  "length_bias_rho": check_rho(length_bias_rho, "--length-bias-rho")}
        return func(*args, health=health, **kwargs)

    wrapper = click.option("--length-bias-rho", type=float, default=0.3, show_default=True,
                           help="Warn of length bias when Spearman's rho of score and response length "
                                "(in words) reaches this.")(wrapper)
    return click.option("--collapse-share", type=float, default=0.8, show_default=True,
                        help="Warn that the scores collapsed when this share of the ok grades hold one score.")(wrapper)


def warn(warnings: Iterable[str | None]) -> None:
    """Each warning as one bold red line on stderr."""
    from rich.text import Text

    err = console(stderr=True)
    for warning in warnings:
        if warning:
            err.print(Text(warning, style="bold red"), soft_wrap=True)
