"""The pairwise judge: verdict rules, winning score, bootstrap, position bias, the GPT-4 replay
and the embedded model as a deterministic judge."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from gasus.errors import BadInputError
from gasus.judge import (
    AnswerPair,
    bootstrap_interval,
    combine,
    judge_messages,
    load_answers,
    order_outcome,
    pair_answers,
    position_bias,
    summarize,
    verdicts_from,
    winning_score,
)
from gasus.prompts import load_template
from gasus.records import Answer, Judgement
from tests.conftest import run_cli

# ---------------------------------------------------------------- rules


@pytest.mark.parametrize("ab, ba, paper, strict", [
    ("win", "win", "win", "win"),
    ("win", "tie", "win", "tie"),
    ("tie", "win", "win", "tie"),
    ("tie", "tie", "tie", "tie"),
    ("win", "lose", "tie", "tie"),
    ("lose", "win", "tie", "tie"),
    ("lose", "tie", "lose", "tie"),
    ("tie", "lose", "lose", "tie"),
    ("lose", "lose", "lose", "lose"),
])
def test_combine_both_orders(ab, ba, paper, strict):
    assert combine([ab, ba], "paper") == paper
    assert combine([ab, ba], "strict") == strict


@pytest.mark.parametrize("outcome", ["win", "tie", "lose"])
def test_one_order_is_the_verdict(outcome):
    assert combine([outcome], "paper") == outcome
    assert combine([outcome], "strict") == outcome


def test_unknown_rule():
    with pytest.raises(BadInputError, match="unknown rule 'lenient': choose paper or strict"):
        combine(["win"], "lenient")


def test_order_outcome_is_from_model_a_side():
    assert order_outcome(Judgement("vicuna", "1", "ab", [8, 6], "ok", "8 6")) == "win"
    assert order_outcome(Judgement("vicuna", "1", "ba", [8, 6], "ok", "8 6")) == "lose"
    assert order_outcome(Judgement("vicuna", "1", "ba", [5, 5], "ok", "5 5")) == "tie"
    assert order_outcome(Judgement("vicuna", "1", "ab", None, "unparsed", "good")) is None
    assert order_outcome(Judgement("vicuna", "1", "ab", [3, 11], "out_of_range", "3 11")) is None


def _j(testset, id_, order, s1, s2):
    return Judgement(testset, id_, order, [s1, s2], "ok", f"{s1} {s2}")


def test_verdicts_and_tally():
    judgements = [
        _j("vicuna", "1", "ab", 8, 6), _j("vicuna", "1", "ba", 6, 8),   # win, win -> win
        _j("vicuna", "2", "ab", 8, 6), _j("vicuna", "2", "ba", 8, 6),   # win, lose -> tie (position bias)
        _j("vicuna", "3", "ab", 7, 7), _j("vicuna", "3", "ba", 9, 2),   # tie, lose -> lose
        _j("koala", "k1", "ab", 9, 1), _j("koala", "k1", "ba", 5, 5),   # win, tie -> win
        _j("koala", "k2", "ab", 9, 1),
        Judgement("koala", "k2", "ba", None, "unparsed", "no idea"),     # unjudged
    ]
    result = verdicts_from(judgements, "paper")
    assert [(v.testset, v.id, v.verdict) for v in result.verdicts] == [
        ("vicuna", "1", "win"), ("vicuna", "2", "tie"), ("vicuna", "3", "lose"), ("koala", "k1", "win")]
    assert result.unjudged == [("koala", "k2")]
    strict = verdicts_from(judgements, "strict")
    assert [v.verdict for v in strict.verdicts] == ["win", "tie", "tie", "tie"]

    report = summarize(judgements, rule="paper", n_resamples=200)
    rows = {t.testset: t for t in report.tallies}
    assert list(rows) == ["vicuna", "koala", "overall"]
    assert (rows["vicuna"].win, rows["vicuna"].tie, rows["vicuna"].lose, rows["vicuna"].unjudged) == (1, 1, 1, 0)
    assert (rows["koala"].win, rows["koala"].tie, rows["koala"].lose, rows["koala"].unjudged) == (1, 0, 0, 1)
    assert rows["vicuna"].score == 1.0
    assert rows["koala"].score == 1.5  # k2 is unjudged: it counts in #Testset, as neither win nor lose
    assert rows["koala"].interval == (1.0, 2.0)
    assert rows["overall"].score == pytest.approx(1.2)
    lo, hi = rows["overall"].interval
    assert 0.4 <= lo < 1.2 < hi <= 1.8

    bias = report.bias
    # Orders agree on questions 1 (win/win) and k1? no: k1 is win/tie. Only question 1 agrees.
    assert (bias.both_orders, bias.agree) == (4, 1)
    assert (bias.judgements, bias.first_wins, bias.second_wins, bias.ties) == (9, 6, 1, 2)
    assert bias.agreement == 0.25
    assert bias.first_win_rate == pytest.approx(6 / 9)


def test_position_bias_with_one_order_has_no_agreement():
    bias = position_bias([_j("vicuna", "1", "ab", 8, 6), _j("vicuna", "2", "ab", 2, 6)])
    assert (bias.both_orders, bias.agreement, bias.first_wins, bias.second_wins) == (0, None, 1, 1)


def test_winning_score_and_bootstrap():
    assert winning_score(44, 14, 80) == 1.375
    assert winning_score(0, 0, 0) is None
    verdicts = ["win"] * 44 + ["tie"] * 22 + ["lose"] * 14
    lo, hi = bootstrap_interval([verdicts], n_resamples=2000, seed=0)
    assert lo < 1.375 < hi
    assert 0.15 < hi - lo < 0.45  # about 2 x 1.96 x sd/sqrt(n) = 0.3 for these counts
    assert bootstrap_interval([verdicts], n_resamples=2000, seed=0) == (lo, hi)
    assert bootstrap_interval([["win"] * 5], n_resamples=50) == (2.0, 2.0)
    assert bootstrap_interval([[]]) is None


# ---------------------------------------------------------------- answers and the prompt


def _write_answers(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _answer(testset, id_, answer, question="Q?"):
    return {"testset": testset, "id": id_, "question": question, "answer": answer, "model": "m"}


def test_pair_answers_joins_on_testset_and_id():
    a = [Answer("vicuna", "1", "Q1", "a1", "A"), Answer("koala", "1", "K1", "ak", "A")]
    b = [Answer("koala", "1", "K1", "bk", "B"), Answer("vicuna", "1", "Q1", "b1", "B")]
    assert pair_answers(a, b) == [AnswerPair("vicuna", "1", "Q1", "a1", "b1"), AnswerPair("koala", "1", "K1", "ak", "bk")]


def test_pair_answers_unmatched_is_a_clear_error():
    a = [Answer("vicuna", str(i), "Q", "a", "A") for i in range(1, 9)]
    b = [Answer("vicuna", "1", "Q", "b", "B"), Answer("koala", "x", "Q", "b", "B")]
    with pytest.raises(BadInputError) as err:
        pair_answers(a, b, "a.jsonl", "b.jsonl")
    assert str(err.value) == ("the answers do not match: 7 question(s) answered in a.jsonl only (vicuna/2, vicuna/3, "
                              "vicuna/4, vicuna/5, vicuna/6 and 2 more); 1 in b.jsonl only (koala/x)")


def test_pair_answers_different_questions():
    with pytest.raises(BadInputError, match="question vicuna/1 differs between A and B"):
        pair_answers([Answer("vicuna", "1", "Q", "a", "")], [Answer("vicuna", "1", "Other", "b", "")], "A", "B")


def test_load_answers_rejects_bad_files(tmp_path):
    dup = _write_answers(tmp_path / "dup.jsonl", [_answer("vicuna", "1", "x"), _answer("vicuna", "1", "y")])
    with pytest.raises(BadInputError, match=r"dup.jsonl: line 2: question vicuna/1 is answered twice"):
        load_answers(dup)
    numeric = _write_answers(tmp_path / "num.jsonl", [{**_answer("vicuna", "1", "x"), "id": 1}])
    with pytest.raises(BadInputError, match=r"num.jsonl: line 1: an answer needs a string 'id'"):
        load_answers(numeric)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(BadInputError, match="the answers file is empty"):
        load_answers(tmp_path / "empty.jsonl")


def test_judge_prompt_is_the_papers(shared_data):
    prompt = json.loads((shared_data / "vicuna_eval" / "prompt.jsonl").read_text().splitlines()[0])
    assert prompt["prompt_id"] == 1
    assert load_template("judge_system").text == prompt["system_prompt"]
    assert load_template("judge_user").text == prompt["prompt_template"].replace("{prompt}", prompt["defaults"]["prompt"])


def test_judge_prompt_files_are_unchanged():
    """The bytes of the prompt files (checked against prompt.jsonl above when ../shared is present)."""
    digest = {name: hashlib.sha256(load_template(name).text.encode()).hexdigest()[:16]
              for name in ("judge_system", "judge_user")}
    assert digest == {"judge_system": JUDGE_SYSTEM_SHA, "judge_user": JUDGE_USER_SHA}


JUDGE_SYSTEM_SHA = "8ec001fd8f1a623f"
JUDGE_USER_SHA = "93d9cbe11d1f27fd"


def test_judge_messages_render():
    messages = judge_messages("What is 2+2?", "4", "5 {not a slot}")
    assert messages[0] == {"role": "system",
                           "content": "You are a helpful and precise assistant for checking the quality of the answer."}
    assert messages[1]["content"].startswith(
        "[Question]\nWhat is 2+2?\n\n[The Start of Assistant 1's Answer]\n4\n\n[The End of Assistant 1's Answer]\n\n"
        "[The Start of Assistant 2's Answer]\n5 {not a slot}\n\n[The End of Assistant 2's Answer]\n\n[System]\n")


# ---------------------------------------------------------------- GPT-4's recorded reviews, replayed

GPT4_COUNTS = {"gpt35": (44, 22, 14), "bard": (30, 10, 40), "alpaca-13b": (3, 1, 76), "llama-13b": (3, 0, 77)}
# Recorded pairs that FastChat fixed by hand to something the review text does not say.
HAND_FIXED = {("bard", "70"): [10.0, 2.0], ("llama-13b", "70"): [10.0, 2.0]}


def _fastchat_answers(path: Path, questions: dict[int, str], name: str, out: Path) -> Path:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return _write_answers(out, [{"testset": "vicuna", "id": str(r["question_id"]), "question": questions[r["question_id"]],
                                 "answer": r["text"], "model": name} for r in rows])


@pytest.mark.parametrize("model", list(GPT4_COUNTS))
def test_gpt4_reviews_replayed(shared_data, tmp_path, model):
    """Each recorded review becomes a replay line under the prompt rendered independently from
    prompt.jsonl; `gasus judge --order ab` must read back GPT-4's pairs and verdict counts."""
    ev = shared_data / "vicuna_eval"
    prompt = json.loads((ev / "prompt.jsonl").read_text().splitlines()[0])
    questions = {q["question_id"]: q["text"] for q in map(json.loads, (ev / "question.jsonl").read_text().splitlines())}
    answers = {}
    for name in (model, "vicuna-13b"):
        for row in map(json.loads, (ev / "answers" / f"{name}.jsonl").read_text().splitlines()):
            answers[row["answer_id"]] = row
    reviews = [json.loads(line) for line in (ev / "reviews_gpt4" / f"review_{model}_vicuna-13b.jsonl").read_text().splitlines()]
    replay = []
    for r in reviews:
        a1, a2 = answers[r["answer1_id"]], answers[r["answer2_id"]]
        assert a1["question_id"] == a2["question_id"] == r["question_id"]
        user = prompt["prompt_template"].format(question=questions[r["question_id"]], answer_1=a1["text"],
                                                answer_2=a2["text"], prompt=prompt["defaults"]["prompt"])
        replay.append({"messages": [{"role": "system", "content": prompt["system_prompt"]},
                                    {"role": "user", "content": user}], "text": r["text"]})
    replay_file = _write_answers(tmp_path / "replay.jsonl", replay)
    a_file = _fastchat_answers(ev / "answers" / f"{model}.jsonl", questions, model, tmp_path / "A.jsonl")
    b_file = _fastchat_answers(ev / "answers" / "vicuna-13b.jsonl", questions, "vicuna-13b", tmp_path / "vicuna-13b.jsonl")

    result = run_cli("judge", str(a_file), str(b_file), "-o", str(tmp_path / "j.jsonl"), "--judge",
                     f"replay:{replay_file}", "--order", "ab", "--verdicts", str(tmp_path / "v.jsonl"),
                     "--summary-json", str(tmp_path / "s.json"), "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    judgements = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(judgements) == 80
    recorded = {str(r["question_id"]): [float(s) for s in r["score"]] for r in reviews}
    for j in judgements:
        assert j["order"] == "ab" and j["status"] == "ok"
        expected = recorded[j["id"]]
        if (model, j["id"]) in HAND_FIXED:
            assert expected == HAND_FIXED[(model, j["id"])]
            assert j["scores"] == [10.0, 4.0]  # what the review text says
        else:
            assert j["scores"] == expected, j["id"]
    verdicts = [json.loads(line)["verdict"] for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert tuple(verdicts.count(v) for v in ("win", "tie", "lose")) == GPT4_COUNTS[model]
    summary = json.loads((tmp_path / "s.json").read_text())
    w, t, lose = GPT4_COUNTS[model]
    assert summary["testsets"][0]["winning_score"] == pytest.approx((w - lose) / 80 + 1)
    assert (summary["model_calls"], summary["items"], summary["failures"]) == (80, 80, 0)
    assert re.search(rf"│ vicuna +│ +{w} │ +{t} │ +{lose} │ +{(w - lose) / 80 + 1:.3f} \[", result.output)
    assert "Position bias: orders agree: n/a" in result.output
    assert summary["position_bias"]["both_orders"] == 0 and summary["position_bias"]["judgements"] == 80


# ---------------------------------------------------------------- the embedded model as judge

QUESTIONS = [
    ("1", "What is the capital of France?", "The capital of France is Paris.", "I like turtles."),
    ("2", "Name a primary colour.", "Red is a primary colour.", "Bananas are yellow fruit that grow in bunches."),
    ("3", "How many legs does a spider have?", "Four.", "A spider has eight legs."),
]


@pytest.fixture
def small_answers(tmp_path):
    a = _write_answers(tmp_path / "a.jsonl", [_answer("vicuna", i, ans_a, q) for i, q, ans_a, _ in QUESTIONS])
    b = _write_answers(tmp_path / "b.jsonl", [_answer("vicuna", i, ans_b, q) for i, q, _, ans_b in QUESTIONS])
    return a, b


def test_embedded_judge_both_orders(tmp_path, small_answers, embedded_gguf):
    """The embedded 135M model at temperature 0 as judge, live: its free text is a property of
    the CPU's kernels (tests/test_recorded.py replays recorded replies exactly), so this checks
    what holds on every CPU: one judgement per question and order, statuses and scores of the
    right form, verdicts only for questions with usable pairs, and a rerun from the cache that
    prints the same report."""
    a, b = small_answers
    args = ["judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", f"llamacpp:{embedded_gguf}",
            "--max-new-tokens", "12", "--verdicts", str(tmp_path / "v.jsonl"), "--bootstrap", "100",
            "--summary-json", str(tmp_path / "s.json")]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    judgements = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [(j["id"], j["order"]) for j in judgements] == [(i, o) for i in ("1", "2", "3") for o in ("ab", "ba")]
    for j in judgements:
        assert j["status"] in ("ok", "unparsed") and isinstance(j["raw"], str)
        assert (j["scores"] is None) == (j["status"] != "ok")
        assert j["scores"] is None or all(0 <= x <= 10 for x in j["scores"])
    verdicts = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert all(v["verdict"] in ("win", "tie", "lose") for v in verdicts)
    assert re.search(r"│ vicuna +│ +\d │ +\d │ +\d │ ", first.output)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["model_calls"], summary["cache_hits"], summary["items"]) == (6, 0, 6)

    again = run_cli(*args)
    assert again.exit_code == 0
    assert again.output == first.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["model_calls"], summary["cache_hits"]) == (0, 6)
    # One order, another rule: the same cached replies, read again; no model call.
    ab = run_cli(*args[:-2], "--order", "ab", "--rule", "strict", "--summary-json", str(tmp_path / "s2.json"))
    assert ab.exit_code == 0
    assert (json.loads((tmp_path / "s2.json").read_text())["model_calls"],
            json.loads((tmp_path / "s2.json").read_text())["cache_hits"]) == (0, 3)


