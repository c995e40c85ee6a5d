"""The data audit behind `gasus check`: training rows that overlap the test sets, and near-duplicates.

Text is compared as words after Unicode NFKC and case folding. Two kinds of overlap:

- exact: a training row (instruction, input and output) shares a word n-gram (13 words by default,
  as in GPT-3's and wana's contamination checks) with a test question; a question shorter than
  that counts when all of it appears, if it has at least MIN_EXACT_WORDS words.
- near: the row's question (instruction and input) and a test question have a Jaccard similarity of
  word shingles at or above a threshold; candidates come from MinHash LSH (datasketch) and are
  confirmed by the exact Jaccard, so the estimate never decides alone.

`self_duplicates` finds near-duplicate groups inside one dataset the same way, over whole rows,
each row looked up among one representative per group found so far.
The work is linear in the data: each row is hashed once and looked up, never compared pairwise.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInputError
from .records import Example

DEFAULT_NGRAM = 13
DEFAULT_THRESHOLD = 0.6
DEFAULT_SHINGLE = 2
DEFAULT_NUM_PERM = 128
# A question of fewer words than this is too generic ("Write 'Test'") to count as an exact overlap
# when all of it appears in a row; the near check still sees it.
MIN_EXACT_WORDS = 5

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The words of a text after NFKC and case folding, so that width, ligature and case variants match.

    >>> words("The ＦＩＲＳＴ ﬁsh, isn't it?")
    ['the', 'first', 'fish', 'isn', 't', 'it']
    """
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(tokens: Sequence[str], size: int) -> set[str]:
    """The set of `size`-word shingles of a word list; a shorter list is one shingle of all its words.

    >>> sorted(shingles(["a", "b", "c"], 2))
    ['a b', 'b c']
    """
    if len(tokens) <= size:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@dataclass(frozen=True)
class Reference:
    """One text the training data must not contain: a test question, or a row of another dataset."""

    testset: str
    question_id: str
    text: str


@dataclass(frozen=True)
class AuditConfig:
    """How overlaps are found."""

    ngram: int = field(default=DEFAULT_NGRAM, metadata={"help": "Words in the shared n-gram of an exact hit."})
    threshold: float = field(default=DEFAULT_THRESHOLD, metadata={"help": "Jaccard at or above which a pair is near."})
    shingle: int = field(default=DEFAULT_SHINGLE, metadata={"help": "Words per shingle of the near check."})
    num_perm: int = field(default=DEFAULT_NUM_PERM, metadata={"help": "MinHash permutations."})

    def __post_init__(self):
        if self.ngram < 1:
            raise BadInputError(f"--ngram must be at least 1, got {self.ngram}")
        if not 0 < self.threshold <= 1:
            raise BadInputError(f"--threshold must be in (0, 1], got {self.threshold:g}")
        if self.shingle < 1:
            raise BadInputError(f"--shingle must be at least 1, got {self.shingle}")
        if self.num_perm < 16:
            raise BadInputError(f"--num-perm must be at least 16, got {self.num_perm}")


@dataclass
class AuditReport:
    """Hits (one per training row and reference it overlaps), near-duplicate groups, and counts."""

    hits: list[dict[str, Any]] = field(default_factory=list)
    groups: list[list[int]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def contaminated(self) -> bool:
        return bool(self.hits)

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "groups": self.groups, "summary": self.summary}


def _row_question(example: Example) -> str:
    return f"{example.instruction}\n{example.input}" if example.input else example.instruction


def _row_text(example: Example) -> str:
    return "\n".join(part for part in (example.instruction, example.input, example.output) if part)


def _minhashes(sets: Sequence[set[str]], num_perm: int) -> list[Any]:
    """One LeanMinHash per shingle set, all sharing one set of permutations (datasketch's bulk path)."""
    from datasketch import LeanMinHash, MinHash

    encoded = [[s.encode("utf-8") for s in shingle_set] for shingle_set in sets]
    return [LeanMinHash(m) for m in MinHash.bulk(encoded, num_perm=num_perm)]


def _lsh(threshold: float, num_perm: int) -> Any:
    from datasketch import MinHashLSH

    # A missed candidate is a missed hit, a false one costs only an exact Jaccard: the bands are tuned
    # for a lower threshold, weighted toward recall (b=42, r=3 for 0.6: a pair at 0.6 is missed ~1 in 25,000).
    return MinHashLSH(threshold=max(0.05, threshold - 0.2), num_perm=num_perm, weights=(0.1, 0.9))


