"""The edge application: routes, middleware, error handling, lifespan, and the server.

Lifespan start-up builds the state (``app.state.edge``; ``settings``, ``keys``, ``redis``,
``hub`` and ``recorder`` are also set on ``app.state`` for route modules) and connects with
:func:`fakeai.streams.client.connect`: a single server or a Redis Cluster, detected by itself
unless ``FAKEAI_REDIS_CLUSTER`` says which. :func:`~fakeai.streams.client.check_layout` then
marks a fresh Redis with the key layout, or refuses one that holds another: that
:class:`~fakeai.streams.client.LayoutMismatch` stops start-up with its message (it names the
fix). Then the whole command pool is opened (:data:`POOL_CONNECTIONS`), so the first burst
of requests finds its connections open. Redis is not needed to start: when it does not
answer, the edge starts anyway, says 503 with ``Retry-After`` on ``/readyz`` and the API, and
connects in the background (checking the layout and opening the pool then; a mismatch found
then is answered as a 503 ``layout_mismatch`` with the same message, until the data is
migrated).

Failures always end in an answer: raw Redis errors become 503s with ``Retry-After`` at this
boundary (:mod:`.unavailable`: ``redis_unavailable``; ``redis_out_of_memory`` when Redis
refuses a write for lack of memory), anything else a 500 ``internal_error``, all
OpenAI-shaped. On a single server, a pooled command connection that died (a Redis restart)
is retried once on a fresh connection (:data:`_RETRY_ONCE`), so a restart costs no 503s once
Redis is back; a Redis that is really down still answers 503 at once. (A cluster client has its
own retries, with a slot-map reload.)

Middleware (:mod:`.middleware`): the request id and CORS outermost, then the key and body-size
checks.

Connections: the edge runs uvicorn with its own HTTP protocol (:mod:`.protocol`), which closes
a connection that sends no complete request head within ``idle_timeout_s`` (slowloris);
uvicorn's ``timeout_keep_alive`` covers idle keep-alive connections.

Shutdown, in order (the way uvicorn's ``Server.shutdown`` does it):

1. Stop intake: new requests get 503 ``shutting_down``.
2. End live client streams with a resumable error event; wait for open responses to finish,
   up to :data:`DRAIN_S`.
3. Stop the hub (its blocking connections are closed, never pooled).
4. Flush the recorder, then close the Redis pool.

Under :func:`serve`, steps 1-2 run as soon as the server begins shutting down (uvicorn waits
for open connections *before* the lifespan ends, so they must end first); under any other
ASGI server they run when the lifespan ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aredis
import uvicorn
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterError, OutOfMemoryError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from fakeai.config import Settings
from fakeai.errors import ApiError, error_body
from fakeai.services.edge import (
    conventions,
    dashboard,
    media_routes,
    openai_routes,
    openapi,
    responses_api,
    stream_routes,
)
from fakeai.services.edge.faults import FaultDice, parse_fault_rates
from fakeai.services.edge.hub import Hub
from fakeai.services.edge.limits import Limiter
from fakeai.services.edge.metrics_routes import routes as metrics_routes
from fakeai.services.edge.middleware import EdgeMiddleware, FrontDoor, error_response
from fakeai.services.edge.protocol import StampingHttpToolsProtocol
from fakeai.services.edge.responses import RunStreamsOutside
from fakeai.services.edge.state import EdgeState
from fakeai.services.edge.tenants import Tenants
from fakeai.services.edge.unavailable import REDIS_DOWN, on_out_of_memory, on_redis_down
from fakeai.services.runtime import tune_gc
from fakeai.services.warmup import open_pool
from fakeai.streams import Keys
from fakeai.streams.client import LayoutMismatch, RedisClient, check_layout, connect, is_cluster
from fakeai.streams.log import Link
from fakeai.timeseries.recorder import SampleRecorder

__all__ = ["DRAIN_S", "create_app", "make_server", "run", "serve"]

logger = logging.getLogger(__name__)

DRAIN_S = 5.0
"""How long shutdown waits for open responses to end after telling them to."""
POOL_CONNECTIONS = 64
"""Command connections (never blocking reads); callers past it wait for a free one.

