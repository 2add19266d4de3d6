"""The edge's HTTP protocol: uvicorn's httptools protocol, stamping each request's arrival.

The ASGI app sees a request only when its task first runs. When many requests arrive in one
burst, the event loop reads and parses all of them before it runs any of their tasks, so an
arrival time taken inside the app includes the time spent on the requests ahead. TTFT counts
from arrival; stamping it when the request's first bytes are parsed keeps that queueing
inside the simulated TTFT instead of adding to it.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ARRIVED", "StampingHttpToolsProtocol"]

ARRIVED = "arrived"
"""``scope["state"]`` key: the request's arrival, Unix seconds."""


class StampingHttpToolsProtocol(HttpToolsProtocol):
    """Sets ``scope["state"]["arrived"]`` as the request line starts to be parsed."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["state"][ARRIVED] = time.time()
