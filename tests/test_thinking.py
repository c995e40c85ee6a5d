"""Reasoning graders and judges: thinking kept apart, budgets that grow, nothing parsed from the thoughts.

A loopback OpenAI-compatible server answers like a reasoning model (inline `<think>`, or the
thinking in `reasoning_content`), or like the same model without thinking; the scores and judge
pairs must be the same either way.
"""

from __future__ import annotations

import json

import pytest

from gasus.backends import CachedModel
from gasus.backends.openai import OpenAIBackend
from gasus.cache import Cache
from gasus.grade import grade_examples, grade_request, grading_prompt
from gasus.judge import AnswerPair, run_judge
from gasus.records import Example
from tests.conftest import run_cli
from tests.test_openai_backend import KEY_ENV, FakeServer, options

ANSWERS = {"inline": "4.5\nAccurate.", "field": "3\nPartly right.", "long": "5\nPerfect.",
           "scoreline": "2\nWrong.", "endless": "1\nNever seen."}
# A thought that writes score-like lines of its own: none of them may be read as the score.
THOUGHT = "The user wants a rating.\n5\nScore: 5/5 at first sight, but rating: 0 if the facts are wrong.\nLet me check."
LONG_THOUGHT_TOKENS = 600  # more than the paper's 256: the first try is cut off inside the thinking


