"""Stored Responses API responses: the record kept beside a response's stream, and reading one.

A response created with ``store`` (the default) gets a record at ``Keys.conversation(sid)``,
in the stream's hash tag (one slot with its log and meta hash), written with the stream's own
record (:func:`.publish.open_stream`'s ``extra``) and kept as long as the meta hash
(retention + ``META_SAFETY_S``). It holds what the log does not: the request (without its
input), this turn's input items (with their ids, for ``input_items``) and the items of earlier
turns (``previous_response_id``). The response itself (status, output, usage) is folded from
the log (:mod:`.response_fold`). A response created with ``store: false`` has no record: the
Responses endpoints answer 404 for it, as OpenAI does (its stream stays readable at
``/v1/streams/{id}`` like any other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from fakeai.content.responses_api import response_object
from fakeai.errors import BadRequest, NotFound
from fakeai.services.edge.publish import META_SAFETY_S
from fakeai.services.edge.response_fold import fold_response
from fakeai.services.edge.state import EdgeState
from fakeai.services.edge.stream_routes import Snapshot, snapshot
from fakeai.services.edge.tenants import Tenant, visible
from fakeai.streams import created_ms_of
from fakeai.streams.log import Entry, iter_entries
from fakeai.streams.positions import is_response_id

__all__ = ["Conversation", "Stored", "history_of", "load", "read_log", "record", "response_of"]


class Conversation(msgspec.Struct, kw_only=True):
    """The stored record of one response (module docstring)."""

    request: dict[str, Any]
    """The validated request body without ``input``."""
    input: list[dict[str, Any]]
    """This turn's input items, each with its ``id``."""
    history: list[dict[str, Any]] = []
    """The input and output items of the earlier turns, oldest first."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Conversation)


def record(state: EdgeState, conversation: Conversation) -> Any:
    """The command that stores ``conversation`` (an ``extra`` of :func:`.publish.open_stream`)."""
    data = _encoder.encode(conversation)
    retention = state.settings.retention_s

    def add(pipe: Any, sid: str) -> None:
        ttl = retention + META_SAFETY_S if retention else None
        pipe.set(state.keys.conversation(sid), data, ex=ttl)

    return add


def _not_found(sid: str) -> NotFound:
    return NotFound(f"Response with id '{sid}' not found.", param="response_id")


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored response as one read finds it."""

    sid: str
    created_ms: int
    conversation: Conversation
    snap: Snapshot


async def load(state: EdgeState, tenant: Tenant, sid: str) -> Stored:
    """The stored response ``sid``; a 404 for an id that is not a response's, a response
    that was not stored, has expired or was deleted, or one of another key."""
    created_ms = created_ms_of(sid) if is_response_id(sid) else None
    if created_ms is None:
        raise _not_found(sid)
    raw: Any = await state.redis.get(state.keys.conversation(sid))
    if raw is None:
        raise _not_found(sid)
    snap = await snapshot(state, sid)
    if not snap.exists or not visible(tenant, snap.meta):
        raise _not_found(sid)
    try:
        conversation = _decoder.decode(raw)
    except msgspec.DecodeError:
        raise _not_found(sid) from None
    return Stored(sid, created_ms, conversation, snap)


async def read_log(state: EdgeState, sid: str) -> list[Entry]:
    """Every entry of the response's log, in order."""
    out: list[Entry] = []
    async for page in iter_entries(state.redis, state.keys.chunks(sid)):
        out += page
    return out


def response_of(stored: Stored, entries: list[Entry]) -> dict[str, Any]:
    """The response object folded from the log; the stored request shown ``queued`` until
    the log holds a snapshot (``cancelled`` or ``failed`` if it ended before one)."""
    request = stored.conversation.request
    queued = response_object(
        request,
        response_id=stored.sid,
        created_at=stored.created_ms // 1000,
        model=str(request.get("model", "")),
    )
    start = {**queued, "status": "queued"}
    return fold_response(entries, start) or start


async def history_of(state: EdgeState, tenant: Tenant, previous: str) -> list[dict[str, Any]]:
    """The items a response that continues ``previous`` starts from: that response's history,
    input and output. A 400 (param ``previous_response_id``) when it is unknown, not stored,
    or still running, as OpenAI answers."""
    try:
        stored = await load(state, tenant, previous)
    except NotFound:
        raise BadRequest(
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        ) from None
    if not stored.snap.finished:
        raise BadRequest(
            f"Previous response with id '{previous}' is still in progress; wait for it to "
            "finish before continuing it.",
            param="previous_response_id",
        )
    response = response_of(stored, await read_log(state, previous))
    output = [item for item in response.get("output") or () if isinstance(item, dict)]
    conv = stored.conversation
    return [*conv.history, *conv.input, *output]
