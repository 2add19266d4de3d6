"""The dashboard: a page served by the edge, and the JSON and SSE endpoints it reads.

Routes:

- ``GET /`` redirects to ``GET /dashboard``: one HTML page (``static/dashboard.html``), its
  ES modules (``dashboard.js``, ``api.js``, ``charts.js``, ``stream.js``) and its style under
  ``/dashboard/static/``, all served from this package (no build step, no CDN, no library;
  the charts are SVG drawn by ``charts.js``). Views: running streams (the live feed),
  TTFT and ITL percentiles per model over minutes to days, observers and consumer groups with
  their lag, and a stream page (``/dashboard#stream=<id>``) that replays a stream at its
  recorded pace through ``GET /v1/streams/{id}?pace=original`` and can cut the connection and
  resume it with ``Last-Event-ID``.
- ``GET /v1/dashboard/events``: the live feed, SSE (:mod:`.dashboard_feed`).
- ``GET /v1/metrics/series?metric=&model=&window=&step=``: percentiles per step
  (:func:`fakeai.timeseries.series.query_series`); ``window`` as ``/v1/metrics/latency`` reads
  it; a bad parameter is a 400 naming it.
- ``GET /v1/metrics/groups``: the consumer groups of the firehose and request partitions, with
  pending and lag (:func:`fakeai.streams.groups.consumer_groups`).

The ``/v1/`` endpoints sit behind the API key like the rest of the API; the page asks for a
key when one is answered 401 and keeps it in ``sessionStorage``. The live feed is not in the
OpenAPI document: it is an endless stream (it ends only after ``max_stream_s``), which a
schema-driven client or fuzzer cannot call and wait for.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from fakeai.services.edge.dashboard_feed import feed_endpoint
from fakeai.services.edge.openapi import _ERRORS, _json, _query, _ref
from fakeai.services.edge.state import edge_state
from fakeai.streams.groups import consumer_groups
from fakeai.timeseries.query import LATENCY_METRICS, parse_window
from fakeai.timeseries.series import parse_metric, parse_step, query_series

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "PAGE", "STATIC_DIR", "routes"]

PAGE: Final = "/dashboard"
STATIC_DIR: Final = Path(str(files(__package__ or "fakeai.services.edge") / "static"))
"""The page's files, inside this package (so a wheel carries them)."""


def _page_html() -> bytes:
    return (STATIC_DIR / "dashboard.html").read_bytes()


async def page(request: Request) -> Response:
    return HTMLResponse(_page_html(), headers={"Cache-Control": "no-cache"})


async def root(request: Request) -> Response:
    return RedirectResponse(PAGE)


async def series_endpoint(request: Request) -> Response:
    """``GET /v1/metrics/series`` (module docstring)."""
    state = edge_state(request)
    q = request.query_params
    metric = parse_metric(q.get("metric"))
    window = parse_window(q.get("window"), state.settings)
    step = parse_step(q.get("step"))
    body = await query_series(
        state.redis,
        state.keys,
        state.settings,
        metric=metric,
        model=q.get("model") or None,
        window_s=window,
        step_s=step,
    )
    return JSONResponse(body)


async def groups_endpoint(request: Request) -> Response:
    """``GET /v1/metrics/groups`` (module docstring)."""
    state = edge_state(request)
    groups = await consumer_groups(state.redis, state.keys, state.settings)
    return JSONResponse({"object": "list", "data": groups})


routes: list[BaseRoute] = [
    Route("/", root, methods=["GET"]),
    Route(PAGE, page, methods=["GET"]),
    Mount(f"{PAGE}/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static"),
    Route("/v1/dashboard/events", feed_endpoint, methods=["GET"]),
    Route("/v1/metrics/series", series_endpoint, methods=["GET"]),
    Route("/v1/metrics/groups", groups_endpoint, methods=["GET"]),
]


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/metrics/series": {
        "get": {
            "summary": "Latency percentiles per model, one point per step, over a window",
            "operationId": "getMetricSeries",
            "parameters": [
                {
                    **_query("metric", {"type": "string", "enum": list(LATENCY_METRICS)}, "Metric"),
                    "required": True,
                },
                _query("model", {"type": "string"}, "One model (default: every model)"),
                _query("window", {"type": "integer", "minimum": 1}, "Seconds (default 60)"),
                _query(
                    "step",
                    {"type": "number", "exclusiveMinimum": 0},
                    "Seconds per point, rounded up to whole buckets (default: window / 60)",
                ),
            ],
            "responses": {
                "200": _json(_ref("MetricSeries"), "Points where samples exist, per model"),
                **_ERRORS,
            },
        }
    },
    "/v1/metrics/groups": {
        "get": {
            "summary": "Consumer groups of the firehose and request partitions, with their lag",
            "operationId": "listConsumerGroups",
            "responses": {
                "200": _json(_ref("ConsumerGroupList"), "Groups, summed over partitions"),
                **_ERRORS,
            },
        }
    },
}

_NUMBER_OR_NULL: Final = {"type": ["number", "null"]}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "MetricSeries": {
        "type": "object",
        "required": ["object", "metric", "unit", "window_s", "step_s", "models"],
        "properties": {
            "object": {"const": "metrics.series"},
            "metric": {"type": "string"},
            "unit": {"type": "string"},
            "window_s": {"type": "number"},
            "step_s": {"type": "integer"},
            "resolution_s": {"type": "integer"},
            "start": {"type": "number"},
            "end": {"type": "number"},
            "models": {
                "type": "object",
                "additionalProperties": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["t", "count"],
                        "properties": {
                            "t": {"type": "integer"},
                            "count": {"type": "integer"},
                            "mean": _NUMBER_OR_NULL,
                            "p50": _NUMBER_OR_NULL,
                            "p90": _NUMBER_OR_NULL,
                            "p99": _NUMBER_OR_NULL,
                        },
                    },
                },
            },
        },
    },
    "ConsumerGroupList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["stream", "group", "consumers", "pending", "lag", "partitions"],
                    "properties": {
                        "stream": {"type": "string", "enum": ["firehose", "requests"]},
                        "group": {"type": "string"},
                        "consumers": {"type": "integer"},
                        "pending": {"type": "integer"},
                        "lag": {"type": ["integer", "null"]},
                        "partitions": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
}
