"""A :class:`~fakeai.streams.log.batch.Batch` writes what redis-py's pipeline methods of the
same names write, on a single Redis (one MULTI/EXEC) and on a 3-master cluster (one group per
command), and its errors come out as redis-py's pipeline raises them. (A command refused
when queued, as out of memory, aborts the whole transaction:
``tests/integration/edge/test_edge_redis_faults.py`` shows that no record is left.)"""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ResponseError
from tests.conftest import BOTH

from fakeai.streams.client import RedisClient
from fakeai.streams.log import Link
from fakeai.streams.log.batch import Batch, raise_first_error

pytestmark = pytest.mark.redis


def _fill(pipe: Any, prefix: str) -> None:
    """The same commands on a redis-py pipeline or a Batch (their method names agree)."""
    pipe.hset(f"{prefix}:h", mapping={"s": "queued", "n": 12, "f": 1.25, "b": b"\x00raw", "u": "é"})
    pipe.expire(f"{prefix}:h", 3600)
    pipe.zadd(f"{prefix}:z", {"a": 5, "b": 1.5})
    pipe.xadd(f"{prefix}:x", {"r": b"payload"}, minid=0, approximate=True)
    pipe.set(f"{prefix}:s", b"value", ex=60)


async def _state(rc: RedisClient, prefix: str) -> tuple[object, ...]:
    entries = await rc.xrange(f"{prefix}:x")
    return (
        await rc.hgetall(f"{prefix}:h"),
        0 < await rc.ttl(f"{prefix}:h") <= 3600,
        await rc.zrange(f"{prefix}:z", 0, -1, withscores=True),
        [fields for _, fields in entries],
        await rc.get(f"{prefix}:s"),
        0 < await rc.ttl(f"{prefix}:s") <= 60,
    )


@BOTH
async def test_a_batch_writes_what_the_pipeline_writes(rc: RedisClient, key_prefix: str) -> None:
    link = Link(rc)
    pipe = rc.pipeline(transaction=False)
    _fill(pipe, f"{key_prefix}:py")
    await pipe.execute()
    batch = Batch(link.slot)
    _fill(batch, f"{key_prefix}:raw")
    assert len(batch) == 5
    groups = batch.groups() if link.cluster else batch.transaction()
    raise_first_error(await link.execute(groups))
    ours = await _state(rc, f"{key_prefix}:raw")
    assert ours == await _state(rc, f"{key_prefix}:py")
    assert ours[0] == {
        b"s": b"queued",
        b"n": b"12",
        b"f": b"1.25",
        b"b": b"\x00raw",
        b"u": "é".encode(),
    }


async def test_an_error_inside_exec_is_raised(rc: RedisClient, key_prefix: str) -> None:
    await rc.set(f"{key_prefix}:str", "x")
    batch = Batch(Link(rc).slot)
    batch.set(f"{key_prefix}:before", b"1")
    batch.zadd(f"{key_prefix}:str", {"m": 1})  # WRONGTYPE when EXEC runs it
    replies = await Link(rc).execute(batch.transaction())
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        raise_first_error(replies)
    assert await rc.exists(f"{key_prefix}:before") == 1  # EXEC ran the rest, as Redis does
