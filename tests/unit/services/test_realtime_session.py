"""A realtime session's pure logic: ``session.update`` merging and its refusals, conversation
items (ids, placement, refusals), the input audio buffer (append, commit, clear, caps), the
output of finished responses, and the generation body a ``response.create`` amounts to."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fakeai.content.audio import SAMPLE_RATE
from fakeai.services.edge.realtime_session import (
    MAX_BUFFER_BYTES,
    RealtimeError,
    Session,
    error_event,
    server_event,
)

ONE_SECOND = b"\x00\x01" * SAMPLE_RATE
"""One second of 24 kHz PCM16 (2 bytes a sample)."""


def _user(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
        **extra,
    }


def _refused(call: Any, code: str, param: str | None = None) -> RealtimeError:
    with pytest.raises(RealtimeError) as e:
        call()
    assert e.value.code == code
    if param is not None:
        assert e.value.param == param
    return e.value


# -- events ---------------------------------------------------------------------------------


def test_server_and_error_events_have_the_realtime_shape() -> None:
    event = server_event("session.updated", session={"a": 1})
    assert list(event)[:2] == ["type", "event_id"]
    assert event["event_id"].startswith("event_")
    assert event["event_id"] != server_event("x")["event_id"]
    err = error_event("bad", code="invalid_value", param="p", client_event_id="c1")
    assert err["type"] == "error"
    assert err["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "bad",
        "param": "p",
        "event_id": "c1",
    }


# -- session.update ---------------------------------------------------------------------------


def test_update_merges_nested_objects_and_keeps_the_rest() -> None:
    s = Session(model="gpt-realtime")
    before = s.config["audio"]["output"]["format"]
    config = s.update({"audio": {"output": {"voice": "verse"}}, "instructions": "Be brief."})
    assert config is s.config
    assert config["audio"]["output"] == {"format": before, "voice": "verse", "speed": 1.0}
    assert config["audio"]["input"]["format"] == before  # a sibling untouched
    assert config["instructions"] == "Be brief."
    s.update({"output_modalities": ["text"], "max_output_tokens": 50, "tools": [{"x": 1}]})
    assert s.config["output_modalities"] == ["text"]
    assert s.config["max_output_tokens"] == 50
    assert s.config["tools"] == [{"x": 1}]  # lists are replaced, not merged


def test_update_ignores_read_only_fields() -> None:
    s = Session(model="gpt-realtime")
    fixed = {k: s.config[k] for k in ("id", "object", "type", "model", "expires_at")}
    s.update({"id": "sess_x", "object": "o", "type": "t", "model": "m", "expires_at": 1})
    assert {k: s.config[k] for k in fixed} == fixed


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
        ({"output_modalities": "text"}, "session.output_modalities"),
        ({"output_modalities": ["video"]}, "session.output_modalities"),
        ({"max_output_tokens": 0}, "session.max_output_tokens"),
        ({"max_output_tokens": 4097}, "session.max_output_tokens"),
        ({"max_output_tokens": True}, "session.max_output_tokens"),
        ({"max_output_tokens": "lots"}, "session.max_output_tokens"),
        ({"audio": "loud"}, "session.audio"),
        ({"audio": {"output": 5}}, "session.audio.output"),
    ],
)
def test_update_refuses_bad_values_and_changes_nothing(patch: dict[str, Any], param: str) -> None:
    s = Session(model="gpt-realtime")
    before = {**s.config, "audio": {**s.config["audio"]}}
    _refused(lambda: s.update(patch), "invalid_value", param)
    assert s.config == before


def test_update_refuses_a_session_that_is_not_an_object() -> None:
    s = Session(model="gpt-realtime")
    _refused(lambda: s.update(["x"]), "invalid_value", "session")


# -- conversation items -----------------------------------------------------------------------


def test_add_item_fills_in_id_object_and_status() -> None:
    s = Session(model="gpt-realtime")
    item = s.add_item(_user("hi"))
    assert item["id"].startswith("item_")
    assert (item["object"], item["status"]) == ("realtime.item", "completed")
    assert s.items == [item]
    assert s.add_item(_user("again", id="item_mine"))["id"] == "item_mine"


def test_add_item_after_previous_item_id_and_at_the_root() -> None:
    s = Session(model="gpt-realtime")
    a = s.add_item(_user("a"))
    c = s.add_item(_user("c"))
    b = s.add_item(_user("b"), previous_item_id=a["id"])
    root = s.add_item(_user("first"), previous_item_id="root")
    assert [i["id"] for i in s.items] == [root["id"], a["id"], b["id"], c["id"]]
    assert s.previous_of(b["id"]) == a["id"]
    assert s.previous_of(root["id"]) is None


@pytest.mark.parametrize(
    ("item", "code", "param"),
    [
        ("text", "invalid_value", "item"),
        ({"role": "user"}, "invalid_value", "item"),
        ({"type": "message", "role": "tool"}, "invalid_value", "item.role"),
        ({"type": "message"}, "invalid_value", "item.role"),
    ],
)
def test_add_item_refuses_malformed_items(item: Any, code: str, param: str) -> None:
    s = Session(model="gpt-realtime")
    _refused(lambda: s.add_item(item), code, param)
    assert s.items == []


def test_add_item_refuses_a_known_id_and_an_unknown_previous_item() -> None:
    s = Session(model="gpt-realtime")
    s.add_item(_user("a", id="item_a"))
    _refused(lambda: s.add_item(_user("b", id="item_a")), "item_already_exists", "item.id")
    _refused(
        lambda: s.add_item(_user("b"), previous_item_id="item_nope"),
        "item_not_found",
        "previous_item_id",
    )
    assert [i["id"] for i in s.items] == ["item_a"]


# -- input audio buffer -----------------------------------------------------------------------


def test_append_then_commit_makes_a_user_item_of_the_audio() -> None:
    s = Session(model="gpt-realtime")
    half = base64.b64encode(ONE_SECOND[: len(ONE_SECOND) // 2]).decode()
    s.append_audio(half)
    s.append_audio(half)
    assert len(s.buffer) == len(ONE_SECOND)
    item = s.commit_audio()
    assert s.buffer == bytearray()
    assert (item["type"], item["role"]) == ("message", "user")
    assert item["content"][0]["_seconds"] == 1.0
    assert Session.public(item)["content"] == [{"type": "input_audio", "transcript": None}]
    assert s.items == [item]
    body = s.generation_body(None)
    assert body["messages"][-1] == {"role": "user", "content": "(audio, 1.0 s)"}


def test_clear_then_commit_is_the_empty_buffer_error() -> None:
    s = Session(model="gpt-realtime")
    s.append_audio(base64.b64encode(ONE_SECOND).decode())
    s.buffer.clear()  # input_audio_buffer.clear
    _refused(s.commit_audio, "input_audio_buffer_commit_empty")
    assert s.items == []


@pytest.mark.parametrize("audio", ["not base64!", "AAA", None, 12, ["AAAA"]])
def test_append_refuses_what_is_not_base64(audio: Any) -> None:
    s = Session(model="gpt-realtime")
    _refused(lambda: s.append_audio(audio), "invalid_value", "audio")
    assert s.buffer == bytearray()


def test_append_refuses_beyond_the_buffer_cap() -> None:
    s = Session(model="gpt-realtime")
    s.buffer = bytearray(MAX_BUFFER_BYTES - 2)
    s.append_audio(base64.b64encode(b"\x00\x00").decode())  # exactly full
    _refused(
        lambda: s.append_audio(base64.b64encode(b"\x00\x00").decode()),
        "input_audio_buffer_full",
        "audio",
    )
    assert len(s.buffer) == MAX_BUFFER_BYTES


# -- responses --------------------------------------------------------------------------------


def test_add_output_appends_new_items_once() -> None:
    s = Session(model="gpt-realtime")
    out = {"id": "item_out", "type": "message", "role": "assistant", "content": []}
    assert s.add_output({"output": [out]}) == [out]
    assert s.add_output({"output": [out]}) == []
    assert [i["id"] for i in s.items] == ["item_out"]


def test_generation_body_from_the_session_and_the_response_parameters() -> None:
    s = Session(model="gpt-realtime")
    s.update({"instructions": "Be brief.", "audio": {"output": {"voice": "verse"}}})
    s.add_item(_user("Hello"))
    body = s.generation_body(None)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert body["modalities"] == ["audio"]
    assert body["audio"] == {"voice": "verse", "format": "pcm16"}
    assert "max_tokens" not in body  # "inf"
    assert body["realtime"] == {"conversation_id": s.conversation_id, "session_id": s.id}

    text = s.generation_body(
        {
            "output_modalities": ["text"],
            "max_output_tokens": 20,
            "instructions": "Shout.",
            "conversation": "none",
            "input": [_user("Only this")],
        }
    )
    assert text["messages"] == [
        {"role": "system", "content": "Shout."},
        {"role": "user", "content": "Only this"},
    ]
    assert text["modalities"] == ["text"]
    assert "audio" not in text
    assert text["max_tokens"] == 20
    assert text["realtime"]["conversation_id"] is None
    voiced = s.generation_body({"audio": {"output": {"voice": "ash"}}})
    assert voiced["audio"]["voice"] == "ash"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"output_modalities": ["audio", "text"]}, "response.output_modalities"),
        ({"max_output_tokens": -1}, "response.max_output_tokens"),
        ({"audio": "loud"}, "response.audio"),
        ({"audio": {"output": "loud"}}, "response.audio.output"),
    ],
)
def test_generation_body_refuses_bad_parameters(params: dict[str, Any], param: str) -> None:
    s = Session(model="gpt-realtime")
    _refused(lambda: s.generation_body(params), "invalid_value", param)
