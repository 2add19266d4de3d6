"""The Realtime API over WebSocket: ``/v1/realtime?model=...``, each response a durable stream.

Handshake: the key comes as ``Authorization: Bearer <key>`` (the openai SDKs' realtime
clients), or as the subprotocol ``openai-insecure-api-key.<key>`` (browsers, which cannot set
headers); the edge middleware lets WebSocket scopes through, so the key is checked here. A bad
key is refused with an HTTP 401, an unknown model with a 404 (both OpenAI-shaped JSON), a
closing edge with a 503. ``X-FakeAI-TTFT-Ms`` / ``-ITL-Ms`` / ``-Seed`` on the handshake apply
to every response of the session.

The session speaks the Realtime API (GA) event protocol; its state and divergences (no voice
activity detection: responses start on ``response.create``) are in :mod:`.realtime_session`.
Client events answered here: ``session.update`` (``session.updated``),
``conversation.item.create`` (``conversation.item.added`` then ``.done``),
``input_audio_buffer.append`` / ``.commit`` (``input_audio_buffer.committed`` and the user
item) / ``.clear`` (``.cleared``), ``response.create``, ``response.cancel``; anything else,
or a malformed event, is an ``error`` event (the connection stays open).

Durability: ``response.create`` becomes a stream (``rtresp_…``, owned by the caller's tenant)
through :func:`.publish.open_stream`, as a chat request does, and the producer writes each of
the response's server events (``response.created`` … ``response.output_text.delta`` /
``response.output_audio.delta`` + ``response.output_audio_transcript.delta`` …
``response.done``) as one entry of its log, paced on the model's latency profile. The edge
forwards the entries as text frames, as stored. So an observer tails a response with
``GET /v1/streams/{response_id}`` (SSE, events named by type), ``replay`` and ``export`` see it
as any stream, and a client disconnect is not a cancel: the response goes on in the log.

Resume (an extension of the protocol): every logged event's ``event_id`` is
``event_<entry id>`` and the response id is the stream id. A client that lost its connection
connects again and sends::

    {"type": "response.resume", "response_id": "rtresp_…", "after_event_id": "event_…"}

(``after_event_id`` optional: from the start) and receives every event of that response after
that one, exactly once and in order, then live until ``response.done``: the same guarantee
as ``Last-Event-ID`` on SSE. A response that is not the tenant's, or has expired, is an
``error`` event (``stream_not_found`` / ``stream_expired``); a position it cannot resume from,
``invalid_event_id``.

A response the log ends with an error entry (shutdown, timeout, …) is answered with an
``error`` event carrying that code; an edge that cuts a response short (shutdown, a slow
client) sends an ``error`` event whose code says so, and the client may resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgspec
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from fakeai.errors import ApiError, NotFound, ServiceUnavailable, Unauthorized
from fakeai.services.edge.formats import event_type
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.protocol import ARRIVED
from fakeai.services.edge.publish import check_model, open_stream
from fakeai.services.edge.realtime_session import (
    RealtimeError,
    Session,
    error_event,
    server_event,
)
from fakeai.services.edge.state import EdgeState
from fakeai.services.edge.stream_log import open_log
from fakeai.services.edge.stream_routes import request_cancel
from fakeai.services.edge.tenants import SCOPE_KEY, Tenant
from fakeai.streams.log import Entry, Kind
from fakeai.streams.positions import entry_of_event
from fakeai.wire import decode_error, encode

__all__ = ["routes"]

logger = logging.getLogger(__name__)

_KEY_PROTOCOL = "openai-insecure-api-key."
_DONE = b"response.done"
_json_decode = msgspec.json.Decoder().decode


def _subprotocols(ws: WebSocket) -> list[str]:
    raw = ws.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _authenticate(state: EdgeState, ws: WebSocket) -> Tenant | None:
    """The caller, from ``Authorization`` or the key subprotocol (module docstring)."""
    authorization = ws.headers.get("authorization")
    if authorization is None:
        for p in _subprotocols(ws):
            if p.startswith(_KEY_PROTOCOL):
                authorization = "Bearer " + p[len(_KEY_PROTOCOL) :]
    return state.tenants.authenticate(authorization)


async def _refuse(ws: WebSocket, error: ApiError) -> None:
    """Refuse the handshake with ``error`` as an HTTP answer (or a policy close, on a server
    without the WebSocket denial response extension)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        body = JSONResponse(error.body(), status_code=error.status, headers=error.headers())
        await ws.send_denial_response(body)
    else:
        await ws.close(code=1008, reason=error.body()["error"]["message"][:120])


