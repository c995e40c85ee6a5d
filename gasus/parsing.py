"""Pure functions from a model's completion text to a score or a score pair, each with a status."""

from __future__ import annotations

# ---------------------------------------------------------------- grader scores (0-5)
import math  # (each section of this module keeps its own imports)
import re
from dataclasses import dataclass

SCORE_SCALE = (0.0, 5.0)
SCORE_TOKENS = ("0", "1", "2", "3", "4", "5")

_N = r"(-?\d+(?:\.\d+)?)"
# What may follow a score on its own: "/5", "out of 5", "points", "stars" (the scale is checked).
_SCALE = r"(?:[ \t]*(?:/|out[ \t]+of)[ \t]*(\d+(?:\.\d+)?))?"
_MARKUP = re.compile(r"[*_`#]+")
# The first line holds nothing but the score (the format the paper's prompt asks for).
_BARE = re.compile(
    rf"^[ \t]*(?:(?:overall[ \t]+)?(?:score|rating|accuracy|helpfulness)[ \t]*[:=-]?[ \t]*)?[(\[]?{_N}{_SCALE}"
    r"[ \t]*(?:points?|stars?)?[)\]]?[ \t]*[.!]?[ \t]*$",
    re.IGNORECASE,
)
# A labelled score anywhere: "Score: 4", "Rating: 4 (accurate)", "I would rate this response 3.5
# out of 5", "I give it a score of 4.5". At most a few words between the label and the number.
_LABELLED_SCORE = re.compile(
    rf"\b(?:score|rating|rate|rated|grade)\b(?:[ \t]*(?:is|of|:|=|-|as)?[ \t]*|[^\d\n.]{{0,40}}?[ \t])\**{_N}(?![\d])\**{_SCALE}",
    re.IGNORECASE,
)
# "4.5/5" or "4 out of 5" anywhere.
_FRACTION = re.compile(rf"(?<![\d.]){_N}[ \t]*(?:/|out[ \t]+of)[ \t]*(\d+(?:\.\d+)?)", re.IGNORECASE)
# The first line starts with a number: "4 - accurate and complete", "4.5: good".
_LEADING = re.compile(rf"^[ \t]*{_N}(?![\d])(?:{_SCALE})(?=[ \t:;,)\-–]|$)")


@dataclass(frozen=True)
class ScoreParse:
    """The 0-5 score a grader wrote and how the parse went.

    `status` is "ok", "unparsed" (no score found) or "out_of_range" (a number outside 0-5, or
    on another scale such as "8/10"; `score` then holds what was read, so the raw text can be
    checked, and a scores file writes null).
    """

    score: float | None
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _score_checked(number: str, scale: str | None) -> ScoreParse:
    value = float(number)
    lo, hi = SCORE_SCALE
    if scale is not None and float(scale) != hi:
        return ScoreParse(value, "out_of_range")
    return ScoreParse(value, "ok" if lo <= value <= hi else "out_of_range")


