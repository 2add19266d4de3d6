"""Helpers for producer tests: publish generation requests, read a stream's log back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aredis

from fakeai.streams import Keys, new_stream_id
from fakeai.streams.recording import iter_log
from fakeai.wire import GenerationRequest, encode


def chat_request(
    *,
    max_tokens: int = 12,
    ttft_ms: float | None = 0.0,
    itl_ms: float | None = 0.0,
    seed: int | None = 7,
    stream: bool = True,
    include_usage: bool = False,
    retention_s: int | None = None,
    accepted_at: float | None = None,
    **body: Any,
) -> GenerationRequest:
    created_ms = int(time.time() * 1000)
    payload: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Tell me about Redis Streams."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
        **body,
    }
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    return GenerationRequest(
        stream_id=new_stream_id("chat", created_ms),
        endpoint="chat",
        model="gpt-4o",
        created_ms=created_ms,
        accepted_at=time.time() if accepted_at is None else accepted_at,
        body=payload,
        stream=stream,
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
        seed=seed,
        retention_s=retention_s,
    )


def completion_request(*, max_tokens: int = 10, seed: int | None = 3) -> GenerationRequest:
    created_ms = int(time.time() * 1000)
    return GenerationRequest(
        stream_id=new_stream_id("completion", created_ms),
        endpoint="completion",
        model="gpt-4o",
        created_ms=created_ms,
        accepted_at=time.time(),
        body={"model": "gpt-4o", "prompt": "Once upon a time", "max_tokens": max_tokens},
        ttft_ms=0.0,
        itl_ms=0.0,
        seed=seed,
    )


async def publish(r: aredis.Redis, keys: Keys, *requests: GenerationRequest) -> None:
    """What the edge does: meta ``queued``, then the request on the requests stream."""
    pipe = r.pipeline(transaction=False)
    for req in requests:
        pipe.hset(keys.meta(req.stream_id), mapping={"status": "queued", "model": req.model})
        pipe.zadd(keys.active(), {req.stream_id: req.created_ms})
        pipe.xadd(keys.requests(), {"r": encode(req)})
    await pipe.execute()


async def cancel(r: aredis.Redis, keys: Keys, stream_id: str) -> None:
    """What the edge's cancel endpoint does."""
    await r.hset(keys.meta(stream_id), "cancel_requested", "1")
    await r.xadd(keys.cancels(), {"c": encode({"stream_id": stream_id, "reason": "test"})})


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: str
    seq: int
    kind: str
    data: bytes
    t_us: int

    def json(self) -> Any:
        return msgspec.json.decode(self.data)


async def read_log(r: aredis.Redis, keys: Keys, stream_id: str) -> list[LogEntry]:
    out = []
    async for eid, fields in iter_log(r, keys, stream_id):
        out.append(
            LogEntry(
                id=eid,
                seq=int(eid.rpartition("-")[2]),
                kind=fields[b"k"].decode(),
                data=fields[b"d"],
                t_us=int(fields[b"t"]),
            )
        )
    return out


async def finished_log(r: aredis.Redis, keys: Keys, stream_id: str) -> list[LogEntry] | None:
    """The log once it ends with a terminal entry, else None (for ``eventually``)."""
    log = await read_log(r, keys, stream_id)
    return log if log and log[-1].kind in ("d", "e") else None


def chat_text(log: list[LogEntry]) -> str:
    parts = []
    for e in log:
        if e.kind != "c":
            continue
        for choice in e.json()["choices"]:
            parts.append(choice["delta"].get("content") or "")
    return "".join(parts)
