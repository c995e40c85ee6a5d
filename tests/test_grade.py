"""Grading: the paper's prompt, the scores file, caching, resuming, retries, dry runs, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gasus.backends import Backend, CachedModel, Request
from gasus.cache import Cache
from gasus.errors import BackendError, BadInputError
from gasus.grade import (
    GradingPrompt,
    bucket,
    grade_examples,
    grade_request,
    grading_prompt,
    histogram,
    plan_grading,
    status_counts,
)
from gasus.io import load_examples
from gasus.prompts import Template
from gasus.records import Example
from gasus.selection import load_grades
from tests.conftest import run_cli

PAPER_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response to the "
                "instruction and the given input displayed following.")
PAPER_ACCURACY = (
    "Please rate according to the accuracy of the response to the instruction and the input. Each assistant "
    "receives a score on a scale of 0 to 5, where a higher score indicates higher level of the accuracy. Please "
    "first output a single line containing value indicating the scores. In the subsequent line, please provide a "
    "comprehensive explanation of your evaluation, avoiding any potential bias. \n\n"
)
# The public rating script's helpfulness variant, its "an score" included.
PAPER_HELPFULNESS = (
    "Please rate according to the helpfulness of the response to the instruction and the input. Each assistant "
    "receives an score on a scale of 0 to 5, where a higher score indicates higher level of the helpfulness. "
    "Please first output a single line containing value indicating the scores. In the subsequent line, please "
    "provide a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n"
)


class Scripted(Backend):
    """A grader whose answers are a function of the response text; counts its calls."""

    name = "scripted"

    def __init__(self, answer, fail_after: int | None = None):
        super().__init__("script")
        self.answer = answer
        self.calls: list[str] = []
        self.fail_after = fail_after

    def complete(self, request: Request):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # a kill in the middle of a run
        output = request.messages[-1]["content"].split("### Response:\n", 1)[1].split("\n\n", 1)[0]
        self.calls.append(output)
        text = self.answer(output)
        if isinstance(text, BackendError):
            raise text
        return {"text": text}


def answers(output: str):
    return {"right": "4.5\nAccurate.", "fine": "Score: 4", "vague": "It is fine.", "huge": "9",
            "down": BackendError("HTTP 500: server down")}.get(output, "5")


def ex(i: int, output: str, instruction: str = "Do it.") -> Example:
    return Example(i, instruction, "", output)


# ---------------------------------------------------------------- the prompt


def test_paper_prompt_is_verbatim():
    example = Example(0, "Add 2 and 3.", "", "5")
    assert grading_prompt("accuracy").messages(example) == [
        {"role": "system", "content": PAPER_SYSTEM},
        {"role": "user", "content": "###Instruction:\nAdd 2 and 3.\n\n### Input:\n\n\n### Response:\n5\n\n"
                                    + PAPER_ACCURACY},
    ]
    with_input = Example(1, "Sum these.", "2, 3", "5")
    user = grading_prompt("helpfulness").messages(with_input)[1]["content"]
    assert user == "###Instruction:\nSum these.\n\n### Input:\n2, 3\n\n### Response:\n5\n\n" + PAPER_HELPFULNESS


def test_template_hash_is_part_of_the_request():
    example = ex(0, "x")
    a = grade_request(grading_prompt("accuracy"), example, "generate")
    b = grade_request(GradingPrompt.from_template(Template("copy", grading_prompt("accuracy").user.text + " ")),
                      example, "generate")
    assert a.params == {"template": "chat", "temperature": 0, "max_tokens": 256,
                        "prompt": grading_prompt("accuracy").version}
    assert b.params["prompt"] != a.params["prompt"]


def test_custom_prompt_files(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("Rate 0-5: {instruction} / {output}")
    assert grading_prompt(prompt_file=plain).messages(ex(0, "yes", "Say yes.")) == [
        {"role": "user", "content": "Rate 0-5: Say yes. / yes"}]
    both = tmp_path / "both.txt"
    both.write_text("[system]\nYou grade.\nTwo lines.\n[user]\n{output}\n")
    assert grading_prompt(prompt_file=both).messages(ex(0, "yes")) == [
        {"role": "system", "content": "You grade.\nTwo lines."}, {"role": "user", "content": "yes\n"}]
    for text, message in [("Rate {instruction}", "must contain {output}"),
                          ("{output} {answer}", "unknown field {answer}"),
                          ("[system]\nno user line {output}", "needs a [user] line")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(BadInputError, match=re.escape(message)):
            grading_prompt(prompt_file=bad)
    with pytest.raises(BadInputError, match="cannot read the prompt file"):
        grading_prompt(prompt_file=tmp_path / "missing.txt")


def test_prompt_file_fields_are_parsed_not_searched(tmp_path):
    """Issue 18 item 9: `{{output}}` passed the `{output}` substring check and sent literal braces,
    `{output!s}` was refused, and a format spec such as `{instruction:>3000000000}` was honoured."""
    f = tmp_path / "p.txt"
    cases = [
        ("Grade {{output}} for {instruction}", "prompt 'p.txt': the user message must contain {output}, the response to grade"),
        ("{output} {instruction:>30}", "prompt 'p.txt': {instruction:>30} has a format spec; write the bare field"),
        ("{output} {answer}", "prompt 'p.txt': unknown field {answer} (use {instruction}, {input}, {output})"),
        ("{output} {}", "prompt 'p.txt': unknown field {} (use {instruction}, {input}, {output})"),
        ("{output.__class__}", "prompt 'p.txt': unknown field {output.__class__} (use {instruction}, {input}, {output})"),
        ("[system]\n{input:{output}}\n[user]\n{output}", "prompt 'p.txt': {input:{output}} has a format spec; write the bare field"),
        ("{output} {", "prompt 'p.txt': not a valid template: Single '{' encountered in format string"),
    ]
    for text, message in cases:
        f.write_text(text)
        with pytest.raises(BadInputError) as err:
            grading_prompt(prompt_file=f)
        assert str(err.value) == message, text
    f.write_text("Rate {output!s} ({{literal}}) for {instruction!r}")
    assert grading_prompt(prompt_file=f).messages(ex(0, "yes", "Say yes.")) == [
        {"role": "user", "content": "Rate yes ({literal}) for 'Say yes.'"}]


# ---------------------------------------------------------------- grading through the cache


def test_statuses_duplicates_and_zero_calls_on_rerun(tmp_path):
    examples = [ex(0, "right"), ex(1, "fine"), ex(2, "vague"), ex(3, "huge"), ex(4, "down"), ex(5, "right")]
    backend = Scripted(answers)
    model = CachedModel(backend, Cache(tmp_path / "c"))
    seen = []
    grades = grade_examples(examples, model, prompt=grading_prompt("accuracy"),
                            on_grade=lambda i, g, cached: seen.append((i, g.status, cached)))
    assert [(g.index, g.score, g.status) for g in grades] == [
        (0, 4.5, "ok"), (1, 4.0, "ok"), (2, None, "unparsed"), (3, None, "out_of_range"),
        (4, None, "error"), (5, 4.5, "ok")]
    assert grades[4].raw == "HTTP 500: server down"
    assert grades[2].raw == "It is fine." and grades[3].raw == "9"
    assert grades[0].id == grades[5].id
    assert backend.calls == ["right", "fine", "vague", "huge", "down"]  # the duplicate row shared a call
    assert sorted(seen) == [(0, "ok", False), (1, "ok", False), (2, "unparsed", False),
                            (3, "out_of_range", False), (4, "error", False), (5, "ok", False)]
    assert status_counts(grades) == {"ok": 3, "unparsed": 1, "out_of_range": 1, "error": 1, "truncated": 0}
    assert histogram(grades) == {"<3": 0, "3": 0, "3.5": 0, "4": 1, "4.5": 2, "5": 0}

    again = Scripted(answers)
    model = CachedModel(again, Cache(tmp_path / "c"))
    regraded = grade_examples(examples, model, prompt=grading_prompt("accuracy"))
    assert again.calls == ["down"]  # only the failed call (never cached) is asked again
    assert regraded == grades

    fixed = Scripted(lambda o: "3" if o in ("vague", "huge", "down") else "0")
    model = CachedModel(fixed, Cache(tmp_path / "c"))
    retried = grade_examples(examples, model, prompt=grading_prompt("accuracy"), retry_failed=True)
    assert fixed.calls == ["vague", "huge", "down"]
    assert [g.score for g in retried] == [4.5, 4.0, 3.0, 3.0, 3.0, 4.5]


def test_a_killed_run_continues_where_it_stopped(tmp_path):
    examples = [ex(i, f"answer {i}") for i in range(6)]
    killed = Scripted(lambda o: "4", fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        grade_examples(examples, CachedModel(killed, Cache(tmp_path / "c")), prompt=grading_prompt("accuracy"))
    assert len(killed.calls) == 4
    rest = Scripted(lambda o: "4")
    grades = grade_examples(examples, CachedModel(rest, Cache(tmp_path / "c")), prompt=grading_prompt("accuracy"))
    assert rest.calls == ["answer 4", "answer 5"]
    assert [g.score for g in grades] == [4.0] * 6


def test_bucket_edges():
    assert [bucket(s) for s in (0, 2.99, 3, 3.49, 3.5, 4, 4.49, 4.5, 4.99, 5)] == [
        "<3", "<3", "3", "3", "3.5", "4", "4", "4.5", "4.5", "5"]


def test_dry_run_counts_misses_and_estimates_api_cost(tmp_path):
    from gasus.backends.openai import OpenAIBackend
    from gasus.grade import PRICES, load_price_table

    examples = [ex(0, "a"), ex(1, "b"), ex(2, "a")]
    prompt = grading_prompt("accuracy")
    cache = Cache(tmp_path / "c")
    model = CachedModel(OpenAIBackend("gpt-4o-mini"), cache)
    plan = plan_grading(examples, model, prompt=prompt, mode="generate")
    chars = sum(len(m["content"]) for e in examples[:2] for m in prompt.messages(e))
    assert (plan.examples, plan.unique, plan.misses) == (3, 2, 2)
    assert plan.input_tokens == -(-chars // 4)
    assert plan.output_tokens == 2 * 256
    assert plan.price == PRICES["gpt-4o-mini"]
    assert plan.cost_usd == pytest.approx((plan.input_tokens * 0.15 + 512 * 0.60) / 1e6)
    cache.put(model.key(grade_request(prompt, examples[0], "generate")), {"text": "4"})
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"gpt-4o-mini": {"input": 1.0, "output": 2.0}}))
    plan = plan_grading(examples, model, prompt=prompt, mode="generate", prices=load_price_table(table))
    assert (plan.misses, plan.output_tokens, plan.price) == (1, 256, (1.0, 2.0, 0.5, 1.0))  # batch: half
    plan = plan_grading(examples, model, prompt=prompt, mode="score")
    assert (plan.misses, plan.output_tokens) == (2, 16)
    table.write_text(json.dumps({"gpt-4o-mini": [1.0]}))
    with pytest.raises(BadInputError, match="must be \\[input, output\\]"):
        load_price_table(table)


# ---------------------------------------------------------------- the command


def _replay_file(tmp_path: Path, examples, texts) -> Path:
    prompt = grading_prompt("accuracy")
    path = tmp_path / "replay.jsonl"
    with open(path, "w") as handle:
        for e, text in zip(examples, texts):
            handle.write(json.dumps({"messages": prompt.messages(e), "text": text}) + "\n")
    return path


def test_cli_writes_the_scores_file_and_summary(tmp_path, mini_alpaca):
    examples = load_examples(mini_alpaca)[:4]
    replay = _replay_file(tmp_path, examples, ["4.5\nGood.", "**5**", "Score: 2", "no idea"])
    out, summary = tmp_path / "scores.jsonl", tmp_path / "summary.json"
    result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--grader", f"replay:{replay}", "--limit", "4",
                     "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"id": examples[0].id, "index": 0, "score": 4.5, "status": "ok",
                       "grader": f"replay:{replay}", "dimension": "accuracy", "mode": "generate",
                       "raw": "4.5\nGood.", "probs": None, "top_score": None, "reasoning": None}
    assert [(r["index"], r["score"], r["status"]) for r in rows] == [
        (0, 4.5, "ok"), (1, 5.0, "ok"), (2, 2.0, "ok"), (3, None, "unparsed")]
    assert [g.id for g in load_grades(out)] == [e.id for e in examples]
    data = json.loads(summary.read_text())
    assert {k: data[k] for k in ("command", "items", "model_calls", "cache_hits", "failures")} == {
        "command": "grade", "items": 4, "model_calls": 4, "cache_hits": 0, "failures": 0}
    assert data["statuses"] == {"ok": 3, "unparsed": 1, "out_of_range": 0, "error": 0, "truncated": 0}
    assert data["histogram"] == {"<3": 1, "3": 0, "3.5": 0, "4": 0, "4.5": 1, "5": 1}
    assert "score >= 4.5 (the paper's rule): 2 of 4" in result.output

    rerun = run_cli("grade", str(mini_alpaca), "-o", str(out), "--grader", f"replay:{replay}", "--limit", "4",
                    "--summary-json", str(summary))
    assert rerun.exit_code == 0
    assert json.loads(summary.read_text())["model_calls"] == 0
    assert json.loads(summary.read_text())["cache_hits"] == 4

    dry = run_cli("grade", str(mini_alpaca), "--grader", f"replay:{replay}", "--limit", "6", "--dry-run")
    assert dry.exit_code == 0
    assert "6 examples (6 distinct): 4 in the cache, 2 model call(s) needed" in dry.output


def test_cli_prompt_missing_from_a_recording_stops_the_run(tmp_path, mini_alpaca):
    examples = load_examples(mini_alpaca)[:2]
    replay = _replay_file(tmp_path, examples[:1], ["4"])
    out = tmp_path / "scores.jsonl"
    result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--grader", f"replay:{replay}", "--limit", "2")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {replay}: no recorded response for the prompt beginning '###Instruction:")
    assert not out.exists()


def test_backends_that_ignore_a_mode_replay_refuses_expected_up_front(tmp_path, mini_alpaca):
    """A recording holds text, not score probabilities: --mode expected is refused before any
    call, instead of every row coming back unparsed."""
    examples = load_examples(mini_alpaca)[:2]
    replay = _replay_file(tmp_path, examples, ["4", "5"])
    out = tmp_path / "scores.jsonl"
    result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--grader", f"replay:{replay}", "--limit", "2",
                     "--mode", "expected")
    assert result.exit_code == 2
    assert result.output == (f"Error: replay:{replay}: the replay backend cannot answer in mode 'expected' "
                             "(it answers generate, score)\n")
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--limit", "0", "-o", "x.jsonl"], "--limit must be at least 1"),
    ([], "-o/--output is required"),
    (["-o", "x.jsonl", "--grader", "nosuch:model"], "cannot read model spec 'nosuch:model'"),
    (["-o", "x.jsonl", "--prompt-file", "missing.txt"], "cannot read the prompt file"),
    (["-o", "x.jsonl", "--concurrency", "0"], "concurrency must be at least 1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(mini_alpaca, args, message):
    result = run_cli("grade", str(mini_alpaca), *args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ") and message in result.output


def test_cli_bad_dataset(tmp_path):
    bad = tmp_path / "data.json"
    bad.write_text('[{"instruction": "x"}]')
    result = run_cli("grade", str(bad), "-o", str(tmp_path / "s.jsonl"))
    assert result.exit_code == 2
    assert result.output == f"Error: {bad}: row 0: missing required field 'output'\n"


@pytest.mark.parametrize("command", ["grade", "agree"])
def test_help_has_a_description_and_an_example(command):
    result = run_cli(command, "--help")
    assert result.exit_code == 0
    body = result.output.split("\n\n", 2)[1]
    assert len(body.strip()) > 30
    assert re.search(r"\n\s+Example:\n\s+gasus " + command + " ", result.output)


def test_embedded_model_grades_identically_in_separate_caches(tmp_path, mini_alpaca, monkeypatch):
    """The real SmolLM2-135M at temperature 0: same scores from two empty caches, none asked twice."""
    outputs = {}
    for name in ("a", "b"):
        monkeypatch.setenv("GASUS_CACHE_DIR", str(tmp_path / f"cache-{name}"))
        for mode in ("score", "expected"):
            out = tmp_path / f"{name}-{mode}.jsonl"
            result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--mode", mode, "--limit", "3",
                             "--threads", "1")
            assert result.exit_code == 0, result.output
            outputs[name, mode] = [json.loads(line) for line in out.read_text().splitlines()]
    assert outputs["a", "score"] == outputs["b", "score"]
    assert outputs["a", "expected"] == outputs["b", "expected"]
    # Exact scores are a property of the CPU's kernels (tests/test_recorded.py replays recorded
    # ones); here, what holds on every CPU: the form, and the recorded values within a tolerance.
    for row in outputs["a", "score"]:
        assert row["status"] == "ok" and re.fullmatch(r"[0-4](\.\d)?|5(\.0)?", row["raw"])
        assert row["score"] == float(row["raw"])
    for row, recorded in zip(outputs["a", "expected"], (1.178174, 1.311746, 1.542748)):
        assert row["status"] == "ok" and sum(row["probs"].values()) == pytest.approx(1, abs=1e-5)
        assert abs(row["score"] - recorded) <= 0.15, row["score"]
        assert row["top_score"] == float(max(row["probs"], key=row["probs"].get))
    summary = tmp_path / "summary.json"
    result = run_cli("grade", str(mini_alpaca), "-o", str(tmp_path / "again.jsonl"), "--mode", "expected",
                     "--limit", "3", "--summary-json", str(summary))
    assert result.exit_code == 0
    data = json.loads(summary.read_text())
    assert (data["model_calls"], data["cache_hits"]) == (0, 3)
    assert [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()] == \
        outputs["b", "expected"]


def test_unparsed_and_truncated_grades_are_counted_in_the_closing_line_and_warned(tmp_path, mini_alpaca):
    """Issue 29 item 2: grades without a usable score were left out of the closing line, which said
    `0 failed`; they are counted there and in the summary's `unusable`, and a share above 10% is warned of."""
    examples = load_examples(mini_alpaca)[:5]
    replay = _replay_file(tmp_path, examples, ["4.5\nGood.", "no idea", "It is fine.", "9", "<think>\nHm, the"])
    out, summary = tmp_path / "scores.jsonl", tmp_path / "summary.json"
    result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--grader", f"replay:{replay}", "--limit", "5",
                     "--thinking", "on", "--max-new-tokens-cap", "256", "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["status"] for line in out.read_text().splitlines()] == [
        "ok", "unparsed", "unparsed", "out_of_range", "truncated"]
    assert (f"score >= 4.5 (the paper's rule): 1 of 5; 5 model call(s), 0 from cache, 0 failed, 2 unparsed, "
            f"1 out of range, 1 truncated -> {out}\n") in result.stdout
    assert result.stderr.splitlines()[0] == (
        "4 of 5 grades have no usable score (2 unparsed, 1 out of range, 1 truncated) and are never kept: "
        "read their raw text in the scores file; a grader that follows the prompt better, or --mode score, "
        "gives more; truncated replies ran out of tokens: raise --max-new-tokens-cap (or --max-new-tokens) "
        "and rerun with --retry-failed")
    data = json.loads(summary.read_text())
    assert (data["failures"], data["unusable"]) == (0, {"unparsed": 2, "out_of_range": 1, "truncated": 1})


