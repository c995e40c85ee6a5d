"""The judge's score-pair parser: the formats judges really write, and GPT-4's 320 recorded reviews."""

from __future__ import annotations

import doctest
import json

import pytest

from gasus import parsing
from gasus.parsing import PairParse, parse_score_pair


@pytest.mark.parametrize("text, scores", [
    ("8 9", (8.0, 9.0)),
    ("8, 9", (8.0, 9.0)),
    ("8,9\nBoth are fine.", (8.0, 9.0)),
    ("8/10 9/10", (8.0, 9.0)),
    ("8 / 10, 9 / 10", (8.0, 9.0)),
    ("(7, 9)", (7.0, 9.0)),
    ("[7, 9]", (7.0, 9.0)),
    ("9 8.5\nAssistant 1 is more detailed.", (9.0, 8.5)),
    ("**6 4**\nThe first is better.", (6.0, 4.0)),
    ("Scores: 3 7", (3.0, 7.0)),
    ("\n\n  10 2  \nexplanation", (10.0, 2.0)),
    ("First, I will solve it.\n\nScores:\nAssistant 1: 10\nAssistant 2: 6\n\nAssistant 1 did better.", (10.0, 6.0)),
    ("Assistant 1: 1 (Incorrect answer)\nAssistant 2: 8 (Detailed)\n", (1.0, 8.0)),
    ("Assistant 1's score: 7\nAssistant 2's score: 5", (7.0, 5.0)),
    ("Reasoning...\nAssistant 1: 1/10\nAssistant 2: 2/10\nBoth poor.", (1.0, 2.0)),
    ("The points (2, -2) and (10, 4) ... so the scores are (1, 5) for Assistant 1 and 2.", (1.0, 5.0)),
    # The last pair wins: a tuple after labelled scores, and labelled scores after a tuple.
    ("Assistant 1: 1\nAssistant 2: 7\n\nOutput: (2, 7)", (2.0, 7.0)),
    ("Points (3, 4).\nAssistant 1: 6\nAssistant 2: 9", (6.0, 9.0)),
    ("0 9\nAssistant 1 wrote nothing.", (0.0, 9.0)),
])
def test_pairs_judges_write(text, scores):
    assert parse_score_pair(text) == PairParse(scores, "ok")


@pytest.mark.parametrize("text", [
    "", None, "Both answers are helpful.", "8\nThe second is worse.", "8 9 10", "Assistant 1: 8",
    # A numbered list under a label is not a score.
    "Assistant 1:\n1. It is right.\nAssistant 2:\n2. It is wrong.",
    "The score is 8 for both", "eight nine",
])
def test_unparsed(text):
    assert parse_score_pair(text) == PairParse(None, "unparsed")


@pytest.mark.parametrize("text, scores", [("3 11", (3.0, 11.0)), ("(12, 4)", (12.0, 4.0)),
                                           ("Assistant 1: 15\nAssistant 2: 3", (15.0, 3.0))])
def test_out_of_range_keeps_what_was_read(text, scores):
    parsed = parse_score_pair(text)
    assert parsed == PairParse(scores, "out_of_range")
    assert not parsed.ok


def test_docstring_examples():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(parse_score_pair, "parse_score_pair", globs=vars(parsing)):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert runner.summarize(verbose=False).attempted == 9


def test_gpt4_recorded_reviews(shared_data):
    """All 320 recorded reviews parse to FastChat's recorded pair, except two whose recorded pair
    was fixed by hand to something the text does not say (the text says 10 and 4; recorded [10, 2])."""
    mismatches = {}
    n = 0
    for path in sorted((shared_data / "vicuna_eval" / "reviews_gpt4").glob("review_*.jsonl")):
        for line in path.read_text().splitlines():
            review = json.loads(line)
            parsed = parse_score_pair(review["text"])
            assert parsed.ok, (path.name, review["question_id"])
            n += 1
            if list(parsed.scores) != [float(s) for s in review["score"]]:
                mismatches[(path.name, review["question_id"])] = (parsed.scores, review["score"])
    assert n == 320
    assert mismatches == {
        ("review_bard_vicuna-13b.jsonl", 70): ((10.0, 4.0), [10, 2]),
        ("review_llama-13b_vicuna-13b.jsonl", 70): ((10.0, 4.0), [10, 2]),
    }