All are opened at start, before the edge serves (:func:`fakeai.services.warmup.open_pool`:
a burst of first requests would otherwise open them on the event loop), which costs ~1.3 MiB
of idle edge RSS (BENCHMARKS.md, S8); the pool never shrinks. Each is busy for one round trip
(~0.1-0.3 ms) per request, so 64 carry far more requests per second than one edge process
can parse. On a cluster the bound is per node, and a full node pool raises (answered as
a 503) instead of waiting (:func:`fakeai.streams.client.connect`)."""
_CONNECT_RETRY_MAX_S = 2.0
"""Longest pause between two connection attempts while Redis does not answer at start."""
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    RedisClusterException,
    OSError,
)
"""What connecting raises when no Redis answers (``RedisClusterException``: no seed node does;
``ClusterError``: CLUSTERDOWN, a cluster still forming or failing over)."""
_RETRY_ONCE = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
"""Single server: a command whose pooled connection turns out dead is sent once more on a
fresh one (redis-py's own default client retries too; a pool built by hand has none). A
connection error on a pooled connection nearly always means it died while idle, so the
command never reached a live server; only if it broke after Redis ran the command is a write
applied twice (the creation's MULTI is idempotent but for its request entry: the stream's
request would be queued twice). A timeout is not retried."""


async def _api_error(request: Request, exc: Exception) -> Response:
    return error_response(cast(ApiError, exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    e = cast(HTTPException, exc)
    kind = "invalid_request_error" if e.status_code < 500 else "server_error"
    code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
    return JSONResponse(
        error_body(str(e.detail), kind, code=code), status_code=e.status_code, headers=e.headers
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response and uvicorn then closes the
    # connection: say so, or a keep-alive client sends its next request into a closed socket.
    return JSONResponse(
        error_body("internal server error", "server_error", code="internal_error"),
        status_code=500,
        headers={"Connection": "close"},
    )


class _EdgeApp(Starlette):
    """Starlette with :class:`RunStreamsOutside` outside its whole stack, error middleware
    included: a streaming response then writes with the server's own ``send``, not through
    the error middleware's wrapper (one coroutine frame less per written event). After the
    response has started that wrapper only re-raises, as the server does. :class:`FrontDoor`
    (request id, CORS) sits outside that, so streaming responses carry its headers too."""

    front_door: Settings | None = None
    """The settings of the :class:`FrontDoor`; None: no front door (set by create_app)."""

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = RunStreamsOutside(super().build_middleware_stack())
        return app if self.front_door is None else FrontDoor(app, self.front_door)


def create_app(settings: Settings) -> Starlette:
    """The edge as an ASGI app; Redis connections open in its lifespan."""
    if settings.redis_url is None:
        raise ValueError("the edge needs a Redis: set FAKEAI_REDIS_URL (or --redis-url)")

    tenants = Tenants.from_settings(settings)  # a TenantConfigError names the line
    dice = FaultDice(parse_fault_rates(settings.faults, max_stall_s=settings.max_timing_ms / 1000))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keys = Keys(settings.key_prefix)
        state = EdgeState(
            settings=settings,
            keys=keys,
            tenants=tenants,
            limiter=Limiter.from_settings(keys, settings),
            dice=dice,
        )
        app.state.edge = state
        app.state.settings, app.state.keys, app.state.redis = settings, keys, None
        backend = _Backend(app, state)
        await backend.open()  # a LayoutMismatch stops start-up here, with its message
        try:
            yield
        finally:
            # 1-2. Stop intake, end live streams, drain open responses to a deadline.
            state.begin_shutdown()
            if state.responses > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.drained.wait(), DRAIN_S)
            # 3-4. Stop the hub, flush metrics, close Redis.
            await backend.close()
            logger.info("edge stopped")

    app = _EdgeApp(
        routes=[
            *openai_routes.routes,
            *responses_api.routes,
            *conventions.routes,
            *dashboard.routes,
            *media_routes.routes,
            *stream_routes.routes,
            *metrics_routes,
            *openapi.routes,
        ],
        middleware=[Middleware(EdgeMiddleware, settings=settings, tenants=tenants)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            OutOfMemoryError: on_out_of_memory,
            **dict.fromkeys(REDIS_DOWN, on_redis_down),
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.front_door = settings
    return app


class _Backend:
    """The Redis side of a running edge: command client, hub and recorder, attached to the
    :class:`EdgeState` once Redis answers and holds our key layout."""

    def __init__(self, app: Starlette, state: EdgeState) -> None:
        self._app = app
        self._state = state
        self._redis: RedisClient | None = None
        self._hub: Hub | None = None
        self._recorder_task: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[None] | None = None

    async def _connect(self) -> RedisClient:
        """A command client (cluster or not, detected unless set), the layout checked, the
        pool's connections open (:func:`fakeai.services.warmup.open_pool`)."""
        settings = self._state.settings
        url = settings.redis_url
        assert url is not None
        cluster = settings.redis_cluster
        if cluster is None:
            cluster = await is_cluster(url)
        extra: dict[str, Any] = {} if cluster else {"retry": _RETRY_ONCE}
        redis = await connect(
            url,
            cluster=cluster,
            max_connections=POOL_CONNECTIONS,
            blocking_pool=True,
            **extra,
        )
        try:
            await check_layout(redis, self._state.keys)
            # Before ready: a burst of first requests would open these on the event loop.
            await open_pool(redis, POOL_CONNECTIONS)
        except BaseException:
            await redis.aclose()
            raise
        return redis

    async def open(self) -> None:
        """Attach now, or, when Redis does not answer, start the edge anyway (503 until it
        does) and keep connecting in the background. Raises :class:`LayoutMismatch`."""
        try:
            redis = await self._connect()
        except _UNREACHABLE as e:
            logger.warning("Redis is unreachable (%s); answering 503 until it answers", e)
            self._connect_task = asyncio.create_task(self._connect_later(), name="edge-connect")
            return
        self._attach(redis)

    async def _connect_later(self) -> None:
        pause = 0.1
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 2, _CONNECT_RETRY_MAX_S)
            try:
                redis = await self._connect()
            except _UNREACHABLE:
                continue
            except LayoutMismatch as e:
                # Start-up is over: refuse work with the message until the data is migrated.
                if self._state.unready[0] != "layout_mismatch":
                    logger.error("%s", e)
                self._state.unready = ("layout_mismatch", str(e))
                continue
            except Exception:
                # Anything else: say so and keep trying; this task dying would leave the edge
                # answering 503 forever without a word.
                logger.exception("connecting to Redis failed; retrying")
                pause = _CONNECT_RETRY_MAX_S
                continue
            self._attach(redis)
            return

    def _attach(self, redis: RedisClient) -> None:
        state = self._state
        hub = self._hub = Hub(Link(redis))
        hub.start()
        recorder = SampleRecorder(redis, state.keys, state.settings)
        self._recorder_task = asyncio.create_task(recorder.run(), name="edge-recorder")
        self._redis = redis
        state.attach(redis, hub, recorder)
        app_state = self._app.state
        app_state.redis, app_state.hub, app_state.recorder = redis, hub, recorder
        kind = "cluster" if isinstance(redis, aredis.RedisCluster) else "server"
        logger.info("edge ready (redis %s, prefix %s)", kind, state.keys.prefix)

    async def close(self) -> None:
        """Shutdown steps 3-4: stop the hub (its connections are closed, never pooled), flush
        the recorder, close the command pool."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._hub is not None:
            await self._hub.close()
        if self._recorder_task is not None:
            self._recorder_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder_task
        if self._redis is not None:
            await self._redis.aclose()


class _EdgeServer(uvicorn.Server):
    """uvicorn, telling the edge to end its streams as soon as shutdown begins."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._edge_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state: EdgeState | None = getattr(self._edge_app.state, "edge", None)
        if state is not None:
            state.begin_shutdown()
        await super().shutdown(sockets)


def make_server(settings: Settings) -> uvicorn.Server:
    """A uvicorn server for the edge (uvloop and httptools when installed, no access log)."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=StampingHttpToolsProtocol.with_head_timeout(settings.idle_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=int(DRAIN_S) + 5,
    )
    return _EdgeServer(config, app)


def serve(settings: Settings, *, fd: int | None = None) -> None:
    """Serve the edge until SIGINT/SIGTERM (see :func:`make_server`).

    ``fd`` is a listening socket inherited from ``fakeai-streams up`` (several edge processes
    share one port); otherwise the edge binds ``settings.host:settings.port``.
    """
    server = make_server(settings)
    tune_gc()
    server.run(sockets=None if fd is None else [inherited_socket(fd)])


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket behind an inherited descriptor, with its real address family.

    Not uvicorn's ``fd=``: it wraps the descriptor as AF_UNIX, so accepted TCP connections never
    get TCP_NODELAY and each small SSE write waits for the client's delayed ACK (~40 ms on
    Linux). ``socket.socket(fileno=)`` reads the family from the descriptor.
    """
    return socket.socket(fileno=fd)


run = serve
"""Alias: ``run(settings)`` serves the edge (the name the other services use)."""
