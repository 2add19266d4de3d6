"""The builders' conventions: logprobs (chat and legacy), reasoning models, echo models."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from fakeai.content import InvalidRequestValue, build_chat_completion, build_text_completion
from fakeai.content.echo import is_echo_model, last_user_text
from fakeai.content.reasoning import is_reasoning_model
from fakeai.content.tokenizer import split_pieces

MESSAGES = [{"role": "user", "content": "Tell me about streams."}]


def chat(model: str = "gpt-4o", seed: int | None = 7, **body: Any) -> dict[str, Any]:
    return build_chat_completion(
        {"model": model, "messages": MESSAGES, **body}, completion_id="c", created=1, seed=seed
    )


def completion(model: str = "gpt-4o", **body: Any) -> dict[str, Any]:
    body.setdefault("prompt", "Once upon a time")
    return build_text_completion({"model": model, **body}, completion_id="c", created=1, seed=7)


# -- chat logprobs -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 5, 20])
def test_chat_logprobs_shape_and_order(k: int) -> None:
    choice = chat(logprobs=True, top_logprobs=k, max_tokens=40)["choices"][0]
    pieces = split_pieces(choice["message"]["content"])
    content = choice["logprobs"]["content"]
    assert choice["logprobs"]["refusal"] is None
    assert [e["token"] for e in content] == pieces
    for entry in content:
        assert entry["logprob"] <= 0
        assert entry["bytes"] == list(entry["token"].encode())
        top = entry["top_logprobs"]
        assert len(top) == k
        assert len({t["token"] for t in top}) == k
        if k:
            assert entry["token"] in {t["token"] for t in top}
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert sum(2.718281828 ** t["logprob"] for t in top) <= 1.0 + 1e-6


def test_chat_logprobs_are_plausible_and_leave_the_text_alone() -> None:
    plain = chat(max_tokens=200, ignore_eos=True)
    with_lp = chat(max_tokens=200, ignore_eos=True, logprobs=True)
    assert with_lp["choices"][0]["message"] == plain["choices"][0]["message"]
    assert plain["choices"][0]["logprobs"] is None
    values = [e["logprob"] for e in with_lp["choices"][0]["logprobs"]["content"]]
    assert len(values) == 200
    assert statistics.median(values) > -0.1  # most tokens near certain
    assert min(values) < -0.7  # some real choices


def test_chat_logprobs_deterministic_per_seed() -> None:
    assert chat(logprobs=True, top_logprobs=3) == chat(logprobs=True, top_logprobs=3)
    a = chat(seed=1, logprobs=True)["choices"][0]["logprobs"]
    b = chat(seed=2, logprobs=True)["choices"][0]["logprobs"]
    assert a != b


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ],
)
def test_chat_logprobs_bad_values_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestValue) as info:
        chat(**body)
    assert info.value.param == param


# -- legacy logprobs -----------------------------------------------------------------------------


def test_legacy_logprobs_columns_and_offsets() -> None:
    choice = completion(logprobs=2, max_tokens=30)["choices"][0]
    lp = choice["logprobs"]
    pieces = split_pieces(choice["text"])
    assert lp["tokens"] == pieces
    assert len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(pieces)
    prompt_len = len("Once upon a time")
    assert lp["text_offset"][0] == prompt_len
    ends = [prompt_len + len("".join(pieces[: i + 1])) for i in range(len(pieces))]
    assert lp["text_offset"][1:] == ends[:-1]
    for token, value, top in zip(
        lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True
    ):
        assert value <= 0
        assert top[token] == value
        assert 1 <= len(top) <= 3


def test_legacy_logprobs_with_echo_start_at_the_prompt_with_no_logprob() -> None:
    choice = completion(logprobs=0, echo=True, max_tokens=5)["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith("Once upon a time")
    assert lp["tokens"] == split_pieces(choice["text"])
    assert lp["text_offset"][0] == 0
    assert lp["token_logprobs"][0] is None
    assert lp["top_logprobs"][0] is None
    assert all(len(top) == 1 for top in lp["top_logprobs"][1:])


def test_legacy_logprobs_above_five_are_refused() -> None:
    with pytest.raises(InvalidRequestValue) as info:
        completion(logprobs=6)
    assert info.value.param == "logprobs"
    assert completion(logprobs=False)["choices"][0]["logprobs"] is None


# -- reasoning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("o1-pro", True),
        ("deepseek-ai/DeepSeek-R1", True),
        ("deepseek-r1-0528", True),
        ("gpt-oss-20b", True),
        ("Qwen/Qwen3-8B", True),
        ("claude-sonnet-thinking", True),
        ("gpt-4o", False),
        ("meta-llama/Llama-3.1-8B-Instruct", False),
        ("deepseek-v3", False),
        ("omni-model", False),
    ],
)
def test_is_reasoning_model(model: str, expected: bool) -> None:
    assert is_reasoning_model(model) is expected


def test_reasoning_model_thinks_first_and_counts_it() -> None:
    full = chat(model="o3")
    message = full["choices"][0]["message"]
    thinking = len(split_pieces(message["reasoning_content"]))
    answer = len(split_pieces(message["content"]))
    assert thinking >= 64  # the medium budget
    usage = full["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == thinking
    assert usage["completion_tokens"] == thinking + answer
    assert "reasoning_content" not in chat()["choices"][0]["message"]


@pytest.mark.parametrize("cap", [1, 2, 9, 40])
def test_max_tokens_counts_reasoning_and_answer(cap: int) -> None:
    full = chat(model="deepseek-r1", max_tokens=cap)
    choice = full["choices"][0]
    assert full["usage"]["completion_tokens"] == cap
    assert choice["finish_reason"] == "length"
    reasoning = full["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning == max(1, cap // 2)
    assert len(split_pieces(choice["message"]["content"])) == cap - reasoning


def test_reasoning_effort_sets_the_budget_and_none_turns_it_off() -> None:
    def thinking(effort: str) -> int:
        usage = chat(model="o3", reasoning_effort=effort)["usage"]
        return int(usage["completion_tokens_details"]["reasoning_tokens"])

    assert 8 <= thinking("minimal") <= 16
    assert 160 <= thinking("high") <= 320
    assert thinking("none") == 0
    off = chat(model="o3", reasoning_effort="none")["choices"][0]["message"]
    assert "reasoning_content" not in off


def test_reasoning_flag_overrides_the_name() -> None:
    full = build_chat_completion(
        {"model": "o3", "messages": MESSAGES}, completion_id="c", created=1, seed=1, reasoning=False
    )
    assert full["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_reasoning_before_a_tool_call() -> None:
    tool = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
    message = chat(model="o3", tools=[tool])["choices"][0]["message"]
    assert message["reasoning_content"]
    assert message["tool_calls"]


# -- echo ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("echo", True),
        ("echo-gpt-4o", True),
        ("org/Echo-llama-3.1-8b", True),
        ("echoes", False),
        ("gpt-4o", False),
    ],
)
def test_is_echo_model(model: str, expected: bool) -> None:
    assert is_echo_model(model) is expected


def test_echo_answers_with_the_last_user_message() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": t} for t in ("Hello, ", "echo!")]},
    ]
    full = build_chat_completion(
        {"model": "echo", "messages": messages, "n": 2}, completion_id="a", created=1, seed=None
    )
    assert [c["message"]["content"] for c in full["choices"]] == ["Hello, echo!"] * 2
    assert full["usage"]["completion_tokens"] == 2 * len(split_pieces("Hello, echo!"))
    assert last_user_text([]) == ""


def test_echo_honours_the_cap_and_stop_and_never_reasons() -> None:
    capped = chat(model="echo-deepseek-r1", max_tokens=3)
    assert capped["choices"][0]["message"]["content"] == "Tell me about"
    assert capped["choices"][0]["finish_reason"] == "length"
    assert "reasoning_content" not in capped["choices"][0]["message"]
    stopped = chat(model="echo", stop=[" about"])["choices"][0]
    assert (stopped["message"]["content"], stopped["finish_reason"]) == ("Tell me", "stop")


def test_echo_completion_is_its_prompt() -> None:
    full = completion(model="echo", prompt=["one two", "three"])
    assert [c["text"] for c in full["choices"]] == ["one two", "three"]
    assert full["usage"]["completion_tokens"] == 3
