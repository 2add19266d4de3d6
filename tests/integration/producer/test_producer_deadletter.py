"""Dead letter: a request that killed or outlived its producers is parked, never handed out again.

Two producers that died holding a request are played by two consumer names of group
``producers`` in Redis: the first reads the request (delivery 1), the second claims it (delivery
2), and both leases lapsed. The live producer takes it over (delivery 3) by the lease rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from tests.conftest import BOTH
from tests.integration.producer.conftest import StartProducer
from tests.integration.producer.producerkit import (
    PARTITIONS,
    acked,
    chat_request,
    chat_text,
    finished_log,
    publish,
)
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.content import build_chat_completion
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import ensure_group
from fakeai.streams.meta import StreamMeta
from fakeai.wire import GenerationRequest, decode_error

pytestmark = pytest.mark.redis


async def _held_by_dead_producers(
    rc: RedisClient, keys: Keys, req: GenerationRequest, dead: int
) -> tuple[str, bytes]:
    """Publish ``req`` and have ``dead`` producers that died holding it (each a delivery), their
    leases lapsed; returns ``(partition, entry id)``."""
    key = keys.requests_for(req.stream_id, PARTITIONS)
    await ensure_group(rc, keys.all_requests(PARTITIONS), PRODUCERS_GROUP, "0")
    await publish(rc, keys, req)
    reply = await rc.xreadgroup(PRODUCERS_GROUP, "ghost-1", {key: ">"}, count=1)
    msg_id = (reply[key.encode()] if isinstance(reply, dict) else reply[0][1])[0][0]
    for i in range(2, dead + 1):
        await rc.xclaim(key, PRODUCERS_GROUP, f"ghost-{i}", min_idle_time=0, message_ids=[msg_id])
    [row] = await rc.xpending_range(key, PRODUCERS_GROUP, min="-", max="+", count=10)
    assert row["times_delivered"] == dead
    # the last holder's lease lapsed a while ago (what a SIGKILLed producer leaves behind)
    await rc.zadd(keys.producers(), {f"ghost-{dead}": int(time.time() * 1000) - 60_000})
    return key, msg_id


@BOTH
async def test_request_handed_out_max_deliveries_times_is_parked_and_never_handed_out_again(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
) -> None:
    """Regression (issue 10, finding 1): a request that killed its producer was handed to the
    next one, which died the same way, forever. The invariant: once Redis has handed a request
    out ``max_deliveries`` times without it ending, the next delivery parks it: a dead-letter
    record, an ``e`` entry ``request_failed``, meta ``error``, the XACK."""
    req = chat_request(max_tokens=5)
    key, msg_id = await _held_by_dead_producers(rc, keys, req, dead=2)
    settings = make_settings(max_deliveries=2)
    async with start_producer(settings, reclaim_idle_s=60.0) as p:
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id), timeout_s=10)
        await eventually(lambda: acked(rc, keys))
        assert p.failover.taken_over == 1
    assert [e.kind for e in log] == ["e"]
    error = decode_error(log[0].data).error
    assert error.code == "request_failed"
    assert "parked after 2 deliveries" in error.message
    meta = StreamMeta.from_hash(await rc.hgetall(keys.meta(req.stream_id)))
    assert meta.status == "error"
    assert await rc.zscore(keys.active(), req.stream_id) is None
    [(_, record)] = await rc.xrange(keys.deadletter())
    assert record[b"sid"] == req.stream_id.encode()
    assert record[b"partition"] == key.encode()
    assert record[b"id"] == msg_id
    assert b"parked after 2 deliveries" in record[b"reason"]
    # never handed out again: nothing pending, nothing new to read
    assert await rc.xpending_range(key, PRODUCERS_GROUP, min="-", max="+", count=10) == []
    reply = await rc.xreadgroup(PRODUCERS_GROUP, "ghost-3", {key: ">"}, count=10)
    assert not reply or not any(rows for rows in _rows(reply))


@BOTH
async def test_request_taken_over_below_max_deliveries_is_served(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    """The other side of the rule: a request whose producer died once goes on (delivery 2 of
    a default ``max_deliveries`` of 2)."""
    req = chat_request(max_tokens=5)
    await _held_by_dead_producers(rc, keys, req, dead=1)
    async with start_producer(reclaim_idle_s=60.0):
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id), timeout_s=10)
        await eventually(lambda: acked(rc, keys))
    assert log[-1].kind == "d"
    full = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    assert chat_text(log) == full["choices"][0]["message"]["content"]
    assert await rc.xlen(keys.deadletter()) == 0


def _rows(reply: object) -> list[object]:
    if isinstance(reply, dict):
        return list(reply.values())
    return [rows for _, rows in reply]  # type: ignore[attr-defined]