def test_embedded_grader_in_generate_mode_is_told_to_use_expected_mode(tmp_path, mini_alpaca):
    """Issue 29 item 2: the embedded model's written grades seldom parse; the warning names --mode expected.
    Its replies are put in the cache under the embedded model's own keys and read --offline (no model runs)."""
    from gasus.backends import BackendOptions, load_backend

    examples = load_examples(mini_alpaca)[:3]
    model = CachedModel(load_backend(None, BackendOptions()), Cache(), offline=True)
    prompt = grading_prompt("accuracy")
    for e, text in zip(examples, ["4", "The response is accurate.", "I would rate it highly."]):
        model.cache.put(model.key(grade_request(prompt, e, "generate")), {"text": text},
                        backend=model.backend.name, model=model.backend.label)
    out, summary = tmp_path / "scores.jsonl", tmp_path / "summary.json"
    result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--limit", "3", "--offline",
                     "--summary-json", str(summary))
    assert result.exit_code == 0, result.output
    assert "0 from cache" not in result.stdout and "0 failed, 2 unparsed, 0 out of range, 0 truncated" in result.stdout
    assert result.stderr.splitlines()[0] == (
        "2 of 3 grades have no usable score (2 unparsed) and are never kept: the embedded model rarely writes a "
        "score line the parser reads: grade with --mode expected (a score for every row from one forward pass)")
    assert json.loads(summary.read_text())["unusable"] == {"unparsed": 2, "out_of_range": 0, "truncated": 0}
