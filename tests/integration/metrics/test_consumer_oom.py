"""Issue 10, finding 4: the metrics consumer exited on an out-of-memory reply.

A Redis at its ``maxmemory`` under the ``noeviction`` policy answers every write with "OOM
command not allowed when used memory > 'maxmemory'"; the consumer took that for a bug and
ended. It must wait it out (backoff, one log line naming the cause), never exit, and count
every stream exactly once when memory is freed. Each test owns a redis-server with a small
``maxmemory`` (never the session's server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from tests.integration.metrics.firehose_writer import publish, stream_events
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.embedded_redis import EmbeddedRedis
from fakeai.services.metrics.service import MetricsConsumer
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, connect
from fakeai.streams.log.firehose import F_EVENT
from fakeai.wire.messages import FirehoseEvent, encode

pytestmark = pytest.mark.redis

PARTS = 4
MAXMEMORY = 8 << 20
FILLER = 12 << 20
"""A string that takes the server past its ``maxmemory`` on its own, made by ``SETRANGE`` at
that offset: a short command (a 12 MB argument would itself be refused, since a client's
query buffer counts against ``maxmemory``)."""


@pytest.fixture
def small_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(
        persistent=False,
        extra_args=["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _events(first: int, n: int) -> list[FirehoseEvent]:
    now_us = 1_700_000_000_000_000
    out: list[FirehoseEvent] = []
    for i in range(first, first + n):
        out += stream_events(f"s-{i}", "m", accepted_us=now_us, chunk_us=[now_us + 10, now_us + 30],
                             terminal_us=now_us + 40)  # fmt: skip
    return out


async def _requests(r: RedisClient, keys: Keys) -> int:
    return int(await r.hget(keys.counters("m"), "requests|") or 0)


async def _groups_exist(r: RedisClient, keys: Keys) -> bool:
    return all([await r.exists(k) for k in keys.all_events(PARTS)])


async def test_oom_reply_to_a_commit_no_longer_ends_the_consumer_and_counts_once(
    small_redis: EmbeddedRedis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Streams that arrive while Redis is full are counted once memory is freed, exactly once;
    the consumer runs on throughout."""
    caplog.set_level(logging.INFO, logger="fakeai.services.metrics")
    settings = Settings(redis_url=small_redis.url, key_prefix=keys.prefix,
                        firehose_partitions=PARTS)  # fmt: skip
    r = await connect(small_redis.url)
    stop = asyncio.Event()
    c = MetricsConsumer(r, settings, consumer_name="c", block_ms=20)
    task = asyncio.create_task(c.run(stop))
    filler = f"{keys.prefix}:filler"
    try:
        await eventually(lambda: _groups_exist(r, keys))
        await publish(r, keys, PARTS, _events(0, 5))
        await eventually(lambda: _requests(r, keys), timeout_s=10)
        assert await _requests(r, keys) == 5

        # Five more streams land together with a filler that fills Redis: one MULTI/EXEC (OOM is
        # checked when a transaction is queued and at EXEC, not inside it), so the consumer
        # reads them only once Redis refuses writes, and its commit gets the OOM reply.
        async with r.pipeline(transaction=True) as pipe:
            pipe.setrange(filler, FILLER, b"x")
            for ev in _events(5, 5):
                pipe.xadd(keys.events_for(ev.stream_id, PARTS), {F_EVENT: encode(ev)})
            await pipe.execute()
        await eventually(lambda: _logged(caplog, "commit failed (OutOfMemoryError"), timeout_s=10)
        assert "until Redis has memory again" in caplog.text
        assert not task.done()
        assert await _requests(r, keys) == 5

        await r.delete(filler)
        await eventually(lambda: _requests_are(r, keys, 10), timeout_s=10)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await r.aclose()
    assert c.streams_committed == 10
    assert "commit works again" in caplog.text


async def test_oom_reply_at_start_no_longer_ends_the_consumer(
    small_redis: EmbeddedRedis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer that starts on a full Redis (its key-layout marker and groups cannot be
    written) waits, starts once memory is freed, and counts what comes next."""
    caplog.set_level(logging.INFO, logger="fakeai.services.metrics")
    settings = Settings(redis_url=small_redis.url, key_prefix=keys.prefix,
                        firehose_partitions=PARTS)  # fmt: skip
    r = await connect(small_redis.url)
    filler = f"{keys.prefix}:filler"
    await r.setrange(filler, FILLER, b"x")
    stop = asyncio.Event()
    c = MetricsConsumer(r, settings, consumer_name="c", block_ms=20)
    task = asyncio.create_task(c.run(stop))
    try:
        await eventually(lambda: _logged(caplog, "start failed (OutOfMemoryError"), timeout_s=10)
        assert not task.done()
        await r.delete(filler)
        await eventually(lambda: _groups_exist(r, keys), timeout_s=10)
        await publish(r, keys, PARTS, _events(0, 3))
        await eventually(lambda: _requests_are(r, keys, 3), timeout_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await r.aclose()
    assert c.streams_committed == 3
    assert "start works again" in caplog.text


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text


async def _requests_are(r: RedisClient, keys: Keys, n: int) -> bool:
    return await _requests(r, keys) == n
