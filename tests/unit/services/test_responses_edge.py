"""The edge's Responses pieces that are pure: the fold of a log into a response, the named SSE
format, and ``resp_`` stream ids."""

from __future__ import annotations

import json

from fakeai.content.responses_api import build_response
from fakeai.services.edge.formats import Formatter, chunk_text, event_type
from fakeai.services.edge.response_fold import fold_response
from fakeai.streams import created_ms_of, new_stream_id
from fakeai.streams.log import Entry, Kind
from fakeai.streams.positions import is_response_id
from fakeai.wire import ErrorBody, ErrorPayload, encode

CREATED = 1_700_000_000_000


def _log(max_tokens: int = 16) -> tuple[list[Entry], dict[str, object]]:
    sid = new_stream_id("responses", CREATED)
    built = build_response(
        {"input": "hi", "max_output_tokens": max_tokens},
        response_id=sid,
        created_at=CREATED // 1000,
        seed=1,
        model="gpt-4o",
    )
    entries = [
        Entry(b"%d-%d" % (CREATED, i + 1), i + 1, Kind.CHUNK, encode(e), 0)
        for i, e in enumerate(built.events)
    ]
    return entries, built.response


def _error(seq: int, code: str) -> Entry:
    body = ErrorPayload(error=ErrorBody(message=code, type="server_error", code=code))
    return Entry(b"%d-%d" % (CREATED, seq), seq, Kind.ERROR, encode(body), 0)


def test_resp_ids() -> None:
    sid = new_stream_id("responses", CREATED)
    assert sid.startswith("resp_")
    assert len(sid) == len("resp_") + 35
    assert is_response_id(sid)
    assert created_ms_of(sid) == CREATED
    assert not is_response_id(new_stream_id("chat", CREATED))


def test_fold_finished_is_the_final_response() -> None:
    entries, final = _log()
    done = Entry(b"%d-%d" % (CREATED, len(entries) + 1), len(entries) + 1, Kind.DONE, b"{}", 0)
    assert fold_response([*entries, done]) == json.loads(encode(final))


def test_fold_in_progress_has_the_output_so_far() -> None:
    entries, final = _log()
    partial = fold_response(entries[:8])  # created, in_progress, item, part, 4 deltas
    assert partial is not None
    assert partial["status"] == "in_progress"
    text = partial["output"][0]["content"][0]["text"]
    assert text
    assert final["output"][0]["content"][0]["text"].startswith(text)  # type: ignore[index]


def test_fold_error_entries() -> None:
    entries, _ = _log()
    cancelled = fold_response([*entries[:6], _error(7, "cancelled")])
    assert cancelled is not None
    assert cancelled["status"] == "cancelled"
    failed = fold_response([*entries[:6], _error(7, "timeout")])
    assert failed is not None
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "timeout"
    assert fold_response([]) is None


def test_a_response_ended_before_its_first_event_is_not_shown_queued() -> None:
    """A background response cancelled before its producer started it has a log of one
    ``e`` entry: retrieve must say cancelled (or failed), not queued forever."""
    start = {"id": "resp_x", "object": "response", "status": "queued", "output": []}
    assert fold_response([], start) == start
    cancelled = fold_response([_error(1, "cancelled")], start)
    assert cancelled is not None
    assert (cancelled["status"], cancelled["error"], cancelled["id"]) == (
        "cancelled",
        None,
        "resp_x",
    )
    failed = fold_response([_error(1, "shutdown")], start)
    assert failed is not None
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "shutdown"


def test_named_sse_events() -> None:
    entries, _ = _log()
    fmt = Formatter("sse", 1000, named=True)
    first = fmt.entry(entries[0], first=True).decode()
    assert first.startswith(f"event: response.created\nid: {CREATED}-1\nretry: 1000\ndata: {{")
    assert fmt.entry(Entry(b"1-9", 9, Kind.DONE, b"{}", 0)) == b""
    err = fmt.entry(_error(9, "cancelled")).decode()
    assert err.startswith(f"event: error\nid: {CREATED}-9\ndata: ")
    data = json.loads(err.split("data: ", 1)[1])
    assert data == {"type": "error", "code": "cancelled", "message": "cancelled", "param": None,
                    "sequence_number": 8}  # fmt: skip
    assert b"[DONE]" not in fmt.interrupted(ErrorBody(message="m", type="t", code="c"))


def test_event_type_and_text() -> None:
    delta = b'{"type":"response.output_text.delta","delta":"Hi"}'
    assert event_type(delta) == b"response.output_text.delta"
    assert event_type(b'{"x":1,"type":"response.created"}') == b"response.created"
    assert chunk_text(delta) == "Hi"
    assert chunk_text(b'{"type":"response.created","response":{}}') == ""
