"""The bench transport's pure parts, without sockets: the head parser, the body framings, the
request target, and one connection's parser driven byte by byte through a stand-in transport."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest

from fakeai.services.bench import http, http_framing
from fakeai.services.bench.http import Chunked, Head, PayloadError, ProtocolError, parse_head

# Three chunks, one with an extension, then a last chunk with a trailer field.
CHUNKED = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\nworld!!!!!\r\n0\r\nX-Trailer: 1\r\n\r\n"
CHUNKED_BODY = b"hello world!!!!!"


def feed_all(dec: Chunked, pieces: list[bytes]) -> bytes:
    return b"".join(dec.feed(p) for p in pieces)


def test_parse_head_lowercases_names_and_joins_repeats() -> None:
    head = parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nx-a:2\r\nEmpty:"
    )
    assert head == Head(
        "HTTP/1.1", 200, {"content-type": "text/event-stream", "x-a": "1, 2", "empty": ""}
    )
    assert parse_head(b"HTTP/1.0 404 Not Found").status == 404
    assert parse_head(b"HTTP/1.1 204").headers == {}


@pytest.mark.parametrize(
    "block",
    [
        b"HTTP/2 200 OK",
        b"HTTP/1.1 2x0 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\n : empty name",
        b"HTTP/1.1 200 OK\r\nName : space before the colon",
    ],
)
def test_parse_head_refuses_a_malformed_head(block: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_head(block)


def test_chunked_whole_body_in_one_read() -> None:
    dec = Chunked()
    assert dec.feed(CHUNKED) == CHUNKED_BODY
    assert dec.done
    assert dec.extra == b""


@pytest.mark.parametrize("cut", range(1, len(CHUNKED)))
def test_chunked_split_anywhere_in_two(cut: int) -> None:
    """Every cut: inside a size line, an extension, chunk data, a CRLF, the trailer."""
    dec = Chunked()
    assert feed_all(dec, [CHUNKED[:cut], CHUNKED[cut:]]) == CHUNKED_BODY
    assert dec.done


@pytest.mark.parametrize("cut", range(1, len(CHUNKED) - 1, 3))
def test_chunked_split_in_three(cut: int) -> None:
    dec = Chunked()
    pieces = [CHUNKED[:cut], CHUNKED[cut : cut + 2], CHUNKED[cut + 2 :]]
    assert feed_all(dec, pieces) == CHUNKED_BODY
    assert dec.done


def test_chunked_one_byte_at_a_time() -> None:
    dec = Chunked()
    out = []
    for i in range(len(CHUNKED)):
        assert not dec.done
        out.append(dec.feed(CHUNKED[i : i + 1]))
    assert b"".join(out) == CHUNKED_BODY
    assert dec.done


def test_chunked_is_not_done_before_the_last_chunk_and_keeps_what_follows() -> None:
    dec = Chunked()
    assert dec.feed(b"3\r\nabc\r\n") == b"abc"
    assert not dec.done
    assert dec.feed(b"0\r\n\r\nHTTP/1.1") == b""
    assert dec.done
    assert dec.extra == b"HTTP/1.1"


@pytest.mark.parametrize(
    "raw",
    [
        b"zz\r\nab\r\n",  # not hex
        b"0x3\r\nabc\r\n",  # a prefix int() would take
        b"-3\r\nabc\r\n",
        b"\r\nabc\r\n",  # no size
        b"3\r\nabcXY",  # data not followed by CRLF
        b"1" * 2000,  # a size line that never ends
    ],
)
def test_chunked_broken_framing_is_a_payload_error(raw: bytes) -> None:
    with pytest.raises(PayloadError):
        Chunked().feed(raw)


@pytest.mark.parametrize(
    ("status", "headers", "method", "kind", "length"),
    [
        (200, {"transfer-encoding": "chunked"}, "GET", "Chunked", None),
        (200, {"transfer-encoding": "gzip, chunked"}, "GET", "Chunked", None),
        (200, {"transfer-encoding": "chunked", "content-length": "5"}, "GET", "Chunked", None),
        (200, {"transfer-encoding": "gzip"}, "GET", "UntilClose", None),
        (200, {"content-length": "12"}, "GET", "Length", 12),
        (200, {}, "GET", "UntilClose", None),
        (204, {}, "GET", None, None),
        (304, {"content-length": "12"}, "GET", None, None),
        (200, {"content-length": "12"}, "HEAD", None, None),
    ],
)
def test_body_framing_follows_rfc_9112(
    status: int, headers: dict[str, str], method: str, kind: str | None, length: int | None
) -> None:
    framing = http_framing.framing(Head("HTTP/1.1", status, headers), method)
    assert (type(framing).__name__ if framing is not None else None) == kind
    if length is not None:
        assert isinstance(framing, http_framing.Length)
        assert framing.left == length


@pytest.mark.parametrize("value", ["-1", "1e3", "12, 12", ""])
def test_bad_content_length_is_a_protocol_error(value: str) -> None:
    with pytest.raises(ProtocolError):
        http_framing.framing(Head("HTTP/1.1", 200, {"content-length": value}), "GET")


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("http://h:1", None, "/"),
        ("http://h:1/v1/streams/abc", None, "/v1/streams/abc"),
        (
            "http://h/r",
            {"stream": "true", "starting_after": "4"},
            "/r?stream=true&starting_after=4",
        ),
        ("http://h/x?a=1", {"b": "2 3"}, "/x?a=1&b=2+3"),
    ],
)
def test_target(url: str, params: dict[str, str] | None, expected: str) -> None:
    assert http.target(url, params) == expected


class FakeTransport:
    """What the connection's parser calls on its transport, recorded."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def wire() -> tuple[http._Wire, FakeTransport]:
    w = http._Wire(asyncio.get_running_loop(), read_timeout_s=60.0)
    t = FakeTransport()
    w.connection_made(t)  # type: ignore[arg-type]
    return w, t