def test_embedded_judge_score_mode_gives_verdicts(tmp_path, small_answers, embedded_gguf):
    """`--mode score` holds the GGUF judge to the paper's pair line with a grammar: the embedded
    model then always writes a pair, so every judgement is "ok" and every question gets a
    verdict, on any CPU (which pair it writes is the CPU's; tests/test_recorded.py has the
    recorded one)."""
    a, b = small_answers
    args = ["judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", f"llamacpp:{embedded_gguf}",
            "--mode", "score", "--verdicts", str(tmp_path / "v.jsonl"), "--bootstrap", "100",
            "--summary-json", str(tmp_path / "s.json")]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    judgements = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [(j["id"], j["order"], j["status"]) for j in judgements] == [
        (i, o, "ok") for i in ("1", "2", "3") for o in ("ab", "ba")]
    for j in judgements:
        assert re.fullmatch(r"\d+(\.\d+)? \d+(\.\d+)?", j["raw"]), j["raw"]
        assert j["scores"] == [float(x) for x in j["raw"].split()]
        assert all(1 <= x <= 10 for x in j["scores"])
    verdicts = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [(v["testset"], v["id"]) for v in verdicts] == [("vicuna", i) for i in ("1", "2", "3")]
    assert all(v["verdict"] in ("win", "tie", "lose") for v in verdicts)
    assert re.search(r"│ vicuna +│ +\d │ +\d │ +\d │ +\d\.\d{3} \[", first.output)
    assert json.loads((tmp_path / "s.json").read_text())["model_calls"] == 6
    again = run_cli(*args)
    assert again.output == first.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["model_calls"], summary["cache_hits"]) == (0, 6)


