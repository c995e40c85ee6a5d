"""The grader-score parser on the forms graders really write, and the expected-mode distribution."""

from __future__ import annotations

import doctest
import math

import pytest

from gasus import parsing
from gasus.parsing import ScoreParse, parse_score, score_distribution


@pytest.mark.parametrize("text, score, status", [
    # the paper's format: the score alone on the first line
    ("4.5\nThe response is accurate and complete.", 4.5, "ok"),
    ("5", 5.0, "ok"),
    ("0\nThe response is wrong.", 0.0, "ok"),
    ("  3.5  \n\nexplanation", 3.5, "ok"),
    ("\n\n4\nexplanation", 4.0, "ok"),
    # labelled
    ("Score: 4", 4.0, "ok"),
    ("score:4.5\nfine", 4.5, "ok"),
    ("Rating: 4 (accurate)", 4.0, "ok"),
    ("Accuracy: 3", 3.0, "ok"),
    ("The response is mostly correct.\nI give it a score of 3.", 3.0, "ok"),
    ("I would rate this response 3.5 out of 5.", 3.5, "ok"),
    ("I would rate it a 2 because it misses the point.", 2.0, "ok"),
    # fractions of 5 and markup
    ("4.5/5", 4.5, "ok"),
    ("4 / 5\nGood.", 4.0, "ok"),
    ("**4.5**", 4.5, "ok"),
    ("**Score: 4.5/5**\n\nThe answer is right.", 4.5, "ok"),
    ("## 4", 4.0, "ok"),
    ("The answer deserves 4 out of 5 points.", 4.0, "ok"),
    # a leading number followed by words
    ("5 - accurate and complete", 5.0, "ok"),
    ("4.5: the response is good", 4.5, "ok"),
    # outside 0-5, or another scale
    ("7", 7.0, "out_of_range"),
    ("10\nPerfect.", 10.0, "out_of_range"),
    ("-1", -1.0, "out_of_range"),
    ("5.5", 5.5, "out_of_range"),
    ("Score: 8/10", 8.0, "out_of_range"),
    ("I would rate this 9 out of 10.", 9.0, "out_of_range"),
    # no number at all
    ("The response answers the question well.", None, "unparsed"),
    ("", None, "unparsed"),
    ("   \n  ", None, "unparsed"),
    (None, None, "unparsed"),
])
def test_parse_score(text, score, status):
    assert parse_score(text) == ScoreParse(score, status)


def test_first_line_wins_over_later_numbers():
    assert parse_score("3\nIt lists 5 items but 2 are wrong.") == ScoreParse(3.0, "ok")


def test_score_distribution_renormalises_over_the_six_tokens():
    d = score_distribution({"0": math.log(0.1), "5": math.log(0.3), "4": math.log(0.1)})
    assert d.status == "ok"
    assert d.probs == pytest.approx({"0": 0.2, "1": 0.0, "2": 0.0, "3": 0.0, "4": 0.2, "5": 0.6})
    assert d.expected == pytest.approx(0.2 * 0 + 0.2 * 4 + 0.6 * 5)
    assert d.top == 5.0
    assert d.mass == pytest.approx(0.5)


def test_score_distribution_ties_go_to_the_lower_score_and_other_tokens_are_ignored():
    d = score_distribution({"3": -1.0, "4": -1.0, "The": -0.1})
    assert d.top == 3.0
    assert d.expected == pytest.approx(3.5)


def test_score_distribution_without_score_tokens_is_unparsed():
    assert score_distribution({"The": -0.1}).status == "unparsed"
    assert score_distribution(None).status == "unparsed"
    assert score_distribution({"4": -math.inf}).status == "unparsed"


def test_docstring_examples():
    result = doctest.testmod(parsing)
    assert result.failed == 0 and result.attempted >= 15
