"""The edge's pure decisions on bounds (tables): caps, JSON depth, pace, and where a live read
ends (issue 10, findings 1, 3 and 8)."""

from __future__ import annotations

from typing import Any

import pytest

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.protocol import StampingHttpToolsProtocol
from fakeai.services.edge.reader import PACE_MAX, PACE_MIN, _after, live_until, parse_pace
from fakeai.services.edge.schemas import (
    MAX_DEPTH,
    ChatCompletionRequest,
    CompletionRequest,
    check_caps,
    check_depth,
    validate,
)
from fakeai.streams.log import Entry, Kind

SETTINGS = Settings(max_output_tokens=100, max_choices=4)
CHAT: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
FN = {"type": "function", "function": {"name": "f"}}


def _nest(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("depth", "ok"), [(1, True), (MAX_DEPTH, True), (MAX_DEPTH + 1, False), (5000, False)]
)
def test_check_depth(depth: int, ok: bool) -> None:
    body = _nest(depth)
    if ok:
        check_depth(body)
        return
    with pytest.raises(BadRequest, match=f"deeper than {MAX_DEPTH} levels"):
        check_depth(body)


@pytest.mark.parametrize(
    ("extra", "param", "setting"),
    [
        ({"max_tokens": 100}, None, None),
        ({"max_tokens": 101}, "max_tokens", "max_output_tokens"),
        ({"max_completion_tokens": 101}, "max_completion_tokens", "max_output_tokens"),
        ({"min_tokens": 101}, "min_tokens", "max_output_tokens"),
        ({"max_tokens": 10, "min_tokens": 11}, "min_tokens", None),
        ({"max_completion_tokens": 10, "max_tokens": 50, "min_tokens": 20}, "min_tokens", None),
        ({"n": 4}, None, None),
        ({"n": 5}, "n", "max_choices"),
        ({"tools": [FN], "tool_choice": "required"}, None, None),
        ({"tools": [{"type": "function"}]}, "tools.0.function", None),
        ({"tools": [{"type": "custom"}]}, None, None),
        ({"tool_choice": "required"}, "tool_choice", None),
        ({"tools": [FN], "tool_choice": "maybe"}, "tool_choice", None),
        ({"tools": [FN], "tool_choice": {"type": "function"}}, "tool_choice.function.name", None),
        ({"tools": [FN], "tool_choice": FN}, None, None),
    ],
)
def test_check_caps(extra: dict[str, Any], param: str | None, setting: str | None) -> None:
    req = validate(ChatCompletionRequest, {**CHAT, **extra})
    if param is None:
        check_caps(req, SETTINGS)
        return
    with pytest.raises(BadRequest) as raised:
        check_caps(req, SETTINGS)
    assert raised.value.param == param
    if setting is not None:
        assert f"setting {setting}" in raised.value.message


def test_completions_are_capped_alike() -> None:
    req = validate(CompletionRequest, {"model": "m", "prompt": "p", "max_tokens": 101})
    with pytest.raises(BadRequest, match="max_output_tokens"):
        check_caps(req, SETTINGS)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({**CHAT, "tools": {}}, "tools"),
        ({**CHAT, "tools": [{"function": {"name": "f"}}]}, "tools.0.type"),
        (
            {**CHAT, "tools": [{"type": "function", "function": {"name": "a b"}}]},
            "tools.0.function.name",
        ),
    ],
)
def test_schema_rejects(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as raised:
        validate(ChatCompletionRequest, body)
    assert raised.value.param == param


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (None, None),
        ("", None),
        ("fast", None),
        ("0.5", 0.5),
        ("original", 1.0),
        ("0.01", PACE_MIN),
        ("1000", PACE_MAX),
        ("2", 2.0),
    ],
)
def test_parse_pace(raw: str | None, want: float | None) -> None:
    assert parse_pace(raw) == want


@pytest.mark.parametrize("raw", ["1e-300", "0.0099", "1000.5", "0", "-2", "nan", "inf", "x"])
def test_parse_pace_refuses(raw: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_pace(raw)
    assert raised.value.param == "pace"


def _e(seq: int, kind: bytes = Kind.CHUNK) -> Entry:
    return Entry(b"1700-%d" % seq, seq, kind, b"{}", 0)


@pytest.mark.parametrize(
    ("batch", "last", "want", "ended"),
    [
        ([_e(3, Kind.DONE)], 3, [], True),  # the client holds the terminal entry: the end
        ([_e(2), _e(3, Kind.DONE)], 3, [], True),
        ([_e(4), _e(5, Kind.DONE)], 3, [4, 5], True),
        ([_e(2), _e(3)], 5, [], False),  # the stream may still get there: wait
    ],
)
def test_after_a_position_at_or_before_the_end(
    batch: list[Entry], last: int, want: list[int], ended: bool
) -> None:
    got, _, done = _after(batch, last)
    assert ([e.seq for e in got], done) == (want, ended)


@pytest.mark.parametrize("batch", [[_e(3, Kind.DONE)], [_e(2), _e(3, Kind.ERROR)]])
def test_a_terminal_entry_before_the_position_is_beyond_end(batch: list[Entry]) -> None:
    with pytest.raises(StreamInterrupted) as raised:
        _after(batch, 1000)
    assert raised.value.code == "beyond_end"
    assert "1700-1000" in raised.value.message
    assert "1700-3" in raised.value.message


def test_live_until() -> None:
    assert live_until(10_000, 5.0) == pytest.approx(15.0 + 1.0)


def test_head_timeout_class() -> None:
    cls = StampingHttpToolsProtocol.with_head_timeout(0.5)
    assert issubclass(cls, StampingHttpToolsProtocol)
    assert cls.head_timeout_s == 0.5
    assert StampingHttpToolsProtocol.head_timeout_s == 10.0
    with pytest.raises(ValueError, match="> 0"):
        StampingHttpToolsProtocol.with_head_timeout(0)