# ---------------------------------------------------------------- the command


def test_judge_plot_and_table(tmp_path, small_answers):
    a, b = small_answers
    replay = []
    replies = {"ab": ["9 2", "Assistant 1: 8\nAssistant 2: 8", "garbled"], "ba": ["2 9", "8 7", "(9, 3)"]}
    for order, texts in replies.items():
        for (_, q, ans_a, ans_b), text in zip(QUESTIONS, texts):
            first, second = (ans_a, ans_b) if order == "ab" else (ans_b, ans_a)
            replay.append({"messages": judge_messages(q, first, second), "text": text})
    replay_file = _write_answers(tmp_path / "replay.jsonl", replay)
    plot = tmp_path / "plot.png"
    result = run_cli("judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", f"replay:{replay_file}",
                     "--plot", str(plot), "--summary-json", str(tmp_path / "s.json"), "--title", "A vs B")
    assert result.exit_code == 0, result.output
    # 1: win+win -> win; 2: tie (8 8) + lose (B 8 > A 7) -> lose; 3: unparsed -> unjudged.
    assert re.search(r"│ vicuna +│ +1 │ +0 │ +1 │ +1\.000 \[[0-9.]+, [0-9.]+\] │ +1 │", result.output)
    assert "Position bias: orders agree on 1/2 questions (50%); first position wins 3/5" in result.output
    assert "1 of 6 judgements have no usable score pair (1 unparsed)" in result.output
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (840, 264)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["statuses"] == {"ok": 5, "unparsed": 1}
    assert summary["testsets"] == [{"testset": "vicuna", "win": 1, "tie": 0, "lose": 1, "unjudged": 1, "testset_size": 3,
                                    "winning_score": 1.0, "interval_95": summary["testsets"][0]["interval_95"]}]
    assert summary["position_bias"] == {"both_orders": 2, "agree": 1, "agreement": 0.5, "judgements": 5,
                                        "first_wins": 3, "second_wins": 1, "ties": 1, "first_win_rate": 0.6}