async def started(w: http._Wire, first: bytes) -> None:
    """Send a request and feed ``first`` (the head and more)."""
    head = w.send("GET", b"GET / HTTP/1.1\r\n\r\n")
    w.data_received(first)
    await head


RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"d\r\ndata: one\n\nda\r\n7\r\nta: two\r\n8\r\n\n\ndata: \r\n8\r\n[DONE]\n\n\r\n0\r\n\r\n"
)
RESPONSE_BODY = b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"


async def read_response(w: http._Wire, pieces: list[bytes]) -> tuple[Any, bytes]:
    """Send a request, feed ``pieces``, and return the head and the body the sink saw."""
    head = w.send("GET", b"GET / HTTP/1.1\r\n\r\n")
    got: list[bytes] = []
    listening: Any = None
    for piece in pieces:
        w.data_received(piece)
        if head.done() and listening is None:
            listening = w.listen(lambda data, now: got.append(data))
    assert head.done()
    if isinstance(listening, asyncio.Future):
        assert listening.done()
        assert listening.result() is None
    return head.result(), b"".join(got)


@pytest.mark.parametrize("cut", range(1, len(RESPONSE)))
async def test_a_response_split_anywhere_reaches_the_sink_whole(cut: int) -> None:
    w, t = wire()
    head, body = await read_response(w, [RESPONSE[:cut], RESPONSE[cut:]])
    assert head.status == 200
    assert body == RESPONSE_BODY
    assert w.ended
    assert w.keep_alive
    assert not t.closed
    w._stop_timer()


async def test_a_response_one_byte_at_a_time() -> None:
    w, _ = wire()
    pieces = [RESPONSE[i : i + 1] for i in range(len(RESPONSE))]
    head, body = await read_response(w, pieces)
    assert head.headers["content-type"] == "text/event-stream"
    assert body == RESPONSE_BODY


async def test_an_interim_response_is_skipped() -> None:
    w, _ = wire()
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    head, body = await read_response(w, [raw])
    assert (head.status, body) == (200, b"ok")


async def test_gzip_content_encoding_is_inflated() -> None:
    w, _ = wire()
    packed = gzip.compress(RESPONSE_BODY)
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    pieces = [raw + packed[:7], packed[7:20], packed[20:]]
    _, body = await read_response(w, pieces)
    assert body == RESPONSE_BODY


async def test_a_body_that_does_not_inflate_is_a_payload_error() -> None:
    w, _ = wire()
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
    await started(w, raw)
    listening = w.listen(lambda data, now: None)
    w.data_received(b"not gzip!")
    with pytest.raises(PayloadError, match="inflate"):
        await listening


async def test_an_unknown_content_encoding_fails_the_request() -> None:
    w, t = wire()
    head = w.send("GET", b"GET / HTTP/1.1\r\n\r\n")
    w.data_received(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx")
    with pytest.raises(ProtocolError, match="Content-Encoding"):
        await head
    assert t.aborted


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
async def test_keep_alive_follows_version_and_connection_header(
    head: bytes, keep_alive: bool
) -> None:
    w, t = wire()
    await read_response(w, [head])
    assert w.keep_alive is keep_alive
    assert t.closed is not keep_alive


async def test_closed_mid_body_is_a_payload_error_never_an_end() -> None:
    w, _ = wire()
    await started(w, RESPONSE[:120])
    got: list[bytes] = []
    listening = w.listen(lambda data, now: got.append(data))
    w.connection_lost(None)
    with pytest.raises(PayloadError, match="mid-body"):
        await listening
    assert not w.ended


async def test_the_sinks_stop_value_ends_the_reading_and_the_rest_is_discarded() -> None:
    w, _ = wire()
    await started(w, RESPONSE[:100])
    seen: list[bytes] = []

    def sink(data: bytes, now: float) -> str | None:
        seen.append(data)
        return "stop" if b"one" in b"".join(seen) else None

    assert w.listen(sink) == "stop"
    w.data_received(RESPONSE[100:])
    assert b"two" not in b"".join(seen)
    assert w.ended
    assert await w.wait_idle(1.0)


async def test_bytes_with_no_request_in_flight_close_the_connection() -> None:
    w, t = wire()
    w.data_received(b"HTTP/1.1 200 OK\r\n\r\n")
    assert t.aborted
    assert isinstance(w.exc, ProtocolError)
