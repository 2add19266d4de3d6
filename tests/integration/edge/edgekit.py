"""Helpers for edge tests: a writer that fakes the producer's log, and an SSE parser.

:class:`LogWriter` writes a stream's meta hash and log entries into the real Redis exactly as
the producer does (entry ids ``<created_ms>-<seq>``, fields ``k``/``d``/``t``, a terminal
entry), so the edge can be tested without a producer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from tests.support.servers import WAIT_S, eventually

from fakeai.config import Settings
from fakeai.services.edge.state import EdgeState
from fakeai.streams import Keys, bucket_for, new_stream_id
from fakeai.streams.client import RedisClient
from fakeai.streams.meta import F
from fakeai.wire import (
    DonePayload,
    ErrorBody,
    ErrorPayload,
    GenerationRequest,
    decode_request,
    encode,
)

MODEL = "gpt-4o"

_json = msgspec.json.Encoder()


def chat_chunk(sid: str, created_ms: int, text: str) -> bytes:
    return _json.encode(
        {
            "id": sid,
            "object": "chat.completion.chunk",
            "created": created_ms // 1000,
            "model": MODEL,
            "choices": [
                {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
            ],
        }
    )


class LogWriter:
    """Writes streams into Redis the way the producer does."""

    def __init__(self, r: RedisClient, keys: Keys, partitions: int | None = None) -> None:
        self.r = r
        self.keys = keys
        self.seq: dict[str, int] = {}
        self.created: dict[str, int] = {}
        n = partitions if partitions is not None else Settings().request_partitions
        self._req_pos: dict[str, str] = dict.fromkeys(keys.all_requests(n), "0-0")

    async def create(
        self,
        *,
        kind: str = "chat",
        created_ms: int | None = None,
        accepted_at: float | None = None,
        status: str = "running",
        bucket: int | None = None,
    ) -> str:
        """A new stream's meta hash (``bucket``: a stream id whose keys sit in that bucket)."""
        created_ms = created_ms if created_ms is not None else int(time.time() * 1000)
        sid = new_stream_id(kind, created_ms)
        while bucket is not None and bucket_for(sid) != bucket:
            sid = new_stream_id(kind, created_ms)
        self.seq[sid] = 0
        self.created[sid] = created_ms
        await self.r.hset(
            self.keys.meta(sid),
            mapping={
                F.STATUS: status,
                F.KIND: kind,
                F.MODEL: MODEL,
                F.CREATED_MS: created_ms,
                F.ACCEPTED_AT: repr(accepted_at if accepted_at is not None else created_ms / 1000),
                F.STREAM: 1,
            },
        )
        return sid

    async def take_request(self, timeout_s: float = WAIT_S) -> GenerationRequest:
        """The next generation request the edge published on any request partition (and
        adopt its stream). Polls each partition: one read may not span slots on a cluster."""

        async def next_entry() -> tuple[str, Any] | None:
            for key, pos in self._req_pos.items():
                rows: Any = await self.r.xrange(key, min=f"({pos}", max="+", count=1)
                if rows:
                    return key, rows[0]
            return None

        found = await eventually(next_entry, timeout_s=timeout_s)
        assert found is not None, "the edge published no generation request"
        key, (eid, fields) = found
        self._req_pos[key] = eid.decode()
        req = decode_request(fields[b"r"])
        self.adopt(req.stream_id, req.created_ms)
        return req

    def adopt(self, sid: str, created_ms: int) -> None:
        """Write entries for a stream the edge created (as a producer that picked it up)."""
        self.seq[sid] = 0
        self.created[sid] = created_ms

    def _next(self, sid: str) -> str:
        self.seq[sid] += 1
        return f"{self.created[sid]}-{self.seq[sid]}"

    async def add(self, sid: str, kind: bytes, data: bytes, t_us: int | None = None) -> str:
        eid = self._next(sid)
        t = t_us if t_us is not None else time.time_ns() // 1000
        await self.r.xadd(self.keys.chunks(sid), {"k": kind, "d": data, "t": t}, id=eid)
        return eid

    async def chunks(
        self, sid: str, texts: list[str], *, t_us: list[int] | None = None
    ) -> list[str]:
        """Append chat chunks in one pipeline; returns their entry ids."""
        pipe = self.r.pipeline(transaction=False)
        ids = []
        for i, text in enumerate(texts):
            eid = self._next(sid)
            t = t_us[i] if t_us is not None else time.time_ns() // 1000
            data = chat_chunk(sid, self.created[sid], text)
            pipe.xadd(self.keys.chunks(sid), {"k": b"c", "d": data, "t": t}, id=eid)
            ids.append(eid)
        await pipe.execute()
        return ids

    async def done(self, sid: str, t_us: int | None = None) -> str:
        eid = await self.add(sid, b"d", encode(DonePayload(finish_reason="stop")), t_us)
        await self.r.hset(self.keys.meta(sid), F.STATUS, "done")
        return eid

    async def error(self, sid: str, code: str = "boom", message: str = "it broke") -> str:
        payload = ErrorPayload(error=ErrorBody(message=message, type="server_error", code=code))
        eid = await self.add(sid, b"e", encode(payload))
        await self.r.hset(self.keys.meta(sid), F.STATUS, "error")
        return eid

    async def response(self, sid: str, body: dict[str, Any]) -> str:
        return await self.add(sid, b"r", _json.encode(body))

    async def finished(self, n: int, **kw: Any) -> tuple[str, list[str], str]:
        """A finished stream of ``n`` chunks ``t0..t{n-1}``: (sid, chunk ids, done id)."""
        sid = await self.create(**kw)
        ids = await self.chunks(sid, [f"t{i} " for i in range(n)])
        return sid, ids, await self.done(sid)


async def lease_producer(
    r: RedisClient | Any, keys: Keys, name: str = "p1", ttl_s: float = 600
) -> None:
    """Register a live producer lease (``Keys.producers()``), as a running producer keeps it:
    ``/readyz`` is 200 only with one."""
    await r.zadd(keys.producers(), {name: int((time.time() + ttl_s) * 1000)})


@dataclass
class Edge:
    url: str
    app: Starlette

    @property
    def state(self) -> EdgeState:
        state: EdgeState = self.app.state.edge
        return state


@dataclass
class SSEEvent:
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def parse_sse(raw: str) -> list[SSEEvent]:
    """Events of an SSE body (comments attach to the event they precede), per WHATWG §9.2."""
    events: list[SSEEvent] = []
    cur = SSEEvent()
    touched = False
    for line in raw.split("\n"):
        if line == "":
            if touched:
                events.append(cur)
            cur, touched = SSEEvent(), False
            continue
        touched = True
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            cur.comments.append(value)
        elif name == "id":
            cur.id = value
        elif name == "data":
            cur.data = value if cur.data is None else cur.data + "\n" + value
        elif name == "retry":
            cur.retry = int(value)
    if touched:
        events.append(cur)
    return events


def data_events(events: list[SSEEvent]) -> list[SSEEvent]:
    return [e for e in events if e.data is not None]
