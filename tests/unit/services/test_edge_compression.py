"""gzip negotiation and the per-write flush (:mod:`fakeai.services.edge.compression`)."""

from __future__ import annotations

import gzip
import zlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from fakeai.services.edge.compression import (
    SyncGzip,
    accepts_gzip,
    gzip_middleware,
    stream_encoder,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"gzip", True),
        (b"gzip, deflate, br, zstd", True),
        (b"GZIP", True),
        (b"x-gzip", True),
        (b"deflate, gzip;q=0.5", True),
        (b"gzip;q=0", False),
        (b"gzip; q=0.0", False),
        (b"*", True),
        (b"*;q=0", False),
        (b"*, gzip;q=0", False),
        (b"identity", False),
        (b"", False),
        (b"br", False),
        (b"gzip;q=bad", False),
    ],
)
def test_accepts_gzip(header: bytes, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_every_write_inflates_whole_and_the_end_is_a_valid_gzip_member() -> None:
    chunk = (
        b'{"id":"chatcmpl-0123456789abcdef","object":"chat.completion.chunk","created":1,'
        b'"model":"gpt-4o","choices":[{"index":0,"delta":{"content":" w%d"},"finish_reason":null}]}'
    )
    events = [b"id: 1-%d\ndata: %b\n\n" % (i, chunk % i) for i in range(50)]
    gz = SyncGzip()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    wire = b""
    for e in events:
        piece = gz.write(e)
        assert inflate.decompress(piece) == e  # nothing held back until a block fills
        wire += piece
    wire += gz.finish()
    assert gzip.decompress(wire) == b"".join(events)
    assert len(wire) < len(b"".join(events)) / 2


@pytest.mark.parametrize(
    ("media_type", "accept", "compressed", "vary"),
    [
        ("text/event-stream", b"gzip, deflate", True, True),
        ("application/x-ndjson", b"gzip", True, True),
        ("text/plain", b"gzip", True, True),
        ("text/event-stream", b"identity", False, True),
        ("audio/wav", b"gzip", False, False),
        (None, b"gzip", False, False),
    ],
)
def test_stream_encoder(
    media_type: str | None, accept: bytes, compressed: bool, vary: bool
) -> None:
    encoder, headers = stream_encoder(media_type, [(b"accept-encoding", accept)])
    assert (encoder is not None) is compressed
    assert ((b"content-encoding", b"gzip") in headers) is compressed
    assert ((b"vary", b"Accept-Encoding") in headers) is vary


async def test_gzip_middleware_compresses_whole_json_answers_when_asked() -> None:
    async def big(_: object) -> JSONResponse:
        return JSONResponse({"data": ["model"] * 500})

    async def small(_: object) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/big", big), Route("/small", small)], middleware=[gzip_middleware()]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        zipped = await c.get("/big", headers={"Accept-Encoding": "gzip"})
        plain = await c.get("/big", headers={"Accept-Encoding": "identity"})
        tiny = await c.get("/small", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.json() == plain.json()
    assert "content-encoding" not in plain.headers
    assert "content-encoding" not in tiny.headers
