"""How judge results are shown: a Win/Tie/Lose table per test set like the paper's Figure 5,
the position-bias line beside it, and the same counts as a stacked bar chart (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import BadInputError
from ..judge import PositionBias, Tally

# The paper's Figure 5 colours: win, tie, lose.
COLOURS = {"win": "#4c72b0", "tie": "#a6a6a6", "lose": "#dd8452"}


def _score_text(t: Tally) -> str:
    if t.score is None:
        return "-"
    if t.interval is None:
        return f"{t.score:.3f}"
    return f"{t.score:.3f} [{t.interval[0]:.3f}, {t.interval[1]:.3f}]"


def verdict_table(tallies: Sequence[Tally], *, title: str = "Model A vs model B"):
    """A rich Table: one row per test set, Win/Tie/Lose counts, and the winning score with its 95% interval."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("test set")
    for name in ("win", "tie", "lose"):
        table.add_column(name.capitalize(), justify="right")
    table.add_column("winning score [95% CI]", justify="right")
    if any(t.unjudged for t in tallies):
        table.add_column("unjudged", justify="right")
    for t in tallies:
        cells = [t.testset, str(t.win), str(t.tie), str(t.lose), _score_text(t)]
        if any(x.unjudged for x in tallies):
            cells.append(str(t.unjudged))
        table.add_row(*cells, style="bold" if t.testset == "overall" else None)
    return table


def bias_text(bias: PositionBias) -> str:
    """One line: how often the two orders agree, and how often the first answer shown wins."""
    parts = []
    if bias.agreement is not None:
        parts.append(f"orders agree on {bias.agree}/{bias.both_orders} questions ({bias.agreement:.0%})")
    else:
        parts.append("orders agree: n/a (no question has a parsed score pair in both orders)")
    if bias.first_win_rate is not None:
        parts.append(f"first position wins {bias.first_wins}/{bias.judgements} ({bias.first_win_rate:.0%}), "
                     f"second {bias.second_wins}, ties {bias.ties}")
    else:
        parts.append("first position wins: n/a (no parsed score pair)")
    return "Position bias: " + "; ".join(parts)


def failure_warning(statuses: Sequence[str], *, noun: str, failed: str, consequence: str) -> str | None:
    """One loud line when any item of a stage failed, with the count per status, else None.

    >>> failure_warning(["ok", "unparsed", "error", "unparsed"], noun="grades", failed="failed",
    ...                 consequence="those examples are never kept")
    'Warning: 3 of 4 grades failed (2 unparsed, 1 error): those examples are never kept'
    """
    bad = {s: statuses.count(s) for s in dict.fromkeys(statuses) if s != "ok"}
    if not bad:
        return None
    detail = ", ".join(f"{n} {s}" for s, n in sorted(bad.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"Warning: {sum(bad.values())} of {len(statuses)} {noun} {failed} ({detail}): {consequence}"


def grade_warning(statuses: Sequence[str]) -> str | None:
    return failure_warning(statuses, noun="grades", failed="failed",
                           consequence="those examples have no score and are never kept")


def judge_warning(statuses: Sequence[str]) -> str | None:
    return failure_warning(statuses, noun="judgements", failed="have no usable score pair",
                           consequence="their questions count in #Testset as unjudged")


def plot_verdicts(tallies: Sequence[Tally], path: str | Path, *, title: str = "Model A vs model B") -> Path:
    """A horizontal stacked bar per test set (Win, Tie, Lose), written as a PNG."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise BadInputError(f"{path}: --plot writes a PNG; give a file name ending in .png")
    import matplotlib

    matplotlib.use("Agg")  # no display is needed or wanted
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    rows = list(reversed(tallies))  # first test set at the top
    names = [t.testset for t in rows]
    kinds = ["win", "tie", "lose"] + (["unjudged"] if any(t.unjudged for t in rows) else [])
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.6))
    left = [0] * len(rows)
    for kind in kinds:
        counts = [getattr(t, kind) for t in rows]
        style = {"color": COLOURS[kind]} if kind in COLOURS else {"color": "white", "edgecolor": "#808080",
                                                                  "hatch": "//"}
        bars = ax.barh(names, counts, left=left, label=kind.capitalize(), **style)
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], label_type="center",
                     color="black" if kind == "unjudged" else "white", fontsize=9)
        left = [a + b for a, b in zip(left, counts)]
    ax.set_xlim(0, max(max(left), 1))
    ax.set_xlabel("questions")
    ax.set_title(title)
    fig.legend(*ax.get_legend_handles_labels(), ncols=len(kinds), loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.12 if len(rows) > 2 else 0.2, 1, 1))
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return path
