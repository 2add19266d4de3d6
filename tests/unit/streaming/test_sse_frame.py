"""The one SSE encoder (:func:`fakeai.streaming.sse.sse_frame`): field order, line splitting,
and the frames every caller builds with it (library formatters, edge formats, dashboard feed)."""

from __future__ import annotations

import pytest

from fakeai.services.edge.dashboard_feed import sse_event
from fakeai.services.edge.formats import Formatter
from fakeai.streaming.base import StreamChunk
from fakeai.streaming.sse import SSEFormatter, sse_comment, sse_frame
from fakeai.streams.log import Entry, Kind


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"data": b"x"}, b"data: x\n\n"),
        ({"data": b"x", "id": b"1-2"}, b"id: 1-2\ndata: x\n\n"),
        ({"data": b"x", "event": b"e"}, b"event: e\ndata: x\n\n"),
        ({"data": b"x", "event": b"e", "id": b"1-2"}, b"event: e\nid: 1-2\ndata: x\n\n"),
        ({"data": b"x", "id": b"1-2", "retry": 0}, b"id: 1-2\nretry: 0\ndata: x\n\n"),
        (
            {"data": b"x", "event": b"e", "id": b"1-2", "retry": 3000},
            b"event: e\nid: 1-2\nretry: 3000\ndata: x\n\n",
        ),
        ({"data": b"x", "retry": 5}, b"retry: 5\ndata: x\n\n"),
        ({"data": None, "id": b"1-0", "retry": 3000}, b"id: 1-0\nretry: 3000\n\n"),
        ({"data": None, "id": b"1-0"}, b"id: 1-0\n\n"),
        ({"data": None, "event": b"e"}, b"event: e\n\n"),
        ({"data": b""}, b"data: \n\n"),
        ({"data": b"a\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": b"a\r\nb\rc\n"}, b"data: a\ndata: b\ndata: c\ndata: \n\n"),
        ({"data": b"a\nb", "id": b"7-7", "retry": 1}, b"id: 7-7\nretry: 1\ndata: a\ndata: b\n\n"),
    ],
)
def test_sse_frame_writes_fields_in_order_and_one_data_line_per_line(
    kwargs: dict[str, object], expected: bytes
) -> None:
    data = kwargs.pop("data")
    assert sse_frame(data, **kwargs) == expected  # type: ignore[arg-type]


def test_sse_comment() -> None:
    assert sse_comment(b"ping") == b": ping\n\n"
    assert sse_comment() == b":\n\n"


def test_library_formatter_is_the_same_encoder() -> None:
    chunk = StreamChunk(chunk_id="c", sequence_number=1, data="one\ntwo")
    assert SSEFormatter.format(chunk, event_id="3-4", retry_ms=10).encode() == sse_frame(
        b"one\ntwo", id=b"3-4", retry=10
    )
    # The library's named event keeps its historical order: id before event.
    assert SSEFormatter.format_custom_event("ev", {"a": 1}, event_id="9-9") == (
        'id: 9-9\nevent: ev\ndata: {"a":1}\n\n'
    )


def test_edge_formats_and_dashboard_feed_frames() -> None:
    data = b'{"type":"response.output_text.delta","delta":"hi"}'
    e = Entry(b"5-2", 2, Kind.CHUNK, data, 1)
    named = Formatter("sse", 3000, named=True)
    assert named.entry(e) == b"event: response.output_text.delta\nid: 5-2\ndata: " + data + b"\n\n"
    assert named.entry(e, first=True) == (
        b"event: response.output_text.delta\nid: 5-2\nretry: 3000\ndata: " + data + b"\n\n"
    )
    chat = Formatter("sse", 3000)
    assert chat.entry(e) == e.sse == b"id: 5-2\ndata: " + data + b"\n\n"
    assert chat.entry(e, first=True) == b"id: 5-2\nretry: 3000\ndata: " + data + b"\n\n"
    done = Entry(b"5-3", 3, Kind.DONE, b"{}", 1)
    assert chat.entry(done, first=True) == b"id: 5-3\nretry: 3000\ndata: [DONE]\n\n"
    assert chat.prime("5-0") == b"id: 5-0\nretry: 3000\n\n"
    assert sse_event("snapshot", {"n": 1}) == b'event: snapshot\ndata: {"n":1}\n\n'
