"""The llamacpp backend against the real embedded SmolLM2-135M GGUF at temperature 0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gasus.backends import BackendOptions, CachedModel, Request, load_backend
from gasus.backends.llamacpp import (
    PREFIX_BLOCK,
    LlamaCppBackend,
    gguf_chat_template,
    runtime_version,
)
from gasus.cache import Cache
from gasus.errors import BackendError
from gasus.grade import grade_from_value, grade_request, grading_prompt
from gasus.io import load_examples

# One thread: the suite shares small CI machines, and results do not depend on the thread count.
ONE_THREAD = BackendOptions(n_threads=1)


@pytest.fixture(scope="module")
def backend():
    """One loaded model for the module (loading costs about a second)."""
    from gasus.backends import embedded_model_path

    b = LlamaCppBackend(str(embedded_model_path()), ONE_THREAD)
    yield b
    b.close()


@pytest.fixture(scope="module")
def examples():
    return load_examples(Path(__file__).resolve().parent.parent / "fixtures" / "mini_alpaca.json")


def test_default_spec_is_the_embedded_model(embedded_gguf):
    b = load_backend(None)
    assert isinstance(b, LlamaCppBackend)
    assert b.target == str(embedded_gguf)
    assert b.label == "llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf"


def test_identity_and_params_come_from_the_file_without_loading_the_model(embedded_gguf, tmp_path):
    b = LlamaCppBackend(str(embedded_gguf))
    b.cache = Cache(tmp_path / "c")
    assert b.identity() == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    params = b.cache_params()
    assert params["runtime"] == f"llama-cpp-python {runtime_version()}"
    assert params["chat_template"].startswith("{% for message in messages %}")
    assert "<|im_start|>assistant\n" in params["chat_template"]
    assert params["extra_buffers"] is False
    assert b._llm is None


def test_header_reader_matches_the_gguf_package(embedded_gguf, tmp_path):
    from gguf import GGUFReader

    field = GGUFReader(str(embedded_gguf)).fields["tokenizer.chat_template"]
    expected = bytes(field.parts[field.data[0]]).decode("utf-8")
    cache = Cache(tmp_path / "c")
    assert gguf_chat_template(embedded_gguf, cache) == expected
    assert gguf_chat_template(embedded_gguf, cache) == expected  # memoised: served from the cache
    assert sum(1 for k, _ in cache.entries() if k.startswith("chat-template:")) == 1


def test_not_a_gguf_file(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="not a readable GGUF file"):
        gguf_chat_template(bogus)
    with pytest.raises(BackendError, match="no such model file"):
        LlamaCppBackend(str(tmp_path / "missing.gguf")).complete(Request.raw("hi", max_tokens=1))


def test_chat_and_raw_completions_are_greedy_and_deterministic(backend, embedded_gguf):
    """Greedy text is a property of the CPU's kernels (AVX2, AVX-512, AMX round differently),
    so this asserts what holds everywhere: the same request gives the same completion, from this
    model and from a freshly loaded one, with exact prompt token counts and a consistent finish."""
    chat_request = Request.chat([{"role": "user", "content": "Name a primary color."}], max_tokens=12, temperature=0)
    raw_request = Request.raw("The capital of France is", max_tokens=6)
    chat, raw = backend.complete(chat_request), backend.complete(raw_request)
    assert backend.complete(chat_request) == chat and backend.complete(raw_request) == raw
    fresh = LlamaCppBackend(str(embedded_gguf), ONE_THREAD)
    try:
        assert fresh.complete(raw_request) == raw and fresh.complete(chat_request) == chat
    finally:
        fresh.close()
    for value, prompt_tokens, limit in ((chat, 35, 12), (raw, 5, 6)):
        assert set(value) == {"text", "finish_reason", "usage"}
        assert isinstance(value["text"], str) and value["text"].strip()
        assert value["usage"]["prompt_tokens"] == prompt_tokens
        assert 1 <= value["usage"]["completion_tokens"] <= limit
        assert value["finish_reason"] == ("length" if value["usage"]["completion_tokens"] == limit else "stop")


SCORE_LINE = re.compile(r"[0-4](\.\d)?|5(\.0)?")


def test_score_mode_writes_only_a_score_line(backend, examples):
    """The grammar holds the model to one number in 0..5, whatever number a CPU's rounding picks."""
    prompt = grading_prompt("accuracy")
    for example in examples[:3]:
        request = grade_request(prompt, example, "score")
        text = backend.complete(request)["text"]
        assert SCORE_LINE.fullmatch(text), text
        assert backend.complete(request)["text"] == text
        grade = grade_from_value({"text": text}, "score")
        assert (grade["status"], grade["score"]) == ("ok", float(text))


