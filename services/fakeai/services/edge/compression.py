"""gzip on the wire: streamed responses flushed per write, whole JSON answers at once.

Streams (:class:`~.responses.EventStream`: SSE, JSON Lines, text) are compressed when the
client asks (``Accept-Encoding`` names ``gzip``, ``x-gzip`` or ``*`` with a non-zero q, RFC 9110
§12.5.3) and never otherwise. Each write is compressed and then flushed with
``Z_SYNC_FLUSH`` (zlib manual, ``deflate()``): the bytes of every event leave at once, ending
on a byte boundary, so a client that inflates as it reads (httpx, aiohttp, browsers' fetch and
EventSource) gets each event when it is sent, not when a block fills. The response ends with
the gzip trailer (``Z_FINISH``). A response cut short (client gone, stalled) just stops, as
an uncompressed one does. Raw audio (``audio/*``) is not compressed: PCM hardly shrinks.

Cost (BENCHMARKS.md, "gzip on streams", with its command): about 2 µs of CPU per ~220-byte
chat-chunk event at level 1. Deflate's state is ~32 KiB per compressed response (a 4 KiB
window, ``memLevel`` 5: zlib's ``(1 << (windowBits + 2)) + (1 << (memLevel + 9))``), against
~256 KiB at zlib's defaults, so thousands of open streams stay affordable; a stream repeats its
JSON keys and ids event after event, which a 4 KiB window already catches.

Whole answers (non-streaming JSON, the dashboard's page and assets, ``/metrics``): Starlette's
``GZipMiddleware`` (:func:`gzip_middleware`), which leaves ``text/event-stream`` alone and sees
no streamed response at all (:class:`~.responses.RunStreamsOutside` runs them after the stack).
Every compressible response says ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

__all__ = [
    "STREAM_MEDIA_TYPES",
    "SyncGzip",
    "accepts_gzip",
    "gzip_middleware",
    "stream_encoder",
]

STREAM_MEDIA_TYPES = frozenset({"text/event-stream", "application/x-ndjson", "text/plain"})
"""Streamed media types that are compressed when the client asks."""

LEVEL = 1
"""Deflate level of streams: level 6 cost ~40% more CPU per event for no smaller output on
chunk streams (the sync flush per event bounds what a higher level can find)."""
WINDOW_BITS = 12
MEM_LEVEL = 5
WHOLE_MIN_BYTES = 1024
"""Whole answers smaller than this go out as they are (gzip's header and trailer are 18 bytes,
and a small answer saves nothing worth the CPU)."""
WHOLE_LEVEL = 6

_GZIP_CODINGS = (b"gzip", b"x-gzip", b"*")


def accepts_gzip(header: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (RFC 9110 §12.5.3): ``gzip`` (or
    ``x-gzip``) with q > 0, or ``*`` with q > 0 when gzip is not listed; ``gzip;q=0`` refuses."""
    star = False
    for item in header.lower().split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip()
        if coding not in _GZIP_CODINGS:
            continue
        q = 1.0
        for param in params.split(b";"):
            name, _, value = param.partition(b"=")
            if name.strip() == b"q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if coding == b"*":
            star = q > 0
        else:
            return q > 0
    return star


class SyncGzip:
    """One gzip member written piecewise, each piece flushed to the wire (module docstring)."""

    __slots__ = ("_z",)

    def __init__(self) -> None:
        self._z = zlib.compressobj(LEVEL, zlib.DEFLATED, 16 + WINDOW_BITS, MEM_LEVEL)

    def write(self, data: bytes) -> bytes:
        """``data`` compressed, ending on a byte boundary: the client can inflate all of it."""
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        """The rest and the gzip trailer (CRC-32, length): the member is complete."""
        return self._z.flush(zlib.Z_FINISH)


def stream_encoder(
    media_type: str | None, request_headers: Iterable[tuple[bytes, bytes]]
) -> tuple[SyncGzip | None, list[tuple[bytes, bytes]]]:
    """For a streamed response of ``media_type``: the encoder (None: send as is) and the
    headers to add (``Content-Encoding: gzip``; ``Vary: Accept-Encoding`` on every
    compressible stream, compressed or not, so caches keep the two apart)."""
    if media_type not in STREAM_MEDIA_TYPES:
        return None, []
    vary = [(b"vary", b"Accept-Encoding")]
    for name, value in request_headers:
        if name == b"accept-encoding" and accepts_gzip(value):
            return SyncGzip(), [(b"content-encoding", b"gzip"), *vary]
    return None, vary


def gzip_middleware() -> Middleware:
    """Starlette's gzip for whole answers (module docstring), as the edge configures it."""
    return Middleware(GZipMiddleware, minimum_size=WHOLE_MIN_BYTES, compresslevel=WHOLE_LEVEL)
