"""The write coalescer against a real Redis: batching, duplicates, errors, backpressure."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis

from fakeai.services.producer.writer import LogWriter, Op, Pipeline, WriteFailed
from fakeai.streams import Keys

pytestmark = pytest.mark.redis


def _xadd(key: str, seq: int) -> Op:
    def op(pipe: Pipeline) -> None:
        pipe.xadd(key, {"k": "c", "d": b"{}", "t": seq}, id=f"1-{seq}")

    return op


async def test_ops_put_together_share_one_round_trip(r: aredis.Redis, keys: Keys) -> None:
    writer = LogWriter(r)
    writer.start()
    key = keys.chunks("coalesce")
    for seq in range(1, 1001):
        await writer.put(_xadd(key, seq))
    await writer.write(lambda pipe: None)
    await writer.close()
    assert await r.xlen(key) == 1000
    assert writer.batches <= 2  # everything queued before the flusher ran goes in one batch
    assert writer.commands == 1000


async def test_duplicate_entry_ids_are_ignored_and_other_errors_fail_the_write(
    r: aredis.Redis, keys: Keys
) -> None:
    writer = LogWriter(r)
    writer.start()
    key = keys.chunks("dups")
    await writer.write(_xadd(key, 1))
    await writer.write(_xadd(key, 1))  # re-sent after a failover: not an error
    assert await r.xlen(key) == 1
    await r.set(keys.meta("wrongtype"), "x")
    with pytest.raises(WriteFailed, match="WRONGTYPE"):
        await writer.write(_xadd(keys.meta("wrongtype"), 1))
    await writer.close()


async def test_put_waits_for_room_when_max_pending_ops_wait(r: aredis.Redis, keys: Keys) -> None:
    writer = LogWriter(r, max_pending=10, max_batch=4)
    key = keys.chunks("backpressure")
    putter = asyncio.create_task(_put_many(writer, key, 50))
    await asyncio.sleep(0)
    assert not putter.done()
    assert writer.pending == 10
    writer.start()
    await asyncio.wait_for(putter, 5)
    await writer.close()
    assert await r.xlen(key) == 50
    assert writer.batches >= 50 // 4


async def _put_many(writer: LogWriter, key: str, n: int) -> None:
    for seq in range(1, n + 1):
        await writer.put(_xadd(key, seq))


async def test_put_nowait_refuses_only_when_max_pending_items_wait(
    r: aredis.Redis, keys: Keys
) -> None:
    writer = LogWriter(r, max_pending=3)
    key = keys.chunks("nowait")
    assert all([writer.put_nowait(_xadd(key, seq)) for seq in (1, 2, 3)])
    assert not writer.put_nowait(_xadd(key, 4))
    assert writer.pending == 3
    writer.start()
    await writer.write(lambda pipe: None)
    assert writer.put_nowait(_xadd(key, 4))
    await writer.close()
    assert await r.xlen(key) == 4
