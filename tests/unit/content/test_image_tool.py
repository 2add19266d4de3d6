"""The Responses API's image tool: when a turn draws (table), the call's events in OpenAI's
order with PNGs that decode, its item folded from a log cut anywhere, and bad options."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from tests.support.png import png_size_b64

from fakeai.content import InvalidRequestValue
from fakeai.content.image_tool import check_image_tools
from fakeai.content.responses_api import build_response
from fakeai.services.edge.response_fold import fold_response
from fakeai.streams.log import Entry, Kind

RID = "resp_0123456789abcdef0123456789abcdef012"
IMAGE = {"type": "image_generation", "partial_images": 2, "size": "256x256"}
FUNCTION = {"type": "function", "name": "get", "parameters": {"type": "object", "properties": {}}}


def _build(body: dict[str, Any], seed: int | None = None) -> Any:
    return build_response(body, response_id=RID, created_at=1, seed=seed, model="gpt-4o")


@pytest.mark.parametrize(
    ("input_", "tools", "choice", "expected"),
    [
        ("Draw a lighthouse", [IMAGE], None, ["image_generation_call", "message"]),
        ("an IMAGE of the sea, please", [IMAGE], "auto", ["image_generation_call", "message"]),
        ("Two photos", [IMAGE], None, ["image_generation_call", "message"]),
        ("Imagine a lighthouse", [IMAGE], None, ["message"]),  # a word, not a substring
        ("Hello", [IMAGE], None, ["message"]),
        ("Hello", [IMAGE], {"type": "image_generation"}, ["image_generation_call", "message"]),
        ("Hello", [IMAGE], "required", ["image_generation_call", "message"]),
        ("Draw a lighthouse", [IMAGE], "none", ["message"]),
        ("Hello", [IMAGE, FUNCTION], "required", ["function_call"]),
        ("Draw it", [IMAGE, FUNCTION], None, ["image_generation_call", "message"]),
        ("Draw it", [IMAGE, FUNCTION], {"type": "function", "name": "get"}, ["function_call"]),
        ("Draw it", [FUNCTION], None, ["function_call"]),
    ],
)
def test_when_a_turn_draws(input_: str, tools: list[Any], choice: Any, expected: list[str]) -> None:
    body: dict[str, Any] = {"input": input_, "tools": tools}
    if choice is not None:
        body["tool_choice"] = choice
    assert [item["type"] for item in _build(body).response["output"]] == expected


def test_a_later_turn_that_does_not_ask_does_not_draw() -> None:
    history = [{"role": "user", "content": "Draw a cat"}, {"role": "assistant", "content": "ok"}]
    body = {"input": [*history, {"role": "user", "content": "Thanks"}], "tools": [IMAGE]}
    assert [item["type"] for item in _build(body).response["output"]] == ["message"]


def test_call_events_in_openai_order_with_pngs_that_decode() -> None:
    built = _build({"input": "Draw a lighthouse", "tools": [IMAGE]})
    types = [e["type"] for e in built.events]
    head = types[: types.index("response.output_item.done") + 1]
    assert head == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
        "response.image_generation_call.partial_image",
        "response.image_generation_call.partial_image",
        "response.image_generation_call.completed",
        "response.output_item.done",
    ]
    assert types[-1] == "response.completed"
    added, done = built.events[2]["item"], built.events[8]["item"]
    assert added["id"].startswith("ig_")
    assert (added["status"], added["result"]) == ("in_progress", None)
    partials = [e for e in built.events if e["type"].endswith("partial_image")]
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    assert all(p["item_id"] == added["id"] and p["output_index"] == 0 for p in partials)
    images = [p["partial_image_b64"] for p in partials] + [done["result"]]
    assert [png_size_b64(b) for b in images] == [(256, 256)] * 3
    assert len(set(images)) == 3  # each partial refines the picture
    assert done["status"] == "completed"
    assert done["revised_prompt"] == "Draw a lighthouse"
    assert built.response["output"][0] == done
    usage = built.response["tool_usage"]["image_gen"]
    paced = [t for e, t in zip(built.events, built.tokens, strict=True) if "image_gen" in e["type"]]
    assert sum(paced) == usage["output_tokens"] > 0  # paced like the images endpoint
    assert built.response["usage"]["output_tokens"] == sum(built.tokens) - sum(paced)


def test_same_seed_same_picture_and_no_seed_varies_by_response() -> None:
    body = {"input": "Draw", "tools": [IMAGE], "tool_choice": "required"}
    a, b = _build(body, seed=5), _build(body, seed=5)
    assert a.response["output"][0]["result"] == b.response["output"][0]["result"]
    other = build_response(body, response_id=RID + "x", created_at=1, seed=None, model="gpt-4o")
    assert other.response["output"][0]["result"] != _build(body).response["output"][0]["result"]


@pytest.mark.parametrize(
    ("option", "value"), [("partial_images", 4), ("size", "7x7"), ("output_format", "jpeg")]
)
def test_an_option_the_images_endpoint_refuses_names_the_tool(option: str, value: Any) -> None:
    body = {"input": "Draw", "tools": [FUNCTION, {**IMAGE, option: value}]}
    with pytest.raises(InvalidRequestValue) as e:
        _build(body)
    assert e.value.param == f"tools.1.{option}"
    with pytest.raises(InvalidRequestValue) as checked:
        check_image_tools(body)
    assert checked.value.param == e.value.param
    check_image_tools({"tools": [FUNCTION, IMAGE]})  # the options served pass


def _entries(events: list[dict[str, Any]]) -> list[Entry]:
    return [
        Entry(b"1-%d" % (i + 1), i + 1, Kind.CHUNK, msgspec.json.encode(e), 0)
        for i, e in enumerate(events)
    ]


@pytest.mark.parametrize(("cut", "status"), [(4, "in_progress"), (6, "generating")])
def test_retrieve_folds_a_running_call(cut: int, status: str) -> None:
    built = _build({"input": "Draw a lighthouse", "tools": [IMAGE]})
    folded = fold_response(_entries(built.events[:cut]))
    assert folded is not None
    (item,) = folded["output"]
    assert (item["type"], item["status"], item["result"]) == ("image_generation_call", status, None)
    whole = fold_response(_entries(built.events))
    assert whole == built.response
