"""What the edge holds while it runs (built by the lifespan, kept in ``app.state``).

The Redis side (command client, hub, recorder) is attached once Redis has answered and the key
layout is checked (:mod:`.app`); until then :attr:`EdgeState.redis`, ``.hub`` and ``.recorder``
raise a 503 :class:`~fakeai.errors.ServiceUnavailable`, which every route turns into its answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request

from fakeai.config import Settings
from fakeai.errors import ServiceUnavailable
from fakeai.services.edge.faults import FaultDice
from fakeai.services.edge.hub import Hub
from fakeai.services.edge.interrupted import RESUME_HINT
from fakeai.services.edge.limits import Limiter
from fakeai.services.edge.tenants import Tenants
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries.recorder import SampleRecorder

__all__ = ["EdgeState", "edge_state"]

_UNAVAILABLE = ("redis_unavailable", "Redis is unavailable; retry later")


@dataclass(slots=True)
class EdgeState:
    settings: Settings
    keys: Keys
    tenants: Tenants = field(default_factory=Tenants)
    limiter: Limiter | None = None
    dice: FaultDice | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when shutdown begins: intake stops and open responses end (resumably)."""
    responses: int = 0
    """Streaming responses in flight (shutdown drains them to a deadline)."""
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    unready: tuple[str, str] = _UNAVAILABLE
    """``(code, message)`` of the 503 answered while Redis is not attached."""
    _redis: RedisClient | None = None
    _hub: Hub | None = None
    _recorder: SampleRecorder | None = None

    def attach(self, redis: RedisClient, hub: Hub, recorder: SampleRecorder) -> None:
        """Redis answered and holds our key layout: serve from now on."""
        self._redis, self._hub, self._recorder = redis, hub, recorder

    @property
    def ready(self) -> bool:
        return self._redis is not None

    @property
    def redis(self) -> RedisClient:
        """Commands only (a bounded pool); blocking reads live on the hub's own connections."""
        if self._redis is None:
            raise self._unavailable()
        return self._redis

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise self._unavailable()
        return self._hub

    @property
    def recorder(self) -> SampleRecorder:
        """Edge-side samples (``edge_ttft``, ``pipeline_lag``, ``client_disconnects``), in
        memory; flushed in the background."""
        if self._recorder is None:
            raise self._unavailable()
        return self._recorder

    def _unavailable(self) -> ServiceUnavailable:
        code, message = self.unready
        return ServiceUnavailable(message, code=code, retry_after_s=1)

    def begin_shutdown(self) -> None:
        """Steps 1 and 2 of shutdown: refuse new work, end live client streams resumably."""
        if not self.closing.is_set():
            self.closing.set()
            if self._hub is not None:
                self._hub.end_all("edge_shutdown", f"the server is shutting down; {RESUME_HINT}")

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