def test_judge_unmatched_answers_exit_2(tmp_path):
    a = _write_answers(tmp_path / "a.jsonl", [_answer("vicuna", "1", "x"), _answer("vicuna", "2", "y")])
    b = _write_answers(tmp_path / "b.jsonl", [_answer("vicuna", "1", "x")])
    result = run_cli("judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", "replay:none.jsonl")
    assert result.exit_code == 2
    assert result.output == f"Error: the answers do not match: 1 question(s) answered in {a} only (vicuna/2)\n"
    assert not (tmp_path / "j.jsonl").exists()


@pytest.mark.parametrize("extra, message", [
    (["--plot", "out.svg"], "Error: out.svg: --plot writes a PNG; give a file name ending in .png\n"),
    (["--max-new-tokens", "0"], "Error: --max-new-tokens must be at least 1\n"),
])
def test_judge_bad_options_exit_2(tmp_path, small_answers, extra, message):
    a, b = small_answers
    result = run_cli("judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), *extra)
    assert result.exit_code == 2
    assert result.output == message


def test_judge_missing_replay_line_stops_with_one_line(tmp_path, small_answers):
    a, b = small_answers
    replay_file = _write_answers(tmp_path / "replay.jsonl", [{"messages": [{"role": "user", "content": "x"}], "text": "1 2"}])
    result = run_cli("judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", f"replay:{replay_file}",
                     "--order", "ba", "--summary-json", str(tmp_path / "s.json"))
    assert result.exit_code == 2
    assert result.output == (f"Error: {replay_file}: no recorded response for the prompt beginning "
                             "'[Question] What is the capital of France?  [The Start of Ass...'\n")
    assert json.loads((tmp_path / "s.json").read_text())["error"] == result.output[len("Error: "):-1]


def test_judge_keeps_why_a_call_failed(tmp_path, small_answers, embedded_gguf):
    """A prompt longer than the judge's context fails that call only; the failure is never cached,
    and each judgement's raw holds the reason, as a failed grade's does."""
    a, b = small_answers
    args = ["judge", str(a), str(b), "-o", str(tmp_path / "j.jsonl"), "--judge", f"llamacpp:{embedded_gguf}",
            "--n-ctx", "64", "--order", "ab", "--summary-json", str(tmp_path / "s.json")]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert "3 of 3 judgements have no usable score pair (3 error)" in result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["failures"], summary["model_calls"], summary["statuses"]) == (3, 0, {"error": 3})
    judgements = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [(j["status"], j["scores"]) for j in judgements] == [("error", None)] * 3
    assert [re.fullmatch(r"the prompt has \d+ tokens; with 256 to generate it exceeds the context of 64 "
                         r"\(raise --n-ctx\)", j["raw"]) is not None for j in judgements] == [True] * 3
    run_cli(*args)
    assert json.loads((tmp_path / "s.json").read_text())["failures"] == 3


