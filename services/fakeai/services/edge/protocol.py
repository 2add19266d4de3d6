"""The edge's HTTP protocol: uvicorn's httptools protocol, stamping each request's arrival and
closing connections that never finish a request head.

Arrival. The ASGI app sees a request only when its task first runs. When many requests arrive
in one burst, the event loop reads and parses all of them before it runs any of their tasks, so
an arrival time taken inside the app includes the time spent on the requests ahead. TTFT counts
from arrival; stamping it when the request's first bytes are parsed keeps that queueing
inside the simulated TTFT instead of adding to it.

Slowloris. uvicorn closes a keep-alive connection that stays idle between requests
(``timeout_keep_alive``) but has no limit on a request head that never completes: a client
that connects and sends nothing, or a partial request line, holds its connection (and a file
descriptor) forever. Here a head timer runs from the moment a connection opens, and from the
first byte of each later request on it, until the head is complete; when it fires the
connection gets a ``408`` (OpenAI-shaped body, ``Connection: close``) and is closed. Bodies and
responses are not timed here (the body size is bounded by ``max_body_bytes``; a response is
bounded by its stream, see :mod:`.reader`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fakeai.errors import error_body

__all__ = ["ARRIVED", "StampingHttpToolsProtocol"]

ARRIVED = "arrived"
"""``scope["state"]`` key: the request's arrival, Unix seconds."""

_408_BODY = json.dumps(
    error_body(
        "no complete request head arrived in time; the connection is closed",
        "invalid_request_error",
        code="request_timeout",
    )
).encode()
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n\r\n" % len(_408_BODY)
) + _408_BODY


class StampingHttpToolsProtocol(HttpToolsProtocol):
    """Sets ``scope["state"]["arrived"]`` as the request line starts to be parsed, and closes a
    connection whose request head is not complete within :attr:`head_timeout_s` (module
    docstring). :meth:`with_head_timeout` makes the class uvicorn is given."""

    head_timeout_s: ClassVar[float] = 10.0
    """Seconds a request head may take, from connect (or from its first byte)."""

    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_head_timeout(cls, seconds: float) -> type[StampingHttpToolsProtocol]:
        """This protocol with ``head_timeout_s = seconds`` (``settings.idle_timeout_s``)."""
        if seconds <= 0:
            raise ValueError(f"a head timeout must be > 0 s; got {seconds}")
        return type(cls.__name__, (cls,), {"head_timeout_s": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["state"][ARRIVED] = time.time()
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_408)
            self.transport.close()