class _ExactIndex:
    """The word n-grams of the references, looked up by their first k words so that one pass of
    k-grams over a row finds every candidate (k: the shortest gram, a whole short question)."""

    def __init__(self, references: Sequence[Reference], n: int):
        self.grams: dict[tuple[str, ...], list[int]] = {}
        for r, ref in enumerate(references):
            tokens = words(ref.text)
            if len(tokens) >= n:
                found = {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
            elif len(tokens) >= MIN_EXACT_WORDS:
                found = {tuple(tokens)}
            else:
                continue
            for gram in found:
                self.grams.setdefault(gram, []).append(r)
        self.k = min((len(g) for g in self.grams), default=n)
        self.by_prefix: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for gram in self.grams:
            self.by_prefix.setdefault(gram[:self.k], []).append(gram)
        self.prefixes = frozenset(self.by_prefix)  # isdisjoint with a dict would walk all of it

    def matches(self, tokens: list[str]) -> dict[int, tuple[str, ...]]:
        """reference number -> the first of its grams found in the tokens (in text order)."""
        if not self.grams or len(tokens) < self.k:
            return {}
        prefixes = set(zip(*(tokens[i:] for i in range(self.k))))
        if prefixes.isdisjoint(self.prefixes):
            return {}
        found: dict[int, tuple[str, ...]] = {}
        for i in range(len(tokens) - self.k + 1):
            for gram in self.by_prefix.get(tuple(tokens[i:i + self.k]), ()):
                if tuple(tokens[i:i + len(gram)]) == gram:
                    for r in self.grams[gram]:
                        found.setdefault(r, gram)
        return found


def check_against(examples: Sequence[Example], references: Sequence[Reference],
                  config: AuditConfig | None = None) -> list[dict[str, Any]]:
    """Hits of training rows on references: exact first; a pair with an exact hit is not also near."""
    config = config or AuditConfig()
    exact = _ExactIndex(references, config.ngram)
    ref_sets = [shingles(words(ref.text), config.shingle) for ref in references]
    lsh = _lsh(config.threshold, config.num_perm)
    for r, m in enumerate(_minhashes(ref_sets, config.num_perm)):
        if ref_sets[r]:
            lsh.insert(r, m)
    row_sets = [shingles(words(_row_question(e)), config.shingle) for e in examples]
    hits = []
    for example, row_set, m in zip(examples, row_sets, _minhashes(row_sets, config.num_perm)):
        found = exact.matches(words(_row_text(example)))
        row_hits = [(r, "exact", " ".join(gram)) for r, gram in found.items()]
        if row_set:
            for r in lsh.query(m):
                if r not in found:
                    similarity = jaccard(row_set, ref_sets[r])
                    if similarity >= config.threshold:
                        row_hits.append((r, "near", round(similarity, 4)))
        for r, kind, evidence in sorted(row_hits, key=lambda h: h[0]):
            ref = references[r]
            hits.append({"index": example.index, "id": example.id, "testset": ref.testset,
                         "question_id": ref.question_id, "kind": kind, "evidence": evidence})
    return hits


def self_duplicates(examples: Sequence[Example], config: AuditConfig | None = None
                    ) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Near-duplicate groups inside a dataset (whole rows, Jaccard confirmed), grouped as they are found:
    only the first row of each group (its representative) is indexed, and a row joins the group whose
    representative it is most like (at or above the threshold; the earlier group on a tie), else starts
    one. One hit per row that joined a group, naming its representative (`other_index`), never one per
    pair: a thousand copies of a row cost what a thousand distinct rows cost. Groups are sorted lists of
    row indexes, ordered by their first row."""
    config = config or AuditConfig()
    row_sets = [shingles(words(_row_text(e)), config.shingle) for e in examples]
    lsh = _lsh(config.threshold, config.num_perm)
    hits = []
    joined: dict[int, list[int]] = {}  # representative's position -> the positions that joined it
    for position, (example, row_set, m) in enumerate(zip(examples, row_sets,
                                                         _minhashes(row_sets, config.num_perm))):
        if not row_set:
            continue
        best, best_similarity = None, 0.0
        for other in sorted(lsh.query(m)):
            similarity = jaccard(row_set, row_sets[other])
            if similarity >= config.threshold and similarity > best_similarity:
                best, best_similarity = other, similarity
        if best is None:
            lsh.insert(position, m)
            continue
        joined.setdefault(best, []).append(position)
        hits.append({"index": example.index, "id": example.id, "testset": "self",
                     "other_index": examples[best].index, "kind": "near", "evidence": round(best_similarity, 4)})
    groups = [sorted(examples[p].index for p in (first, *rest)) for first, rest in joined.items()]
    return hits, sorted(groups)


def testset_references(names: str | Sequence[str], testsets_dir: str | None = None) -> list[Reference]:
    """The questions of the named test sets (found as `generate` finds them) as references."""
    from .testsets import load_testsets

    return [Reference(q.testset, q.id, f"{q.instruction}\n{q.input}") for q in load_testsets(names, testsets_dir)]


def file_references(source: str, *, fields: Any = None, split: str = "train", max_rows: int = 0) -> list[Reference]:
    """A dataset file's rows as references, by their instruction and input (each named by its row index).
    The response is never compared, so rows need none: a file of bare questions serves. `fields` is an
    io.FieldMap (its output field is not read); chat rows take their user turn and system text."""
    from .io import FieldMap, chat_triplet, read_rows

    fields = fields or FieldMap()
    references = []
    for index, (where, row) in enumerate(read_rows(source, split=split, max_rows=max_rows)):
        if max_rows and index == max_rows:
            raise BadInputError(f"{source}: holds {index + 1:,} rows or more, over --max-rows {max_rows:,}; "
                                "give a larger --max-rows (0: no limit) to read them all")
        chat = next((k for k in ("messages", "conversations") if k in row), None)
        if fields.instruction not in row and chat is not None:
            instruction, input_, _ = chat_triplet(row, chat, f"{source}: {where}")
        else:
            instruction = _field_text(row, fields.instruction, f"{source}: {where}", required=True)
            input_ = _field_text(row, fields.input, f"{source}: {where}", required=False)
        references.append(Reference(source, str(index), _row_question(Example(index, instruction, input_, ""))))
    if not references:
        raise BadInputError(f"{source}: the dataset has no examples")
    return references


def _field_text(row: dict[str, Any], name: str, where: str, *, required: bool) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and value != value):  # NaN: a CSV or Parquet empty
        if required and value is None:
            raise BadInputError(f"{where}: missing required field '{name}'")
        return ""
    if not isinstance(value, str):
        raise BadInputError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    return value


def audit(examples: Sequence[Example], references: Sequence[Reference] | None,
          config: AuditConfig | None = None, *, self_check: bool = False) -> AuditReport:
    """The whole audit: hits on the references (if any), and with `self_check` the dataset's own
    near-duplicates; the summary counts what a reader needs to judge the data."""
    config = config or AuditConfig()
    report = AuditReport()
    if references:
        report.hits = check_against(examples, references, config)
    if self_check:
        self_hits, report.groups = self_duplicates(examples, config)
        report.hits.extend(self_hits)
    test_hits = [h for h in report.hits if h["testset"] != "self"]
    per_testset: dict[str, dict[str, int]] = {}
    for ref in references or ():
        per_testset.setdefault(ref.testset, {"questions": 0, "exact": 0, "near": 0, "rows": 0})["questions"] += 1
    for name, counts in per_testset.items():
        mine = [h for h in test_hits if h["testset"] == name]
        counts["exact"] = sum(h["kind"] == "exact" for h in mine)
        counts["near"] = sum(h["kind"] == "near" for h in mine)
        counts["rows"] = len({h["index"] for h in mine})
    report.summary = {
        "rows": len(examples),
        "exact_hits": sum(h["kind"] == "exact" for h in test_hits),
        "near_hits": sum(h["kind"] == "near" for h in test_hits),
        "contaminated_rows": len({h["index"] for h in test_hits}),
        "testsets": per_testset,
        "self_checked": self_check,
        "duplicate_groups": len(report.groups),
        "duplicate_rows": sum(len(g) - 1 for g in report.groups),
        "ngram": config.ngram, "threshold": config.threshold, "shingle": config.shingle,
        "num_perm": config.num_perm, "min_exact_words": MIN_EXACT_WORDS,
    }
    return report
