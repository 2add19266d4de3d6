"""The Responses API builder: events in OpenAI's order, numbering, tokens, determinism, and the
agent-loop rule shared with chat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fakeai.content import build_chat_completion
from fakeai.content.responses_api import build_response
from fakeai.content.responses_input import chat_body, input_items

RID = "resp_0123456789abcdef0123456789abcdef012"
TOOL = {"type": "function", "name": "get", "parameters": {"type": "object", "properties": {}}}


def _build(body: dict[str, Any], **kw: Any) -> Any:
    return build_response(body, response_id=RID, created_at=1, seed=None, model="gpt-4o", **kw)


def test_text_events_numbered_and_token_counts_match_usage() -> None:
    built = _build({"input": "hi", "max_output_tokens": 20})
    events = built.events
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert all(next(iter(e)) == "type" for e in events)  # the edge reads the type off the head
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert sum(built.tokens) == len(deltas) == built.response["usage"]["output_tokens"] == 20
    assert events[-1]["type"] == "response.incomplete"
    assert built.response["incomplete_details"] == {"reason": "max_output_tokens"}
    text = "".join(d["delta"] for d in deltas)
    assert built.response["output"][0]["content"][0]["text"] == text


def test_same_request_same_events() -> None:
    assert _build({"input": "hi"}).events == _build({"input": "hi"}).events


def test_function_call_then_tool_result_answers_in_text() -> None:
    first = _build({"input": "go", "tools": [TOOL]})
    (call,) = first.response["output"]
    assert call["type"] == "function_call"
    assert first.events[-1]["type"] == "response.completed"
    follow = {
        "input": [
            {"role": "user", "content": "go"},
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "42"},
        ],
        "tools": [TOOL],
    }
    assert [o["type"] for o in _build(follow).response["output"]] == ["message"]
    forced = _build({**follow, "tool_choice": "required"})
    assert [o["type"] for o in forced.response["output"]] == ["function_call"]
    named = _build({**follow, "tool_choice": {"type": "function", "name": "get"}})
    assert [o["type"] for o in named.response["output"]] == ["function_call"]


@pytest.mark.parametrize(
    ("choice", "expect_call"),
    [
        (None, False),
        ("auto", False),
        ("required", True),
        ({"type": "function", "function": {"name": "get"}}, True),
    ],
)
def test_chat_answers_a_tool_result_in_text_unless_forced(choice: Any, expect_call: bool) -> None:
    body: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "get"}}],
    }
    if choice is not None:
        body["tool_choice"] = choice
    message = build_chat_completion(body, completion_id="c", created=1, seed=3)["choices"][0]
    assert ("tool_calls" in message["message"]) is expect_call


def test_reasoning_counts_in_usage_and_the_cap() -> None:
    built = _build({"input": "hi", "max_output_tokens": 40}, reasoning_model=True)
    usage = built.response["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    assert usage["output_tokens"] <= 40
    assert sum(built.tokens) == usage["output_tokens"]
    assert not any("reasoning_summary" in e["type"] for e in built.events)  # not asked for
    off = _build({"input": "hi", "reasoning": {"effort": "none"}}, reasoning_model=True)
    assert off.response["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_json_schema_format_gives_valid_json() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"format": {"type": "json_schema", "name": "x", "schema": schema, "strict": True}}
    text = _build({"input": "hi", "text": fmt}).response["output"][0]["content"][0]["text"]
    assert isinstance(json.loads(text)["n"], int)


def test_chat_body_translation_and_input_items() -> None:
    body = {
        "instructions": "be brief",
        "input": "hello",
        "max_output_tokens": 30,
        "tools": [TOOL, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get"},
    }
    chat = chat_body(body)
    assert chat["messages"] == [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert chat["max_completion_tokens"] == 30
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get", "parameters": TOOL["parameters"]}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get"}}
    (item,) = input_items(body, RID)
    assert item["content"] == [{"type": "input_text", "text": "hello"}]
    assert item["id"] == input_items(body, RID)[0]["id"]  # stable