class ThinkingServer(FakeServer):
    """Answers as a reasoning model (thinking=True) or as the same model answering at once."""

    def __init__(self, thinking: bool = True):
        super().__init__()
        self.thinking = thinking

    def reply_with(self, handler, body, content, reasoning=None, finish="stop", tokens=5):
        message = {"role": "assistant", "content": content}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        data = {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 50, "completion_tokens": tokens, "total_tokens": 50 + tokens}}
        self.send(handler, 200, json.dumps(data).encode())

    def handle(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        content = body["messages"][-1]["content"]
        if "### Response:\n" in content:
            tag = content.split("### Response:\n", 1)[1].split("\n", 1)[0]
        else:  # the judge: Assistant 1 gets 8 when it shows ANSWER-A, else 6; a LONG question makes it think long
            tag = "judge-long" if "LONG" in content else "judge"
        with self.lock:
            self.bodies.append(body)
            self.calls.setdefault(tag, []).append(body["max_tokens"])
        if tag.startswith("judge"):
            first_a = content.index("ANSWER-A") < content.index("ANSWER-B")
            answer = "8 6\nAssistant 1 is better." if first_a else "6 8\nAssistant 2 is better."
        else:
            answer = ANSWERS[tag]
        if not self.thinking or body.get("chat_template_kwargs") == {"enable_thinking": False}:
            return self.reply_with(handler, body, answer)
        budget = body["max_tokens"]
        if tag == "field":
            return self.reply_with(handler, body, answer, reasoning=THOUGHT, tokens=80)
        if tag in ("long", "endless", "judge-long"):
            needed = 10**6 if tag == "endless" else LONG_THOUGHT_TOKENS
            if budget < needed:  # cut off at the budget, inside the thinking
                return self.reply_with(handler, body, "<think>\n" + THOUGHT[: budget // 4], finish="length",
                                       tokens=budget)
            return self.reply_with(handler, body, f"<think>\n{THOUGHT}\n</think>\n\n{answer}", tokens=needed + 5)
        if body.get("stop") == ["\n"]:  # score mode: the newline stop ends the reply right after "<think>"
            return self.reply_with(handler, body, "<think>")
        return self.reply_with(handler, body, f"<think>\n{THOUGHT}\n</think>\n\n{answer}", tokens=100)


def _examples(*tags: str) -> list[Example]:
    return [Example(i, f"Task {i}.", "", tag) for i, tag in enumerate(tags)]


def _grades(server, cache_dir, tags, **kw):
    model = CachedModel(OpenAIBackend("qwen3", options(server)), Cache(cache_dir))
    return model, grade_examples(_examples(*tags), model, prompt=grading_prompt("accuracy"), **kw)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-thinking")


def test_one_place_separates_thinking_from_the_answer(tmp_path, key):
    tags = ("inline", "field", "scoreline")
    with ThinkingServer(thinking=False) as plain:
        _, expected = _grades(plain, tmp_path / "plain", tags)
    with ThinkingServer() as server:
        model, grades = _grades(server, tmp_path / "c", tags)
    assert [(g.score, g.status) for g in grades] == [(g.score, g.status) for g in expected] == [
        (4.5, "ok"), (3.0, "ok"), (2.0, "ok")]
    assert [g.raw for g in grades] == [ANSWERS[t] for t in tags]  # raw holds the answer only
    assert [g.reasoning for g in grades] == [THOUGHT] * 3
    assert [g.reasoning for g in expected] == [None] * 3
    # The thinking is kept in the cache value as the server sent it.
    field, inline = (model.cache.get(model.key(grade_request(grading_prompt("accuracy"), e, "generate")))
                     for e in _examples(*tags)[1::-1])
    assert (field["text"], field["reasoning"]) == (ANSWERS["field"], THOUGHT)
    assert inline["text"] == f"<think>\n{THOUGHT}\n</think>\n\n{ANSWERS['inline']}" and "reasoning" not in inline


def test_judge_pairs_are_read_after_the_thinking(tmp_path, key):
    pairs = [AnswerPair("vicuna", "1", "Q?", "ANSWER-A", "ANSWER-B")]
    with ThinkingServer(thinking=False) as plain:
        model = CachedModel(OpenAIBackend("qwen3", options(plain)), Cache(tmp_path / "plain"))
        expected = run_judge(model, pairs)
    with ThinkingServer() as server:
        model = CachedModel(OpenAIBackend("qwen3", options(server)), Cache(tmp_path / "c"))
        judgements = run_judge(model, pairs)
    assert [(j.scores, j.status) for j in judgements] == [(j.scores, j.status) for j in expected] == [
        ([8.0, 6.0], "ok"), ([6.0, 8.0], "ok")]
    assert [j.raw for j in judgements] == ["8 6\nAssistant 1 is better.", "6 8\nAssistant 2 is better."]
    assert [j.reasoning for j in judgements] == [THOUGHT, THOUGHT]
    assert judgements[0].to_dict()["reasoning"] == THOUGHT


def test_a_judge_cut_off_in_its_thinking_is_asked_again_then_truncated(tmp_path, key):
    pairs = [AnswerPair("vicuna", "2", "A LONG question?", "ANSWER-A", "ANSWER-B")]
    with ThinkingServer() as server:
        model = CachedModel(OpenAIBackend("qwen3", options(server)), Cache(tmp_path / "c"))
        judgements = run_judge(model, pairs, ["ab"])
        capped = run_judge(CachedModel(OpenAIBackend("qwen3", options(server)), Cache(tmp_path / "c2")), pairs,
                           ["ab"], max_tokens_cap=512)
        assert server.calls == {"judge-long": [256, 512, 1024, 256, 512]}
    assert [(j.scores, j.status) for j in judgements] == [([8.0, 6.0], "ok")]
    assert [(j.scores, j.status, j.raw, j.reasoning) for j in capped] == [
        (None, "truncated", "", THOUGHT[: 512 // 4])]


def test_replayed_thinking_is_split_off_before_parsing(tmp_path):
    examples = _examples("a", "b", "c")
    prompt = grading_prompt("accuracy")
    replies = [f"<think>\n{THOUGHT}\n</think>\n\n4.5\nGood.",
               "Rating: 5?\n</think>\n2\nWrong.",  # the template opened the thought itself (R1 distills)
               f"<think>\n{THOUGHT}"]  # never closed: cut off inside the thinking
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"messages": prompt.messages(e), "text": t}) + "\n"
                              for e, t in zip(examples, replies)))
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": e.instruction, "output": e.output}) + "\n" for e in examples))
    out = tmp_path / "scores.jsonl"
    result = run_cli("grade", str(data), "-o", str(out), "--grader", f"replay:{replay}", "--max-new-tokens-cap", "256",
                     "--thinking", "on")  # a bare </think> ends a thought of a model known to think
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["score"], r["status"], r["raw"], r["reasoning"]) for r in rows] == [
        (4.5, "ok", "4.5\nGood.", THOUGHT), (2.0, "ok", "2\nWrong.", "Rating: 5?"),
        (None, "truncated", "", THOUGHT)]


