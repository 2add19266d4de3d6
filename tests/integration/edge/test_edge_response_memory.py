"""An open streaming response holds no routing frames: the endpoint, its ``Request`` and the
request body are released before the first byte goes out (:class:`RunStreamsOutside`).

Regression for S5 (edge memory per idle connection): every idle SSE connection kept the whole
Starlette stack alive (router, exception wrappers, the endpoint's locals), ~5 KiB each.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.support.servers import run_asgi, wait_until

from fakeai.services.edge.responses import EventStream, RunStreamsOutside


class _Body:
    """The request body as the endpoint kept it (bytes cannot be weakly referenced)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _app(seen: dict[str, Any]) -> Starlette:
    seen["stop"] = threading.Event()

    async def endpoint(request: Request) -> Response:
        body = _Body(await request.body())
        seen["body"] = weakref.ref(body)
        seen["request"] = weakref.ref(request)

        async def content() -> AsyncGenerator[bytes, None]:
            yield b"data: first\n\n"
            seen["streaming"] = True
            await asyncio.to_thread(seen["stop"].wait, 10.0)
            yield b"data: last\n\n"

        return EventStream(
            content(), headers={"X-Test": "1"}, media_type="text/event-stream", send_timeout=30.0
        )

    return Starlette(
        routes=[Route("/s", endpoint, methods=["POST"])],
        middleware=[Middleware(RunStreamsOutside)],
    )


def test_open_stream_releases_the_endpoint_request_and_body() -> None:
    seen: dict[str, Any] = {}
    with run_asgi(_app(seen)) as url, httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{url}/s", content=b"x" * 10_000) as resp:
            assert resp.status_code == 200
            assert resp.headers["x-test"] == "1"
            lines = resp.iter_lines()
            assert next(lines) == "data: first"
            wait_until(lambda: seen.get("streaming"))

            def released() -> bool:
                gc.collect()
                return seen["request"]() is None and seen["body"]() is None

            wait_until(released)
            seen["stop"].set()
            rest = [line for line in lines if line]
        assert rest == ["data: last"]


def test_without_the_middleware_the_response_runs_in_place() -> None:
    seen: dict[str, Any] = {}
    app = _app(seen)
    app.user_middleware.clear()
    with (
        run_asgi(app) as url,
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{url}/s", content=b"{}") as resp,
    ):
        lines = resp.iter_lines()
        assert next(lines) == "data: first"
        wait_until(lambda: seen.get("streaming"))
        gc.collect()
        assert seen["request"]() is not None  # still inside the routing stack
        seen["stop"].set()
        assert [line for line in lines if line] == ["data: last"]