class _Connection:
    """One accepted realtime connection: its session, its sender, its running response."""

    def __init__(self, ws: WebSocket, state: EdgeState, model: str) -> None:
        self.ws = ws
        self.state = state
        self.session = Session(model=model)
        self.lock = asyncio.Lock()
        self.active: str | None = None
        """The stream id of the response being forwarded, if any."""
        self.forwarder: asyncio.Task[None] | None = None

    async def send(self, event: dict[str, Any] | bytes) -> None:
        data = event if isinstance(event, bytes) else encode(event)
        async with self.lock:  # frames of two tasks never interleave
            await self.ws.send({"type": "websocket.send", "text": data.decode()})

    async def run(self) -> None:
        await self.send(server_event("session.created", session=self.session.config))
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text") or message.get("bytes") or b""
                await self._handle(raw)
        except WebSocketDisconnect:
            return
        finally:
            if self.forwarder is not None:  # not a cancel: the response goes on in the log
                self.forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.forwarder

    async def _handle(self, raw: str | bytes) -> None:
        try:
            event = _json_decode(raw)
        except msgspec.DecodeError as e:
            await self.send(error_event(f"the event is not valid JSON: {e}", code="invalid_json"))
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send(
                error_event("an event is a JSON object with a type", code="invalid_event")
            )
            return
        client_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = _HANDLERS.get(event["type"])
        try:
            if handler is None:
                raise RealtimeError(
                    f"unknown or unsupported event type {event['type']!r}",
                    code="invalid_event",
                    param="type",
                )
            await handler(self, event)
        except RealtimeError as e:
            await self.send(
                error_event(str(e), code=e.code, param=e.param, client_event_id=client_id)
            )
        except ApiError as e:
            err = e.body()["error"]
            await self.send(
                error_event(
                    err["message"],
                    type_=err["type"],
                    code=err.get("code"),
                    param=err.get("param"),
                    client_event_id=client_id,
                )
            )
        except WebSocketDisconnect:
            raise
        except Exception as e:  # a bug or Redis failing: say so, keep the session
            logger.warning("realtime: %s failed: %r", event["type"], e)
            await self.send(
                error_event(
                    f"the server failed to handle {event['type']}: {type(e).__name__}",
                    type_="server_error",
                    code="server_error",
                    client_event_id=client_id,
                )
            )

    # -- client events --------------------------------------------------------------------

    async def session_update(self, event: dict[str, Any]) -> None:
        config = self.session.update(event.get("session"))
        await self.send(server_event("session.updated", session=config))

    async def item_create(self, event: dict[str, Any]) -> None:
        previous = event.get("previous_item_id")
        item = self.session.add_item(
            event.get("item"), previous if isinstance(previous, str) else None
        )
        await self._item_added(item)

    async def _item_added(self, item: dict[str, Any]) -> None:
        shown = Session.public(item)
        previous = self.session.previous_of(item["id"])
        await self.send(
            server_event("conversation.item.added", previous_item_id=previous, item=shown)
        )
        await self.send(
            server_event("conversation.item.done", previous_item_id=previous, item=shown)
        )

    async def audio_append(self, event: dict[str, Any]) -> None:
        self.session.append_audio(event.get("audio"))

    async def audio_commit(self, event: dict[str, Any]) -> None:
        item = self.session.commit_audio()
        previous = self.session.previous_of(item["id"])
        await self.send(
            server_event(
                "input_audio_buffer.committed", previous_item_id=previous, item_id=item["id"]
            )
        )
        await self._item_added(item)

    async def audio_clear(self, event: dict[str, Any]) -> None:
        self.session.buffer.clear()
        await self.send(server_event("input_audio_buffer.cleared"))

    def _check_idle(self) -> None:
        if self.active is not None:
            raise RealtimeError(
                f"Conversation already has an active response in progress: {self.active}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )

    async def response_create(self, event: dict[str, Any]) -> None:
        self._check_idle()
        self.state.check_open()
        body = self.session.generation_body(event.get("response"))
        # The arrival of this response.create is the origin of its TTFT.
        self.ws.scope.setdefault("state", {})[ARRIVED] = time.time()
        opened = await open_stream(
            self.ws,
            self.state,
            kind="realtime",
            endpoint="chat",
            model=self.session.model,
            body=body,
            stream=True,
            seed=None,
        )
        self._forward(opened.sid, opened.entries, opened.release)

    async def response_resume(self, event: dict[str, Any]) -> None:
        self._check_idle()
        sid = event.get("response_id")
        if not isinstance(sid, str):
            raise RealtimeError(
                "response_id must be a string", code="invalid_value", param="response_id"
            )
        after = event.get("after_event_id")
        raw_last = entry_of_event(after) if isinstance(after, str) and after else None
        tenant = self.ws.scope[SCOPE_KEY]
        log = await open_log(
            self.state,
            sid,
            raw_last,
            tenant,
            param="after_event_id",
            position=after if raw_last else None,
        )
        self._forward(sid, log.entries, log.release)

    async def response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if self.active is None or (isinstance(wanted, str) and wanted != self.active):
            raise RealtimeError(
                "Cancellation failed: no active response found.", code="response_cancel_not_active"
            )
        await request_cancel(self.state, self.active)

    # -- forwarding -----------------------------------------------------------------------

    def _forward(
        self, sid: str, entries: AsyncGenerator[list[Entry], None], release: Callable[[], None]
    ) -> None:
        self.active = sid
        self.forwarder = asyncio.create_task(self._pump(sid, entries, release))

    async def _pump(
        self, sid: str, entries: AsyncGenerator[list[Entry], None], release: Callable[[], None]
    ) -> None:
        """Send the response's logged events until its end (module docstring)."""
        try:
            async for batch in entries:
                for e in batch:
                    if e.kind == Kind.ERROR:
                        await self._ended_with_error(sid, e.data)
                    elif not e.terminal:
                        if event_type(e.data) == _DONE:
                            self._finished(sid, e.data)
                        await self.send(e.data)
                    if e.terminal:
                        return
        except StreamInterrupted as e:
            body = e.body()
            await self.send(error_event(body.message, type_=body.type, code=body.code))
        except Exception as e:  # Redis failed mid-response: say so, the client may resume
            logger.warning("realtime response %s: forwarding failed: %s", sid, e)
            await self.send(
                error_event(
                    "Redis is unavailable; resume the response with response.resume",
                    type_="server_error",
                    code="redis_unavailable",
                )
            )
        finally:
            if self.active == sid:
                self.active = None
            release()
            await entries.aclose()

    def _finished(self, sid: str, data: bytes) -> None:
        """``response.done`` is on its way: the session is idle again and the output joins
        the conversation (unless the response was outside it)."""
        if self.active == sid:
            self.active = None
        response = _json_decode(data).get("response") or {}
        if response.get("conversation_id") is not None:
            self.session.add_output(response)

    async def _ended_with_error(self, sid: str, data: bytes) -> None:
        err = decode_error(data).error
        if err.code == "cancelled":
            return  # the producer wrote response.done (status cancelled) before it
        if self.active == sid:
            self.active = None
        await self.send(error_event(err.message, type_=err.type, code=err.code, param=err.param))


_HANDLERS = {
    "session.update": _Connection.session_update,
    "conversation.item.create": _Connection.item_create,
    "input_audio_buffer.append": _Connection.audio_append,
    "input_audio_buffer.commit": _Connection.audio_commit,
    "input_audio_buffer.clear": _Connection.audio_clear,
    "response.create": _Connection.response_create,
    "response.cancel": _Connection.response_cancel,
    "response.resume": _Connection.response_resume,
}


async def realtime_endpoint(ws: WebSocket) -> None:
    state: EdgeState = ws.app.state.edge
    tenant = _authenticate(state, ws)
    if tenant is None:
        await _refuse(ws, Unauthorized("invalid or missing API key (Authorization: Bearer <key>)"))
        return
    model = ws.query_params.get("model") or ""
    try:
        if not model:
            raise NotFound(
                "model: a realtime session needs ?model=<model>",
                param="model",
                code="model_not_found",
            )
        check_model(model)
        state.check_open()
        if not state.ready:
            raise ServiceUnavailable(
                "Redis is unavailable; retry later", code="redis_unavailable", retry_after_s=1
            )
    except ApiError as e:
        await _refuse(ws, e)
        return
    ws.scope[SCOPE_KEY] = tenant
    offered = _subprotocols(ws)
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    await _Connection(ws, state, model).run()
    with contextlib.suppress(RuntimeError):  # already closed by the client
        await ws.close()


routes: list[BaseRoute] = [WebSocketRoute("/v1/realtime", realtime_endpoint)]
