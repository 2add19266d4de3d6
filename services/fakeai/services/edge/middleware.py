"""The edge's middleware: what every request passes before routing, and every response after.

Two pure-ASGI layers, outermost first:

1. :class:`FrontDoor`, outside everything (the error middleware and :class:`.responses.
   RunStreamsOutside` included, so streaming responses and 500s get its headers too):
   ``x-request-id`` on every response (a client's own ``X-Request-Id`` echoed when it is 1-256
   printable ASCII characters, else ``req_<32 hex>``; also in ``scope["state"]["request_id"]``),
   and CORS when ``FAKEAI_CORS_ORIGINS`` is set (Starlette's ``CORSMiddleware``: preflights
   answered before any key check, since browsers send no ``Authorization`` on them; the
   headers browsers' code reads exposed: :data:`EXPOSED_HEADERS`).
2. :class:`EdgeMiddleware`, inside the error middleware: stamps the arrival time, checks the
   API key and the body size.

Keys (DESIGN.md, "Tenants and limits"): ``/v1/*`` needs a valid key when keys are configured.
``/metrics`` and ``/v1/metrics/*`` need one too unless ``FAKEAI_PUBLIC_METRICS=true`` (then
they are open, for a scraper without a key; a valid key is still taken as its tenant's);
``/healthz``, ``/health``, ``/readyz``, ``/openapi.json`` and the dashboard's page and static
files (``/dashboard*``: they hold no data; the page asks for a key and reads everything it
shows from ``/v1/`` with it) are always open. Without keys
everything is open. A missing or unknown key is a 401 ``invalid_api_key``, OpenAI-shaped.

Cost: one wrapped ``send`` per response (two with CORS on): a function call per written event.
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import Final

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fakeai.config import Settings
from fakeai.errors import ApiError, PayloadTooLarge, Unauthorized, error_body
from fakeai.services.edge.protocol import ARRIVED
from fakeai.services.edge.tenants import SCOPE_KEY, Tenants

__all__ = [
    "EXPOSED_HEADERS",
    "REQUEST_ID",
    "EdgeMiddleware",
    "FrontDoor",
    "error_response",
    "is_metrics_path",
]

REQUEST_ID: Final = "request_id"
"""Key of the request id in ``scope["state"]``."""
EXPOSED_HEADERS: Final = (
    "X-Stream-Id",
    "x-request-id",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "Retry-After",
    "retry-after-ms",
)
"""Response headers a browser's script may read on a cross-origin response (CORS)."""
_CLIENT_ID = re.compile(rb"[\x21-\x7e]{1,256}")
_REQUEST_IDS = random.Random()
"""Request ids are for correlating logs, not secrets: a generator seeded once from the OS
(a ``getrandom`` call per request costs several times as much, on the event loop); a forked
worker seeds its own."""
os.register_at_fork(after_in_child=_REQUEST_IDS.seed)


def error_response(e: ApiError) -> Response:
    """The OpenAI-shaped JSON answer of ``e``, with its status and headers."""
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers())


def is_metrics_path(path: str) -> bool:
    """Is ``path`` one of those ``FAKEAI_PUBLIC_METRICS`` opens (module docstring)?"""
    return path == "/metrics" or path.startswith("/v1/metrics/")


class _Cors(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as an OpenAI-shaped 400."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = bytes(response.body).decode()  # "Disallowed CORS origin, method"
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.pop("content-type", None)
        return JSONResponse(
            error_body(message, "invalid_request_error", code="cors_refused"),
            status_code=response.status_code,
            headers=headers,
        )


class FrontDoor:
    """Pure ASGI, outermost: the request id and CORS (module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        origins = settings.cors_origin_list
        self.app: ASGIApp = app
        if origins:
            self.app = _Cors(
                app,
                allow_origins=origins,
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=list(EXPOSED_HEADERS),
                max_age=600,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})[REQUEST_ID] = request_id.decode()
        header = (b"x-request-id", request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _request_id(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _CLIENT_ID.fullmatch(value):
            return bytes(value)
    return b"req_%032x" % _REQUEST_IDS.getrandbits(128)


class EdgeMiddleware:
    """Pure ASGI: stamps the arrival time, checks the API key and the body size.

    ``scope["state"]["arrived"]`` (Unix s) is the origin of TTFT: stamped by the HTTP protocol
    (:mod:`.protocol`) as the request is parsed, else (other servers) here, before routing.
    Which paths need a key: the module docstring.
    """

    def __init__(self, app: ASGIApp, settings: Settings, tenants: Tenants) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.tenants = tenants
        self.public_metrics = settings.public_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {}).setdefault(ARRIVED, time.time())
        headers = dict(scope["headers"])
        path: str = scope["path"]
        metrics = is_metrics_path(path)
        if path.startswith("/v1/") or metrics:
            tenant = self.tenants.authenticate(headers.get(b"authorization"))
            if tenant is not None:
                scope[SCOPE_KEY] = tenant
            elif not (metrics and self.public_metrics):
                err = Unauthorized("invalid or missing API key (Authorization: Bearer <key>)")
                await error_response(err)(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await error_response(self._too_large())(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            # Content-Length may be absent (chunked) or wrong: count what really arrives.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body larger than {self.limit} bytes", param=None)
