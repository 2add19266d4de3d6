"""Helpers for producer tests: publish generation requests, read a stream's log back.

They work on a single Redis and on a cluster (a ``fakeai.streams.client.RedisClient``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import hiredis
import msgspec

from fakeai.services.producer.records import StreamRecords
from fakeai.streams import PRODUCERS_GROUP, Keys, new_stream_id, partition_for
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Link, iter_entries
from fakeai.wire import GenerationRequest, encode

PARTITIONS = 4
"""``Settings.request_partitions`` of the tests (its default)."""


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


def chat_request_on(partition: int, **kwargs: Any) -> GenerationRequest:
    """A :func:`chat_request` whose stream falls on requests partition ``partition``."""
    while True:
        req = chat_request(**kwargs)
        if partition_for(req.stream_id, PARTITIONS) == partition:
            return req


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


async def publish(
    r: RedisClient, keys: Keys, *requests: GenerationRequest, partitions: int = PARTITIONS
) -> None:
    """What the edge does: meta ``queued``, then the request on its requests partition."""
    for req in requests:  # in order: a request never reaches a producer before its meta
        await r.hset(keys.meta(req.stream_id), mapping={"status": "queued", "model": req.model})
        await r.zadd(keys.active(), {req.stream_id: req.created_ms})
        await r.xadd(keys.requests_for(req.stream_id, partitions), {"r": encode(req)})


async def cancel(r: RedisClient, keys: Keys, stream_id: str) -> None:
    """What the edge's cancel endpoint does."""
    await r.hset(keys.meta(stream_id), "cancel_requested", "1")
    await r.xadd(keys.cancels(), {"c": encode({"stream_id": stream_id, "reason": "test"})})


async def pending(r: RedisClient, keys: Keys, partitions: int = PARTITIONS) -> int:
    """Requests read by group ``producers`` and not acknowledged, over every partition."""
    total = 0
    for key in keys.all_requests(partitions):
        if await r.exists(key):
            total += int((await r.xpending(key, PRODUCERS_GROUP))["pending"])
    return total


async def acked(r: RedisClient, keys: Keys, partitions: int = PARTITIONS) -> bool:
    """Every request read by the group has been acknowledged (for ``eventually``)."""
    return await pending(r, keys, partitions) == 0


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: str
    seq: int
    kind: str
    data: bytes
    t_us: int

    def json(self) -> Any:
        return msgspec.json.decode(self.data)


async def read_log(r: RedisClient, keys: Keys, stream_id: str) -> list[LogEntry]:
    out = []
    async for page in iter_entries(r, keys.chunks(stream_id)):
        for e in page:
            out.append(LogEntry(e.id.decode(), e.seq, e.kind.decode(), e.data, e.t_us))
    return out


async def finished_log(r: RedisClient, keys: Keys, stream_id: str) -> list[LogEntry] | None:
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


def stream_records(
    keys: Keys,
    link: Link,
    *,
    sid: str,
    model: str,
    created_ms: int,
    msg_id: bytes = b"1-1",
    retention_s: int = 60,
    body: dict[str, Any] | None = None,
) -> StreamRecords:
    """The records of a chat stream ``sid`` read from request ``msg_id`` (no I/O)."""
    req = GenerationRequest(
        stream_id=sid,
        endpoint="chat",
        model=model,
        created_ms=created_ms,
        accepted_at=1_700_000_000.5,
        body=body or {},
    )
    return StreamRecords(
        request=req,
        msg_id=msg_id,
        request_key=keys.requests_for(sid, PARTITIONS),
        keys=keys,
        link=link,
        firehose_partitions=PARTITIONS,
        retention_s=retention_s,
    )


def commands(packed: bytes) -> list[list[bytes]]:
    """The commands in ``packed``, decoded by hiredis's protocol reader."""
    reader = hiredis.Reader()
    reader.feed(packed)
    out = []
    while (command := reader.gets()) is not False:
        out.append(command)
    return out