def test_judge_help():
    result = run_cli("judge", "--help")
    assert result.exit_code == 0
    assert "Judge model A's answers against model B's" in result.output
    assert "Example:\n    gasus judge alpagasus.jsonl alpaca52k.jsonl" in result.output


def test_winning_score_counts_unjudged_in_testset_size():
    """The paper divides by #Testset: an unjudged question counts in the denominator (as no win and
    no loss), so failing to judge a lost question cannot raise the score."""
    judgements = [_j("vicuna", "1", "ab", 9, 1), _j("vicuna", "1", "ba", 1, 9),
                  _j("vicuna", "2", "ab", 9, 1),
                  Judgement("vicuna", "2", "ba", None, "unparsed", "no idea"),
                  _j("koala", "k1", "ab", 1, 9), _j("koala", "k1", "ba", 9, 1)]
    rows = {t.testset: t for t in summarize(judgements, n_resamples=200).tallies}
    assert (rows["vicuna"].win, rows["vicuna"].unjudged, rows["vicuna"].score) == (1, 1, 1.5)
    assert rows["vicuna"].interval == (1.0, 2.0)
    assert rows["vicuna"].to_dict()["testset_size"] == 2
    assert (rows["overall"].score, rows["overall"].to_dict()["testset_size"]) == (pytest.approx(1 + 0 / 3), 3)
    nothing = summarize([Judgement("vicuna", "1", "ab", None, "unparsed", "?")], orders=("ab",)).tallies
    assert (nothing[0].unjudged, nothing[0].size, nothing[0].score, nothing[0].interval) == (1, 1, None, None)
