"""The run report's plots, each a PNG (matplotlib, no display): scores in the paper's buckets,
the threshold sweep, Win/Tie/Lose with the winning score, the judge's position bias, loss curves."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ..judge import PositionBias, Tally
from ..wording import counted

COLOURS = {"win": "#4c72b0", "tie": "#a6a6a6", "lose": "#dd8452", "unjudged": "#ffffff", "mark": "#c44e52"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display is needed or wanted
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})  # no version stamp: same run, same bytes
    _pyplot().close(fig)
    return buffer.getvalue()


def _bucket_position(threshold: float) -> float:
    """Where a threshold falls on the bucket axis ("<3" at 0, "3" at 1, ... "5" at 5): the left edge of its bucket."""
    if threshold < 3:
        return -0.5 + max(threshold, 0) / 3
    return 0.5 + (threshold - 3) / 0.5


def score_histogram(buckets: dict[str, int], threshold: float | None, rule: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    names = list(buckets)
    bars = ax.bar(range(len(names)), list(buckets.values()), color=COLOURS["win"])
    ax.bar_label(bars, fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("score")
    ax.set_ylabel("examples")
    if threshold is not None:
        ax.axvline(_bucket_position(threshold), color=COLOURS["mark"], linestyle="--", label=f"kept: {rule}")
        ax.legend(frameon=False, loc="upper right")  # the bars pile up at the left on a weak grader
    ax.set_title("Grades in the paper's buckets")
    ax.margins(y=0.15)
    fig.tight_layout()
    return _png(fig)


def threshold_sweep(points: Sequence[tuple[float, int]], threshold: float | None, total: int) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.step([t for t, _ in points], [k for _, k in points], where="post", color=COLOURS["win"])
    if threshold is not None:
        ax.axvline(threshold, color=COLOURS["mark"], linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(frameon=False)
    ax.set_xlabel("threshold (keep score >= threshold)")
    ax.set_ylabel("examples kept")
    ax.set_ylim(0, max(total, 1) * 1.05)
    ax.set_title(f"Kept count against threshold ({counted(total, 'example')})")
    fig.tight_layout()
    return _png(fig)


def verdict_bars(tallies: Sequence[Tally]) -> bytes:
    """Stacked Win/Tie/Lose (and unjudged) per test set, the winning score and its interval at the right."""
    plt = _pyplot()
    rows = list(reversed(tallies))
    fig, ax = plt.subplots(figsize=(7.6, 0.55 * len(rows) + 1.7))
    left = [0] * len(rows)
    names = [t.testset for t in rows]
    for kind in ("win", "tie", "lose", "unjudged"):
        counts = [getattr(t, kind) for t in rows]
        if kind == "unjudged" and not any(counts):
            continue
        style = {"color": COLOURS[kind]} if kind != "unjudged" else {"color": "white", "edgecolor": "#808080",
                                                                        "hatch": "//"}
        bars = ax.barh(names, counts, left=left, label=kind.capitalize(), **style)
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], label_type="center",
                     color="black" if kind == "unjudged" else "white", fontsize=9)
        left = [a + b for a, b in zip(left, counts)]
    width = max(max(left), 1)
    for y, t in enumerate(rows):
        text = "-" if t.score is None else f"{t.score:.3f}"
        if t.interval:
            text += f" [{t.interval[0]:.2f}, {t.interval[1]:.2f}]"
        ax.text(width * 1.02, y, text, va="center", fontsize=9)
    ax.set_xlim(0, width * 1.45)
    ax.set_xlabel("questions (right: winning score [95% CI])")
    ax.set_title("Filtered vs random baseline")
    fig.legend(*ax.get_legend_handles_labels(), ncols=4, loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.1 if len(rows) > 2 else 0.18, 1, 1))
    return _png(fig)


def position_bias(bias: PositionBias) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.0))
    parts = [("first shown wins", bias.first_wins, COLOURS["win"]), ("tie", bias.ties, COLOURS["tie"]),
             ("second shown wins", bias.second_wins, COLOURS["lose"])]
    left = 0
    for label, count, colour in parts:
        bars = ax.barh(["judgements"], [count], left=left, color=colour, label=label)
        ax.bar_label(bars, labels=[str(count) if count else ""], label_type="center", color="white", fontsize=9)
        left += count
    ax.set_xlim(0, max(left, 1))
    agreement = "n/a" if bias.agreement is None else f"{bias.agree}/{bias.both_orders} ({bias.agreement:.0%})"
    ax.set_title(f"Judge position bias; the two orders agree on {agreement}")
    fig.legend(*ax.get_legend_handles_labels(), ncols=3, loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    return _png(fig)


def loss_curves(histories: dict[str, list[dict[str, Any]]]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for (name, history), colour in zip(histories.items(), (COLOURS["win"], COLOURS["lose"], COLOURS["tie"])):
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker="o", markersize=3,
                label=name, color=colour)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    if histories:
        ax.legend(frameon=False)
    fig.tight_layout()
    return _png(fig)
