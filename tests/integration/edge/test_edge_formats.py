"""Pure parts of the edge, table-driven: format choice, pace, encodings, request validation."""

from __future__ import annotations

import json
import math

import pytest

from fakeai.errors import BadRequest
from fakeai.services.edge.formats import Formatter, choose_format
from fakeai.services.edge.reader import parse_pace
from fakeai.services.edge.schemas import CompletionRequest, validate
from fakeai.streams.log import Entry, parse_entry, parse_flat
from fakeai.wire import DonePayload, ErrorBody, ErrorPayload, encode

CHUNK = b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'
ERROR = encode(ErrorPayload(error=ErrorBody(message="bad", type="server_error", code="x")))
C = Entry(id=b"5-1", seq=1, kind=b"c", data=CHUNK, t_us=1)
D = Entry(id=b"5-2", seq=2, kind=b"d", data=encode(DonePayload()), t_us=2)
E = Entry(id=b"5-2", seq=2, kind=b"e", data=ERROR, t_us=2)


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [
        (None, None, "sse"),
        ("jsonl", "text/event-stream", "jsonl"),
        (None, "text/event-stream", "sse"),
        (None, "application/x-ndjson", "jsonl"),
        (None, "application/jsonl", "jsonl"),
        (None, "text/plain", "text"),
        (None, "*/*", "sse"),
    ],
)
def test_choose_format(query: str | None, accept: str | None, expected: str) -> None:
    assert choose_format(query, accept) == expected


def test_unknown_format_names_the_allowed_values() -> None:
    with pytest.raises(BadRequest) as info:
        choose_format("xml", None)
    assert info.value.param == "format"
    assert "sse, jsonl, text" in info.value.message


@pytest.mark.parametrize(
    ("raw", "factor"),
    [(None, None), ("fast", None), ("original", 1.0), ("2", 2.0), ("0.5", 0.5)],
)
def test_parse_pace(raw: str | None, factor: float | None) -> None:
    assert parse_pace(raw) == factor


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "slow", str(math.inf)])
def test_bad_pace(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_pace(raw)
    assert info.value.param == "pace"


@pytest.mark.parametrize(
    ("fmt", "entry", "first", "expected"),
    [
        ("sse", C, True, b"id: 5-1\nretry: 250\ndata: " + CHUNK + b"\n\n"),
        ("sse", C, False, b"id: 5-1\ndata: " + CHUNK + b"\n\n"),
        ("sse", D, False, b"id: 5-2\ndata: [DONE]\n\n"),
        ("sse", D, True, b"id: 5-2\nretry: 250\ndata: [DONE]\n\n"),
        ("sse", E, True, b"id: 5-2\nretry: 250\ndata: " + ERROR + b"\n\ndata: [DONE]\n\n"),
        ("sse", E, False, b"id: 5-2\ndata: " + ERROR + b"\n\ndata: [DONE]\n\n"),
        ("jsonl", C, True, b'{"id":"5-1","type":"chunk","data":' + CHUNK + b"}\n"),
        ("jsonl", D, False, b'{"id":"5-2","type":"done"}\n'),
        ("text", C, True, b"hi"),
        ("text", D, False, b""),
        ("text", E, False, b"\n[error] x: bad\n"),
    ],
)
def test_encodings_write_the_stored_bytes(
    fmt: str, entry: Entry, first: bool, expected: bytes
) -> None:
    assert Formatter(fmt, 250).entry(entry, first=first) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "flat",
    [
        [b"k", b"c", b"d", CHUNK, b"t", b"17"],
        [b"t", b"17", b"d", CHUNK, b"x", b"ignored", b"k", b"c"],
        [b"d", CHUNK],  # kind and time absent: a chunk, t_us 0
        [b"k", b"d"],
    ],
)
def test_raw_xread_fields_parse_like_the_dict_form(flat: list[bytes]) -> None:
    """The hub parses raw XREAD field lists; the result must equal the XRANGE (dict) path."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    got = parse_flat(b"5-3", flat)
    assert got == parse_entry(b"5-3", fields)
    assert (got.sse, got.terminal) == (parse_entry(b"5-3", fields).sse, got.kind == b"d")


def test_jsonl_error_and_interruptions() -> None:
    line = json.loads(Formatter("jsonl", 0).entry(E))
    assert line == {"id": "5-2", "type": "error", "error": json.loads(ERROR)["error"]}
    body = ErrorBody(message="resume", type="server_error", code="slow_consumer")
    sse = Formatter("sse", 0).interrupted(body)
    assert sse.startswith(b"data: {")
    assert b"id:" not in sse  # Last-Event-ID stays on the last real chunk
    assert sse.endswith(b"data: [DONE]\n\n")
    assert Formatter("sse", 7).prime("5-0") == b"id: 5-0\nretry: 7\n\n"
    assert Formatter("jsonl", 7).prime("5-0") == b""


def test_completion_prompt_forms() -> None:
    for prompt in ("a", ["a", "b"], [1, 2], [[1], [2]]):
        assert validate(CompletionRequest, {"model": "m", "prompt": prompt}).prompt == prompt
    with pytest.raises(BadRequest) as info:
        validate(CompletionRequest, {"model": "m", "prompt": {"x": 1}})
    assert info.value.param == "prompt"
