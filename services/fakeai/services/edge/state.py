"""What the edge holds while it runs (built by the lifespan, kept in ``app.state``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio as aredis
from starlette.requests import Request

from fakeai.config import Settings
from fakeai.errors import ServiceUnavailable
from fakeai.services.edge.hub import Hub
from fakeai.streams import Keys
from fakeai.timeseries.recorder import SampleRecorder

__all__ = ["EdgeState", "edge_state"]


@dataclass(slots=True)
class EdgeState:
    settings: Settings
    keys: Keys
    redis: aredis.Redis
    """Commands only (a bounded pool); blocking reads live on the hub's own connection."""
    hub: Hub
    recorder: SampleRecorder
    """Edge-side samples (``edge_ttft``, ``pipeline_lag``, ``client_disconnects``), in memory;
    flushed in the background."""
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: intake stops and open responses end (resumably)."""
    responses: int = 0
    """Streaming responses in flight (shutdown drains them to a deadline)."""
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def begin_shutdown(self) -> None:
        """Steps 1 and 2 of shutdown: refuse new work, end live client streams resumably."""
        if not self.closing.is_set():
            self.closing.set()
            self.hub.end_all(
                "edge_shutdown",
                "the server is shutting down; reconnect with Last-Event-ID to resume",
            )

    def check_open(self) -> None:
        if self.closing.is_set():
            raise ServiceUnavailable(
                "the server is shutting down; retry on another instance",
                code="shutting_down",
                retry_after_s=1,
            )

    def response_started(self) -> None:
        self.responses += 1
        self.drained.clear()

    def response_ended(self) -> None:
        self.responses -= 1
        if self.responses <= 0:
            self.drained.set()


def edge_state(request: Request) -> EdgeState:
    state: EdgeState = request.app.state.edge
    return state