def parse_score(text: str | None) -> ScoreParse:
    """The grader's 0-5 score: the first line when it holds just the score (what the paper's
    prompt asks for), else a labelled score ("Score: 4", "rate this 3.5 out of 5") or a
    fraction of 5 anywhere, else a number the first line starts with.

    >>> parse_score("4.5\\nThe response is accurate.")
    ScoreParse(score=4.5, status='ok')
    >>> parse_score("Score: 4")
    ScoreParse(score=4.0, status='ok')
    >>> parse_score("4.5/5")
    ScoreParse(score=4.5, status='ok')
    >>> parse_score("**4.5**\\n\\nThe answer is right.")
    ScoreParse(score=4.5, status='ok')
    >>> parse_score("I would rate this response 3.5 out of 5.")
    ScoreParse(score=3.5, status='ok')
    >>> parse_score("Rating: 4 (accurate)")
    ScoreParse(score=4.0, status='ok')
    >>> parse_score("The response is mostly correct.\\nI give it a score of 3.")
    ScoreParse(score=3.0, status='ok')
    >>> parse_score("5 - accurate and complete")
    ScoreParse(score=5.0, status='ok')
    >>> parse_score("7")
    ScoreParse(score=7.0, status='out_of_range')
    >>> parse_score("Score: 8/10")
    ScoreParse(score=8.0, status='out_of_range')
    >>> parse_score("-1")
    ScoreParse(score=-1.0, status='out_of_range')
    >>> parse_score("The response answers the question well.")
    ScoreParse(score=None, status='unparsed')
    >>> parse_score("")
    ScoreParse(score=None, status='unparsed')
    """
    if not text or not text.strip():
        return ScoreParse(None, "unparsed")
    clean = _MARKUP.sub("", text)
    first = next((line for line in clean.splitlines() if line.strip()), "")
    m = _BARE.match(first)
    if m:
        return _score_checked(m.group(1), m.group(2))
    for pattern in (_LABELLED_SCORE, _FRACTION):
        m = pattern.search(clean)
        if m:
            return _score_checked(m.group(1), m.group(2))
    m = _LEADING.match(first)
    if m:
        return _score_checked(m.group(1), m.group(2))
    return ScoreParse(None, "unparsed")


@dataclass(frozen=True)
class ScoreDistribution:
    """A grader's probabilities over the score tokens 0..5 at the answer position.

    `expected` is the probability-weighted mean (the fine-grained score), `top` the most
    likely score (the paper's coarse one), `mass` the share of all next-token probability
    that the six score tokens held before they were renormalised.
    """

    probs: dict[str, float] | None
    expected: float | None
    top: float | None
    mass: float
    status: str


def score_distribution(logprobs: dict[str, float] | None) -> ScoreDistribution:
    """Renormalise the log-probabilities of the score tokens "0".."5" (missing ones count as
    probability 0) into a distribution, its mean and its mode.

    >>> d = score_distribution({"4": math.log(0.3), "5": math.log(0.1)})
    >>> round(d.probs["4"], 6), round(d.expected, 6), d.top, round(d.mass, 6), d.status
    (0.75, 4.25, 4.0, 0.4, 'ok')
    >>> score_distribution({}).status
    'unparsed'
    """
    if not logprobs:
        return ScoreDistribution(None, None, None, 0.0, "unparsed")
    present = {k: v for k, v in logprobs.items() if k in SCORE_TOKENS and v is not None and v > -math.inf}
    if not present:
        return ScoreDistribution(None, None, None, 0.0, "unparsed")
    peak = max(present.values())
    weights = {k: math.exp(present[k] - peak) if k in present else 0.0 for k in SCORE_TOKENS}
    total = sum(weights.values())
    probs = {k: weights[k] / total for k in SCORE_TOKENS}
    expected = sum(int(k) * p for k, p in probs.items())
    top = max(SCORE_TOKENS, key=lambda k: (probs[k], -int(k)))  # a tie goes to the lower score
    mass = math.exp(peak) * total
    return ScoreDistribution(probs, expected, float(top), mass, "ok")

# ---------------------------------------------------------------- judge score pairs (1-10)
import re as _re  # noqa: E402  (this section is appended below the grader's; see the module docstring)
from dataclasses import dataclass as _dataclass  # noqa: E402

PAIR_STATUSES = ("ok", "unparsed", "out_of_range")
# The prompt asks for 1-10, but GPT-4 itself wrote "0 9" for an empty answer (llama-13b,
# Vicuna question 74, in the recorded reviews), so 0 is read as a score too.
JUDGE_SCALE = (0.0, 10.0)

