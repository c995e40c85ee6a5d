"""Pure functions from a model's completion text to a score or a score pair, each with a status."""

from __future__ import annotations

# ---------------------------------------------------------------- grader scores (0-5)

# ---------------------------------------------------------------- judge score pairs (1-10)
