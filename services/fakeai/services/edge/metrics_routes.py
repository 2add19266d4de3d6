"""``GET /metrics`` (Prometheus text; OpenMetrics when ``Accept`` asks) and
``GET /v1/metrics/latency`` (JSON), mounted by the edge.

Both read the time series the metrics consumer and the edge's recorder write
(fakeai.timeseries), through ``request.app.state.redis``, ``.keys`` and ``.settings``.

``/v1/metrics/latency?model=&window=``: ``window`` in seconds (default 60, at most the coarse
retention); a bad one is a 400 OpenAI-shaped error with ``param: "window"``; an unknown model
is an empty result, not an error.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisClusterException, RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakeai.errors import ApiError, ServiceUnavailable
from fakeai.timeseries.prometheus import (
    CONTENT_TYPE,
    OPENMETRICS_TYPE,
    PrometheusRenderer,
    wants_openmetrics,
)
from fakeai.timeseries.query import parse_window, query_latency

__all__ = ["latency_endpoint", "prometheus_endpoint", "routes"]

_RENDERER_ATTR = "fakeai_prometheus_renderer"


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers())


def _unavailable() -> JSONResponse:
    return _error(ServiceUnavailable("Redis is unavailable; retry later", retry_after_s=1))


def _renderer(request: Request) -> PrometheusRenderer:
    state: Any = request.app.state
    if state.redis is None:  # the edge has not reached Redis yet (see .app)
        raise ServiceUnavailable("Redis is unavailable; retry later", retry_after_s=1)
    r: PrometheusRenderer | None = getattr(state, _RENDERER_ATTR, None)
    if r is None:  # one per app: its cache and model list are shared by every scrape
        r = PrometheusRenderer(state.redis, state.keys)
        setattr(state, _RENDERER_ATTR, r)
    return r


async def prometheus_endpoint(request: Request) -> Response:
    """Prometheus text exposition of the all-time series; OpenMetrics when ``Accept`` asks."""
    openmetrics = wants_openmetrics(request.headers.get("accept"))
    try:
        body = await _renderer(request).render(openmetrics=openmetrics)
    except (RedisError, RedisClusterException, OSError, ServiceUnavailable):
        return _unavailable()
    return Response(body, media_type=OPENMETRICS_TYPE if openmetrics else CONTENT_TYPE)


async def latency_endpoint(request: Request) -> Response:
    """count, mean, min, max, p50, p90, p95, p99 per latency metric over a recent window."""
    state: Any = request.app.state
    try:
        window = parse_window(request.query_params.get("window"), state.settings)
    except ApiError as e:
        return _error(e)
    model = request.query_params.get("model") or None
    if state.redis is None:  # the edge has not reached Redis yet (see .app)
        return _unavailable()
    try:
        result = await query_latency(
            state.redis, state.keys, state.settings, model=model, window_s=window
        )
    except (RedisError, RedisClusterException, OSError):
        return _unavailable()
    return JSONResponse(result)


routes = [
    Route("/metrics", prometheus_endpoint, methods=["GET"]),
    Route("/v1/metrics/latency", latency_endpoint, methods=["GET"]),
]
