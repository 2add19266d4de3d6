"""`tail` observers: each group sees every event; the metrics group is unaffected."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest
import redis.asyncio as aredis
from tests.integration.metrics.firehose_writer import publish, stream_events
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.services.metrics.service import MetricsConsumer
from fakeai.services.observer import tail
from fakeai.streams import Keys
from fakeai.timeseries.store import counter_field

pytestmark = pytest.mark.redis

PARTS = 3


def _events(n: int) -> list:
    now_us = int(time.time() * 1e6) - 1_000_000
    out = []
    for i in range(n):
        chunks = [now_us + 10, now_us + 20]
        model = "m" if i % 2 else "other"
        out += stream_events(f"s-{i}", model, accepted_us=now_us, chunk_us=chunks,
                             terminal_us=now_us + 30)  # fmt: skip
    return out


@pytest.mark.parametrize("batched", [False, True], ids=["one-event", "batch"])
async def test_two_observers_and_metrics_all_see_every_event(
    redis_url: str, keys: Keys, r: aredis.Redis, batched: bool
) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix, firehose_partitions=PARTS)
    n_streams = 50
    total = n_streams * 3
    outs = [io.StringIO(), io.StringIO()]
    readies = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(tail.run(settings, fmt="jsonl", out=outs[0], limit=total,
                                     ready=readies[0])),
        asyncio.create_task(tail.run(settings, group="watchers", fmt="text", out=outs[1],
                                     limit=total, ready=readies[1])),
    ]  # fmt: skip
    await asyncio.gather(*(e.wait() for e in readies))
    await publish(r, keys, PARTS, _events(n_streams), batched=batched)
    counts = await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert counts == [total, total]
    rows = [json.loads(line) for line in outs[0].getvalue().splitlines()]
    assert len({(row["stream_id"], row["entry_id"]) for row in rows}) == total
    assert rows[0]["data"]["choices"][0]["delta"]["content"].startswith(" t")
    lines = outs[1].getvalue().splitlines()
    assert "s-1 m  t1" in lines
    assert "s-1 m [done]" in lines
    # The fresh group is gone, the named one stays; the metrics group still gets everything.
    names = {g["name"] for g in await r.xinfo_groups(keys.events(0))}
    assert names == {b"watchers"}
    async with MetricsConsumer(r, settings, consumer_name="c", block_ms=10) as c:
        await c.start()  # created at 0: reads the history too
        await eventually(lambda: _counted(c, r, keys, n_streams), timeout_s=10)


async def _counted(c: MetricsConsumer, r: aredis.Redis, keys: Keys, n: int) -> bool:
    await c.step()
    a = await r.hget(keys.counters("m"), counter_field("requests"))
    b = await r.hget(keys.counters("other"), counter_field("requests"))
    return a is not None and b is not None and int(a) + int(b) == n


async def test_named_group_resumes_and_filters(redis_url: str, keys: Keys, r: aredis.Redis) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix, firehose_partitions=PARTS)
    ready = asyncio.Event()
    first = io.StringIO()
    task = asyncio.create_task(tail.run(settings, group="g", out=first, limit=2, ready=ready,
                                        stream_id="s-1"))  # fmt: skip
    await ready.wait()
    await publish(r, keys, PARTS, _events(4))
    assert await asyncio.wait_for(task, 10) == 2
    # The next run of the same group goes on where the first stopped (the terminal entry).
    second = io.StringIO()
    got = await asyncio.wait_for(
        tail.run(settings, group="g", out=second, limit=1, stream_id="s-1", model="m"), 10
    )
    assert got == 1
    assert first.getvalue().splitlines() == ["s-1 m  t1", "s-1 m  t2"]
    assert second.getvalue().splitlines() == ["s-1 m [done]"]


async def test_limit_inside_a_batch_entry_leaves_it_for_the_next_run(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    """A named group's run that stops mid-entry does not ack it: nothing is lost."""
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix, firehose_partitions=PARTS)
    ready = asyncio.Event()
    first = io.StringIO()
    task = asyncio.create_task(tail.run(settings, group="g", out=first, limit=2, ready=ready,
                                        stream_id="s-1"))  # fmt: skip
    await ready.wait()
    await publish(r, keys, PARTS, _events(4), batched=True, per_entry=100)
    assert await asyncio.wait_for(task, 10) == 2
    second = io.StringIO()
    got = await asyncio.wait_for(
        tail.run(settings, group="g", out=second, limit=3, stream_id="s-1", model="m"), 10
    )
    assert got == 3
    assert first.getvalue().splitlines() == ["s-1 m  t1", "s-1 m  t2"]
    # the entry is printed again whole (at-least-once), the terminal event included
    assert second.getvalue().splitlines() == ["s-1 m  t1", "s-1 m  t2", "s-1 m [done]"]


async def test_bad_arguments_are_named(redis_url: str, keys: Keys) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    with pytest.raises(ValueError, match="fmt must be one of"):
        await tail.run(settings, fmt="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        await tail.run(settings, limit=0)