def test_budgets_grow_until_the_thinking_fits_and_truncated_at_the_cap(tmp_path, key):
    with ThinkingServer() as server:
        model, grades = _grades(server, tmp_path / "c", ("long", "endless", "inline"), max_tokens_cap=2048)
        assert [(g.score, g.status) for g in grades] == [(5.0, "ok"), (None, "truncated"), (4.5, "ok")]
        assert grades[1].raw == "" and grades[1].reasoning == THOUGHT[: 2048 // 4]
        assert grades[0].reasoning == THOUGHT
        # Each budget is asked once, doubling from the paper's 256 until the answer fits or the cap is hit.
        assert server.calls == {"long": [256, 512, 1024], "endless": [256, 512, 1024, 2048], "inline": [256]}
        assert model.stats.model_calls == 8

        # Every attempt is its own cache entry: a rerun pays for none of them.
        again, regraded = _grades(server, tmp_path / "c", ("long", "endless", "inline"), max_tokens_cap=2048)
        assert [(g.score, g.status) for g in regraded] == [(5.0, "ok"), (None, "truncated"), (4.5, "ok")]
        assert (again.stats.model_calls, again.stats.cache_hits) == (0, 8)

        # --retry-failed asks the truncated one again, at every budget; the others are not asked.
        server.calls.clear()
        retried, _ = _grades(server, tmp_path / "c", ("long", "endless", "inline"), max_tokens_cap=2048,
                             retry_failed=True)
        assert server.calls == {"endless": [256, 512, 1024, 2048]}


def test_judge_retry_failed_asks_truncated_judgements_again_without_batch(tmp_path, key):
    """Issue 29 item 5: `judge --retry-failed` was refused without --batch, and a rerun answered the
    truncated judgement from the cache; now it asks again, as `grade --retry-failed` does."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path, answer in ((a, "ANSWER-A"), (b, "ANSWER-B")):
        path.write_text("".join(json.dumps({"testset": "vicuna", "id": i, "question": q, "answer": answer,
                                            "model": "m"}) + "\n"
                                for i, q in (("1", "Q?"), ("2", "A LONG question?"))))
    out, summary = tmp_path / "j.jsonl", tmp_path / "s.json"
    with ThinkingServer() as server:
        def judge(*extra):
            result = run_cli("judge", str(a), str(b), "-o", str(out), "--judge", "openai:qwen3", "--base-url",
                             server.url, "--api-key-env", KEY_ENV, "--order", "ab", "--max-new-tokens-cap", "512",
                             "--bootstrap", "10", "--summary-json", str(summary), *extra)
            assert result.exit_code == 0, result.output
            data = json.loads(summary.read_text())
            return data["model_calls"], data["cache_hits"], data["statuses"]

        assert judge() == (3, 0, {"ok": 1, "truncated": 1})
        assert server.calls == {"judge": [256], "judge-long": [256, 512]}
        assert judge() == (0, 3, {"ok": 1, "truncated": 1})  # a plain rerun asks nothing
        server.calls.clear()
        # the truncated one is asked again at every budget; the ok one is not asked
        assert judge("--retry-failed") == (2, 1, {"ok": 1, "truncated": 1})
        assert server.calls == {"judge-long": [256, 512]}


def test_score_mode_lets_a_thinking_grader_finish_its_thought(tmp_path, key):
    with ThinkingServer() as server:
        _, grades = _grades(server, tmp_path / "c", ("inline",), mode="score")
        # The newline stop cut the reply at "<think>"; the retry has twice the budget and no newline stop.
        assert [(g.score, g.status, g.reasoning) for g in grades] == [(4.5, "ok", THOUGHT)]
        assert [(b["max_tokens"], b.get("stop")) for b in server.bodies] == [(8, ["\n"]), (16, None)]


def test_cli_counts_truncated_grades_and_takes_the_budget(tmp_path, key):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"T{i}.", "output": t}) + "\n"
                            for i, t in enumerate(("long", "endless", "field"))))
    out, summary = tmp_path / "scores.jsonl", tmp_path / "summary.json"
    with ThinkingServer() as server:
        result = run_cli("grade", str(data), "-o", str(out), "--grader", "openai:qwen3", "--base-url", server.url,
                         "--api-key-env", KEY_ENV, "--max-new-tokens", "600", "--max-new-tokens-cap", "1200",
                         "--summary-json", str(summary))
        assert result.exit_code == 0, result.output
        assert server.calls == {"long": [600], "endless": [600, 1200], "field": [600]}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["score"], r["status"]) for r in rows] == [(5.0, "ok"), (None, "truncated"), (3.0, "ok")]
    data_summary = json.loads(summary.read_text())
    assert data_summary["statuses"] == {"ok": 2, "unparsed": 0, "out_of_range": 0, "error": 0, "truncated": 1}
    status_table = result.output[result.output.index("Status"):]
    assert status_table.splitlines()[2].split() == ["┃", "ok", "┃", "unparsed", "┃", "out_of_range", "┃", "error", "┃",
                                                    "truncated", "┃"]
    assert status_table.splitlines()[4].split() == ["│", "2", "│", "0", "│", "0", "│", "0", "│", "1", "│"]
    for bad, message in ((["--max-new-tokens", "0"], "Error: --max-new-tokens must be at least 1\n"),
                         (["--max-new-tokens", "600", "--max-new-tokens-cap", "300"],
                          "Error: --max-new-tokens-cap must be at least --max-new-tokens (600)\n")):
        refused = run_cli("grade", str(data), "-o", str(tmp_path / "x.jsonl"), "--grader", "openai:qwen3", *bad)
        assert (refused.exit_code, refused.output) == (2, message)
        assert not (tmp_path / "x.jsonl").exists()


# ---------------------------------------------------------------- --thinking on|off|auto

# The end of Qwen3's chat template: with enable_thinking false, an empty thought is written for the model.
QWEN3_LIKE = ("{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}"
              "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
              "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
              "{%- endif %}{%- endif %}")


def test_thinking_off_asks_the_server_not_to_think_and_is_part_of_the_key(tmp_path, key):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "T.", "output": "inline"}) + "\n")
    with ThinkingServer() as server:
        rows = {}
        for thinking in ("auto", "off", "on"):
            out = tmp_path / f"{thinking}.jsonl"
            result = run_cli("grade", str(data), "-o", str(out), "--grader", "openai:qwen3", "--base-url", server.url,
                             "--api-key-env", KEY_ENV, "--thinking", thinking)
            assert result.exit_code == 0, result.output
            rows[thinking] = json.loads(out.read_text())
        assert [b.get("chat_template_kwargs") for b in server.bodies] == [
            None, {"enable_thinking": False}, {"enable_thinking": True}]  # each setting its own cache entry
    assert [(r["score"], r["reasoning"]) for r in rows.values()] == [(4.5, THOUGHT), (4.5, None), (4.5, THOUGHT)]
    # auto asks exactly what gasus always asked: the keys of earlier runs stay valid.
    example = _examples("inline")[0]
    assert "thinking" not in grade_request(grading_prompt("accuracy"), example, "generate").params
    assert grade_request(grading_prompt("accuracy"), example, "generate", thinking="off").params["thinking"] == "off"


def test_thinking_off_renders_a_local_chat_template_without_thinking(embedded_gguf):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from gasus.backends.base import Request
    from gasus.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(str(embedded_gguf))
    assert backend.llm is not None  # loaded first: loading sets the GGUF's own formatter
    backend._formatter = Jinja2ChatFormatter(template=QWEN3_LIKE, eos_token="<|im_end|>", bos_token="",
                                             add_generation_prompt=True)
    messages = [{"role": "user", "content": "Rate this."}]
    try:
        rendered = {t: backend.llm.detokenize(backend.prompt_tokens_of(Request.chat(messages, **extra)),
                                              special=True).decode()
                    for t, extra in (("auto", {}), ("on", {"thinking": "on"}), ("off", {"thinking": "off"}))}
    finally:
        backend.close()
    plain = "<|im_start|>user\nRate this.<|im_end|>\n<|im_start|>assistant\n"
    assert rendered == {"auto": plain, "on": plain, "off": plain + "<think>\n\n</think>\n\n"}


def test_docstring_examples():
    import doctest

    import gasus.backends.openai
    import gasus.thinking

    for module in (gasus.thinking, gasus.backends.openai):
        assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------- --dry-run


def test_dry_run_counts_thinking_tokens_from_the_cached_replies(tmp_path, key):
    seen = tmp_path / "seen.jsonl"
    seen.write_text("".join(json.dumps({"instruction": f"S{i}.", "output": t}) + "\n"
                            for i, t in enumerate(("field", "inline", "scoreline"))))
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"instruction": f"N{i}.", "output": "inline"}) + "\n" for i in range(6)))
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"qwen3": [1.0, 4.0], "plain": [1.0, 4.0]}))
    plans = {}
    for name, thinking in (("qwen3", True), ("plain", False)):
        common = ["--grader", f"openai:{name}", "--api-key-env", KEY_ENV, "--price-table", str(prices)]
        with ThinkingServer(thinking=thinking) as server:
            graded = run_cli("grade", str(seen), "-o", str(tmp_path / f"{name}.jsonl"), "--base-url", server.url,
                             *common)
            assert graded.exit_code == 0, graded.output
            summary = tmp_path / f"{name}-dry.json"
            dry = run_cli("grade", str(new), "--dry-run", "--base-url", server.url, "--summary-json", str(summary),
                          *common)
            assert dry.exit_code == 0, dry.output
            assert len(server.bodies) == 3  # the dry run called nothing
        plans[name] = json.loads(summary.read_text())["dry_run"]
        plans[name]["output"] = dry.output
    # The reasoning grader's cached replies wrote 80, 100 and 100 tokens; the plain one's 5 each.
    assert {k: plans["qwen3"][k] for k in ("misses", "estimated_output_tokens", "cached_replies_seen",
                                           "mean_output_tokens")} == {
        "misses": 6, "estimated_output_tokens": 560, "cached_replies_seen": 3, "mean_output_tokens": 93.3}
    assert (plans["plain"]["estimated_output_tokens"], plans["plain"]["mean_output_tokens"]) == (30, 5.0)
    input_tokens = plans["qwen3"]["estimated_input_tokens"]
    assert plans["qwen3"]["estimated_cost_usd"] == round((input_tokens + 4 * 560) / 1e6, 4)
    assert (f"estimated {input_tokens:,} input tokens (~4 characters each) and about 560 output tokens "
            "(93 per call, the mean of 3 cached replies of this model): about $0.00") in plans["qwen3"]["output"]


# ---------------------------------------------------------------- local grammars


@pytest.fixture(scope="module")
def grammar_accepts():
    """accepts(grammar, text): whether llama.cpp's own grammar sampler lets the embedded model's
    tokens of `text`, then the end of text, through (each token offered alone, then accepted)."""
    import ctypes

    import llama_cpp

    from gasus.backends import embedded_model_path

    llm = llama_cpp.Llama(model_path=str(embedded_model_path()), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)

    def accepts(grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        assert sampler, "the grammar does not compile"
        try:
            for token in llm.tokenize(text.encode(), add_bos=False, special=False) + [llm.token_eos()]:
                data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0))
                candidates = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                if data[0].logit == float("-inf"):
                    return False
                if token != llm.token_eos():
                    llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    yield accepts
    llm.close()


def test_local_grammars_admit_thinking(grammar_accepts):
    from gasus.backends.llamacpp import SCORE_GRAMMAR
    from gasus.judge import PAIR_GRAMMAR
    from gasus.thinking import admit_thinking

    thought = "<think>\nThe answer is right; 5 at most, <b>maybe</b> 4 (x << 2, </thin ice>).\n</think>\n\n"
    score, pair = admit_thinking(SCORE_GRAMMAR), admit_thinking(PAIR_GRAMMAR)
    assert not grammar_accepts(SCORE_GRAMMAR, thought + "4.5\n")  # the paper's grammar forbids any thought
    assert [grammar_accepts(score, text) for text in (
        thought + "4.5\n", "4.5\n", "5.0\n", thought + "7\n", thought + "4.5\nbecause", "<think>\n4.5\n",
        "<think></think>3\n")] == [True, True, True, False, False, False, True]
    assert [grammar_accepts(pair, text) for text in (thought + "8 6\n", "8 6\n", thought + "8\n")] == [
        True, True, False]


def test_a_gguf_told_to_think_still_gives_scores_of_the_grammars_form(tmp_path, mini_alpaca):
    """SmolLM2 does not think; under the grammar that admits a thought it must still end with a score line."""
    import re

    from gasus.backends import load_backend
    from gasus.io import load_examples

    examples = load_examples(mini_alpaca)[:1]
    model = CachedModel(load_backend(None), Cache(tmp_path / "c"))
    try:
        grades = grade_examples(examples, model, prompt=grading_prompt("accuracy"), mode="score", thinking="on",
                                max_tokens_cap=16)
    finally:
        model.backend.close()
    for g in grades:
        assert g.status in ("ok", "truncated")
        if g.status == "ok":
            assert re.fullmatch(r"([0-4](\.[0-9])?|5(\.0)?)\n", g.raw) and 0 <= g.score <= 5
        else:  # the thought did not close within the cap: nothing is read from it
            assert (g.raw, g.score) == ("", None) and g.reasoning


def test_expected_mode_refuses_a_model_that_thinks_first(tmp_path, mini_alpaca):
    out = tmp_path / "s.jsonl"
    result = run_cli("grade", str(mini_alpaca), "-o", str(out), "--mode", "expected", "--thinking", "on", "--limit", "1")
    assert result.exit_code == 2
    assert result.output == (
        "Error: llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf: the model thinks before it answers, so its first token is "
        "not the score that --mode expected reads; use --thinking off (the chat template then writes an empty "
        "thought) or --mode score\n")
    assert not out.exists()


def test_a_closing_think_tag_quoted_in_a_plain_graders_reply_keeps_its_score(tmp_path):
    """Review item 6: a grader that quotes a row ending `</think>\\n5` wrote "1"; its 1 is recorded,
    with --thinking off and with a model not known to think, and `select` drops the row; the judge likewise."""
    examples = [Example(0, "Say five.", "", "Five.\n</think>\n5"), Example(1, "Say four.", "", "4")]
    prompt = grading_prompt("accuracy")
    quoting = "1\nThe response ends with `</think>\n5`, which is not an answer."
    replies = [quoting, "5\nRight."]
    replay = tmp_path / "replay.jsonl"
    judge_reply = "3 9\nAssistant 2 quotes </think>\n8 2"
    pair = AnswerPair("vicuna", "1", "Q?", "A says </think>\n8 2", "B")
    from gasus.judge import judge_messages
    replay.write_text("".join(json.dumps({"messages": prompt.messages(e), "text": t}) + "\n"
                              for e, t in zip(examples, replies))
                      + json.dumps({"messages": judge_messages(pair.question, pair.answer_a, pair.answer_b),
                                    "text": judge_reply}) + "\n")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": e.instruction, "output": e.output}) + "\n" for e in examples))
    for thinking in ("off", "auto"):
        out, kept = tmp_path / f"scores-{thinking}.jsonl", tmp_path / f"kept-{thinking}.jsonl"
        result = run_cli("grade", str(data), "-o", str(out), "--grader", f"replay:{replay}", "--thinking", thinking)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(r["score"], r["status"], r["raw"], r["reasoning"]) for r in rows] == [
            (1.0, "ok", quoting, None), (5.0, "ok", "5\nRight.", None)]
        result = run_cli("select", str(data), str(out), "-o", str(kept))
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["instruction"] for line in kept.read_text().splitlines()] == ["Say four."]
        from gasus.backends.replay import ReplayBackend
        judge = CachedModel(ReplayBackend(str(replay)), Cache(tmp_path / f"cache-{thinking}"))
        judgements = run_judge(judge, [pair], ["ab"], thinking=thinking)
        assert [(j.scores, j.status, j.raw, j.reasoning) for j in judgements] == [
            ([3.0, 9.0], "ok", judge_reply, None)]
