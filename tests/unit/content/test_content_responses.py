"""Response builders: OpenAI shapes, determinism, length controls, tools, validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakeai.content import (
    InvalidRequestValue,
    build_chat_completion,
    build_text_completion,
    count_prompt_tokens,
    split_pieces,
)
from fakeai.content.responses import NATURAL_MIN

MESSAGES = [{"role": "user", "content": "Tell me something."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "hourly": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {}}}


def chat(
    body: dict[str, Any], *, cid: str = "chatcmpl-test", seed: int | None = 7
) -> dict[str, Any]:
    return build_chat_completion(
        {"model": "gpt-4o", "messages": MESSAGES, **body},
        completion_id=cid,
        created=1700,
        seed=seed,
    )


def text_of(resp: dict[str, Any], i: int = 0) -> str:
    content = resp["choices"][i]["message"]["content"]
    assert isinstance(content, str)
    return content


def test_chat_completion_shape() -> None:
    resp = chat({})
    assert list(resp) == [
        "id", "object", "created", "model", "choices", "usage", "system_fingerprint"
    ]  # fmt: skip
    assert (resp["id"], resp["object"], resp["created"], resp["model"]) == (
        "chatcmpl-test",
        "chat.completion",
        1700,
        "gpt-4o",
    )
    assert resp["system_fingerprint"].startswith("fp_")
    (choice,) = resp["choices"]
    assert choice["index"] == 0
    assert choice["logprobs"] is None
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["refusal"] is None
    assert "tool_calls" not in choice["message"]
    usage = resp["usage"]
    assert usage["prompt_tokens"] == count_prompt_tokens(MESSAGES)
    assert usage["completion_tokens"] == len(split_pieces(text_of(resp)))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    json.dumps(resp)  # JSON-compatible


def test_same_body_and_seed_give_same_text_other_seeds_differ() -> None:
    assert chat({}, seed=1) == chat({}, seed=1)
    assert text_of(chat({}, seed=1)) != text_of(chat({}, seed=2))


def test_without_seed_the_completion_id_is_the_seed() -> None:
    a = chat({}, cid="chatcmpl-a", seed=None)
    assert a == chat({}, cid="chatcmpl-a", seed=None)
    assert text_of(a) != text_of(chat({}, cid="chatcmpl-b", seed=None))


def test_body_seed_is_used_when_no_seed_argument() -> None:
    assert text_of(chat({"seed": 5}, cid="x", seed=None)) == text_of(chat({}, cid="y", seed=5))


def test_model_argument_overrides_body_model() -> None:
    resp = build_chat_completion(
        {"model": "a", "messages": MESSAGES}, completion_id="c", created=1, seed=1, model="b"
    )
    assert resp["model"] == "b"


def test_n_choices_each_with_own_text_and_usage_summed() -> None:
    resp = chat({"n": 3})
    texts = [text_of(resp, i) for i in range(3)]
    assert [c["index"] for c in resp["choices"]] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert resp["usage"]["completion_tokens"] == sum(len(split_pieces(t)) for t in texts)
    assert resp["usage"]["prompt_tokens"] == count_prompt_tokens(MESSAGES)


def test_natural_length_ends_a_sentence() -> None:
    for seed in range(30):
        resp = chat({}, seed=seed)
        text = text_of(resp)
        assert len(split_pieces(text)) >= NATURAL_MIN
        assert text[-1] in ".!?"
        assert resp["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_with_finish_length(field: str) -> None:
    for seed in range(20):
        resp = chat({field: 10, "min_tokens": 10, "ignore_eos": False}, seed=seed)
        assert len(split_pieces(text_of(resp))) == 10
        assert resp["choices"][0]["finish_reason"] in ("length", "stop")
        capped = chat({field: 5}, seed=seed)
        assert len(split_pieces(text_of(capped))) == 5
        assert capped["choices"][0]["finish_reason"] == "length"
        assert capped["usage"]["completion_tokens"] == 5


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    resp = chat({"max_tokens": 50, "max_completion_tokens": 3})
    assert resp["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("max_tokens", [1, 2, 7, 64, 333, 1024])
def test_ignore_eos_gives_exactly_max_tokens(max_tokens: int) -> None:
    resp = chat({"max_tokens": max_tokens, "ignore_eos": True, "n": 2})
    for i in range(2):
        assert len(split_pieces(text_of(resp, i))) == max_tokens
        assert resp["choices"][i]["finish_reason"] == "length"
    assert resp["usage"]["completion_tokens"] == 2 * max_tokens


def test_min_tokens_is_a_floor() -> None:
    for seed in range(10):
        assert len(split_pieces(text_of(chat({"min_tokens": 400}, seed=seed)))) >= 400


@pytest.mark.parametrize("stop", [".", [",", "."], "the", ["zzz-never", "?"]])
def test_stop_cuts_before_first_occurrence(stop: str | list[str]) -> None:
    stops = [stop] if isinstance(stop, str) else stop
    hits = 0
    for seed in range(20):
        full = text_of(chat({"min_tokens": 200}, seed=seed))
        resp = chat({"min_tokens": 200, "stop": stop}, seed=seed)
        text = text_of(resp)
        assert full.startswith(text)
        assert not any(s in text for s in stops)
        assert resp["choices"][0]["finish_reason"] == "stop"
        assert resp["usage"]["completion_tokens"] == len(split_pieces(text))
        positions = [full.find(s) for s in stops if s in full]
        if positions:
            hits += 1
            assert len(text) == min(positions)
    assert hits > 0


def test_tool_call_from_first_tool_with_schema_arguments() -> None:
    resp = chat({"tools": [WEATHER_TOOL, TIME_TOOL]})
    (choice,) = resp["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert len(call["id"]) == 29
    assert call["function"]["name"] == "get_weather"
    args = json.loads(call["function"]["arguments"])
    assert set(args) == {"city", "unit", "days", "hourly", "tags"}
    assert args["unit"] in ("celsius", "fahrenheit")
    assert 1 <= args["days"] <= 7
    assert isinstance(args["hourly"], bool)
    assert all(isinstance(t, str) for t in args["tags"])
    assert resp["usage"]["completion_tokens"] == len(split_pieces(call["function"]["arguments"]))


def test_tool_choice_names_a_function() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    resp = chat({"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": choice})
    call = resp["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_time", "arguments": "{}"}


def test_tool_choice_none_answers_in_text() -> None:
    resp = chat({"tools": [WEATHER_TOOL], "tool_choice": "none"})
    assert "tool_calls" not in resp["choices"][0]["message"]
    assert text_of(resp)


def test_json_object_response_format_is_valid_json() -> None:
    for seed in range(10):
        resp = chat({"response_format": {"type": "json_object"}}, seed=seed)
        assert isinstance(json.loads(text_of(resp)), dict)


def test_json_schema_response_format_follows_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    data = json.loads(text_of(chat({"response_format": fmt})))
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"n": "2"}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
        ({"max_tokens": 5, "min_tokens": 6}, "min_tokens"),
        ({"stop": 5}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ValueError, match=param) as info:
        chat(body)
    assert isinstance(info.value, InvalidRequestValue)
    assert info.value.param == param


def completion(body: dict[str, Any], seed: int | None = 3) -> dict[str, Any]:
    return build_text_completion(
        {"model": "gpt-3.5-turbo-instruct", **body}, completion_id="cmpl-t", created=9, seed=seed
    )


def test_text_completion_shape_and_prompt_list_times_n() -> None:
    resp = completion({"prompt": ["Once upon", "In a galaxy"], "n": 2, "max_tokens": 6})
    assert (resp["id"], resp["object"], resp["created"]) == ("cmpl-t", "text_completion", 9)
    assert [c["index"] for c in resp["choices"]] == [0, 1, 2, 3]
    for c in resp["choices"]:
        assert list(c) == ["text", "index", "logprobs", "finish_reason"]
        assert c["logprobs"] is None
        assert c["finish_reason"] == "length"
        assert len(split_pieces(c["text"])) == 6
        assert c["text"].startswith(" ")
    assert resp["usage"]["completion_tokens"] == 24
    assert resp["usage"]["prompt_tokens"] == count_prompt_tokens(["Once upon", "In a galaxy"])


def test_text_completion_echo_prefixes_prompt() -> None:
    plain = completion({"prompt": "Hello", "max_tokens": 4})
    echoed = completion({"prompt": "Hello", "max_tokens": 4, "echo": True})
    assert echoed["choices"][0]["text"] == "Hello" + plain["choices"][0]["text"]
    assert echoed["usage"]["completion_tokens"] == 4


def test_text_completion_token_id_prompts() -> None:
    resp = completion({"prompt": [1, 2, 3], "max_tokens": 2})
    assert len(resp["choices"]) == 1
    assert resp["usage"]["prompt_tokens"] == 3
    resp = completion({"prompt": [[1, 2], [3]], "max_tokens": 2})
    assert len(resp["choices"]) == 2
    assert resp["usage"]["prompt_tokens"] == 3


@pytest.mark.parametrize("prompt", [None, [], 5, [1, "a"], {"a": 1}])
def test_text_completion_bad_prompt(prompt: Any) -> None:
    with pytest.raises(InvalidRequestValue, match="prompt"):
        completion({"prompt": prompt})