_NUM = r"(\d+(?:\.\d+)?)"
_SCORE = _NUM + r"(?:[ \t]*/[ \t]*10(?![\d.]))?"  # "8" or "8/10"
# The paper's format: the first line holds only the two scores ("8 9", "8, 9", "(7, 9)").
_FIRST_LINE = _re.compile(
    rf"^[ \t]*(?:scores?[ \t]*:[ \t]*)?[(\[]?[ \t]*{_SCORE}(?:[ \t]*[,;][ \t]*|[ \t]+){_SCORE}[ \t]*[)\]]?[ \t]*\.?[ \t]*$",
    _re.IGNORECASE,
)
# "Assistant 1: 10" / "Assistant 2: 6/10" on one line each; the number must follow the label on
# its own line, so a numbered list under "Assistant 2:" is never read as a score.
_LABELLED = {
    k: _re.compile(rf"assistant[ \t]*{k}(?:'s)?(?:[ \t]+score)?[ \t]*[:=][ \t]*\**[ \t]*{_SCORE}(?![\d.]\d)",
                   _re.IGNORECASE)
    for k in (1, 2)
}
_TUPLE = _re.compile(rf"\([ \t]*{_SCORE}[ \t]*,[ \t]*{_SCORE}[ \t]*\)")


@_dataclass(frozen=True)
class PairParse:
    """The two scores a judge gave (Assistant 1, Assistant 2) and how the parse went.

    `status` is "ok", "unparsed" (no pair found) or "out_of_range" (a score outside 0-10;
    `scores` then holds what was read, so the raw reply can be checked).
    """

    scores: tuple[float, float] | None
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _checked(a: str, b: str) -> PairParse:
    scores = (float(a), float(b))
    lo, hi = JUDGE_SCALE
    status = "ok" if all(lo <= s <= hi for s in scores) else "out_of_range"
    return PairParse(scores, status)


def parse_score_pair(text: str | None) -> PairParse:
    """The judge's score pair: the first line if it holds just two scores (the format the
    prompt asks for), else the last pair written after the reasoning, labelled or a tuple.

    >>> parse_score_pair("8 9\\nAssistant 2 is more detailed.")
    PairParse(scores=(8.0, 9.0), status='ok')
    >>> parse_score_pair("8, 9").scores
    (8.0, 9.0)
    >>> parse_score_pair("8/10 9/10").scores
    (8.0, 9.0)
    >>> parse_score_pair("(7, 9)").scores
    (7.0, 9.0)
    >>> parse_score_pair("First, let me solve it...\\n\\nScores:\\nAssistant 1: 10\\nAssistant 2: 6\\n\\nDone.").scores
    (10.0, 6.0)
    >>> parse_score_pair("Assistant 1: 1/10\\nAssistant 2: 2/10").scores
    (1.0, 2.0)
    >>> parse_score_pair("...so the scores are (1, 5) for Assistant 1 and Assistant 2.").scores
    (1.0, 5.0)
    >>> parse_score_pair("Both answers are good.")
    PairParse(scores=None, status='unparsed')
    >>> parse_score_pair("3 11")
    PairParse(scores=(3.0, 11.0), status='out_of_range')
    """
    if not text:
        return PairParse(None, "unparsed")
    first = next((line for line in text.splitlines() if line.strip()), "")
    m = _FIRST_LINE.match(first.replace("*", ""))
    if m:
        return _checked(m.group(1), m.group(2))
    candidates: list[tuple[int, str, str]] = []
    seconds = list(_LABELLED[2].finditer(text))
    if seconds:
        last2 = seconds[-1]
        firsts = [m1 for m1 in _LABELLED[1].finditer(text, 0, last2.start())]
        if firsts:
            candidates.append((last2.end(), firsts[-1].group(1), last2.group(1)))
    tuples = list(_TUPLE.finditer(text))
    if tuples:
        candidates.append((tuples[-1].end(), tuples[-1].group(1), tuples[-1].group(2)))
    if not candidates:
        return PairParse(None, "unparsed")
    _, a, b = max(candidates)
    return _checked(a, b)