# Recorded on an Intel CPU with AMX; an AVX2-only build differs by up to about 0.03 per probability.
RECORDED_PROBS = {"0": 0.403907, "1": 0.379313, "2": 0.058479, "3": 0.031592, "4": 0.046419, "5": 0.08029}
PROB_TOLERANCE = 0.05


def test_expected_mode_reads_score_probabilities(backend, examples):
    prompt = grading_prompt("accuracy")
    value = backend.complete(grade_request(prompt, examples[0], "expected"))
    assert sorted(value["logprobs"]) == ["0", "1", "2", "3", "4", "5"]
    assert backend.complete(grade_request(prompt, examples[0], "expected")) == value
    grade = grade_from_value(value, "expected")
    probs = grade["probs"]
    assert (grade["status"], grade["raw"], sorted(probs)) == ("ok", value["text"], sorted(RECORDED_PROBS))
    assert sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert all(abs(probs[k] - RECORDED_PROBS[k]) <= PROB_TOLERANCE for k in probs), probs
    assert grade["score"] == pytest.approx(sum(int(k) * p for k, p in probs.items()), abs=1e-5)
    assert abs(grade["score"] - 1.178174) <= 3 * PROB_TOLERANCE
    assert grade["top_score"] == float(max(probs, key=probs.get))


def test_prefix_reuse_gives_the_logits_of_a_fresh_model(backend, examples, embedded_gguf):
    """The KV cache of the shared prompt prefix is reused, and grades do not depend on history."""
    prompt = grading_prompt("accuracy")
    requests = [grade_request(prompt, examples[i], "expected") for i in (3, 4)]
    before_prompt, before_eval = backend.prompt_tokens, backend.evaluated_tokens
    warm = [backend.complete(r) for r in requests]
    evaluated = backend.evaluated_tokens - before_eval
    total = backend.prompt_tokens - before_prompt
    assert total - evaluated >= PREFIX_BLOCK  # the second prompt reused a block or more
    fresh = LlamaCppBackend(str(embedded_gguf), ONE_THREAD)
    try:
        cold = [fresh.complete(r) for r in reversed(requests)][::-1]
    finally:
        fresh.close()
    assert warm == cold


def test_context_overflow_is_a_request_error(embedded_gguf):
    b = LlamaCppBackend(str(embedded_gguf), BackendOptions(n_ctx=64, n_threads=1))
    try:
        with pytest.raises(BackendError, match="exceeds the context of 64"):
            b.complete(Request.chat([{"role": "user", "content": "word " * 80}], max_tokens=8))
    finally:
        b.close()


def test_a_fully_cached_rerun_does_not_load_the_model(embedded_gguf, tmp_path):
    requests = [Request.raw("One, two,", max_tokens=3), Request.raw("Red, green,", max_tokens=3)]
    first = CachedModel(LlamaCppBackend(str(embedded_gguf), ONE_THREAD), Cache(tmp_path / "c"))
    results = first.run(requests)
    first.backend.close()
    assert first.stats.model_calls == 2
    again = CachedModel(LlamaCppBackend(str(embedded_gguf)), Cache(tmp_path / "c"))
    assert [r.value for r in again.run(requests)] == [r.value for r in results]
    assert again.stats.model_calls == 0 and again.stats.cache_hits == 2
    assert again.backend._llm is None


def test_another_model_file_never_reuses_grades(embedded_gguf, tmp_path):
    import shutil

    copy = tmp_path / "other.gguf"
    shutil.copyfile(embedded_gguf, copy)
    with open(copy, "ab") as handle:
        handle.write(b"\0")  # same weights, different bytes: another identity
    cache = Cache(tmp_path / "c")
    request = Request.raw("hi", max_tokens=1)
    a = CachedModel(LlamaCppBackend(str(embedded_gguf)), cache)
    b = CachedModel(LlamaCppBackend(str(copy)), cache)
    assert a.key(request) != b.key(request)
