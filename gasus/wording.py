"""How a count reads in what gasus prints: "1 step", "2 steps"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in the form the count takes.

    >>> counted(1, "step"), counted(0, "step"), counted(2, "entry", "entries")
    ('1 step', '0 steps', '2 entries')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
