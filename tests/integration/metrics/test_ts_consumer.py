"""The metrics consumer against a real Redis: exact timings in, known percentiles out."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import redis.asyncio as aredis
from redis.exceptions import ResponseError
from tests.integration.metrics.firehose_writer import publish, stream_events
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.services.metrics.service import MetricsConsumer
from fakeai.streams import METRICS_GROUP, Keys
from fakeai.timeseries.query import query_latency
from fakeai.timeseries.store import counter_field

pytestmark = pytest.mark.redis

PARTS = 4


def _settings(redis_url: str, keys: Keys, **kw: object) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=keys.prefix, firehose_partitions=PARTS, **kw)


def _exact(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[int(q * (len(s) - 1))]


async def _drain(c: MetricsConsumer, r: aredis.Redis, keys: Keys) -> None:
    """Step the consumer until every partition's group has nothing pending or undelivered."""

    async def done() -> bool:
        await c.step()
        for k in keys.all_events(PARTS):
            groups = await r.xinfo_groups(k)
            g = next(g for g in groups if g["name"] == METRICS_GROUP.encode())
            if g["pending"] or g["lag"]:
                return False
        return True

    await eventually(done, timeout_s=20)


@pytest.mark.parametrize("batched", [False, True], ids=["one-event", "batch"])
async def test_known_timings_give_known_percentiles(
    redis_url: str, keys: Keys, r: aredis.Redis, batched: bool
) -> None:
    settings = _settings(redis_url, keys)
    rnd = random.Random(7)
    now_us = int(time.time() * 1e6) - 2_000_000
    ttfts, itls, e2es = [], [], []
    events = []
    for i in range(300):
        ttft = rnd.lognormvariate(math.log(0.25), 0.5)
        gaps = [rnd.lognormvariate(math.log(0.02), 0.4) for _ in range(9)]
        acc = now_us - 5_000_000 + i
        t = acc + round(ttft * 1e6)
        chunk_us = [t]
        for g in gaps:
            t += round(g * 1e6)
            chunk_us.append(t)
        terminal = t + 1000
        ttfts.append((chunk_us[0] - acc) / 1e6)
        itls += [(b - a) / 1e6 for a, b in itertools.pairwise(chunk_us)]
        e2es.append((terminal - acc) / 1e6)
        events += stream_events(f"chatcmpl-{i}", "m1" if i % 2 else "m2", accepted_us=acc,
                                chunk_us=chunk_us, terminal_us=terminal)  # fmt: skip
    await publish(r, keys, PARTS, events, batched=batched, per_entry=64)
    c = MetricsConsumer(r, settings, consumer_name="c1", block_ms=10)
    await c.start()
    await _drain(c, r, keys)
    assert c.events_read == len(events)
    out = await query_latency(r, keys, settings, model=None, window_s=120)
    assert set(out["models"]) == {"m1", "m2"}
    for metric, exact in (("ttft", ttfts), ("itl", itls), ("e2e", e2es)):
        got = out["all"][metric]
        assert got["count"] == len(exact)
        assert got["mean"] == pytest.approx(sum(exact) / len(exact), rel=1e-6)
        assert got["min"] == pytest.approx(min(exact))
        assert got["max"] == pytest.approx(max(exact))
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            assert got[name] == pytest.approx(_exact(exact, q), rel=0.02), (metric, name)
    assert out["models"]["m1"]["ttft"]["count"] == 150
    counters = await r.hgetall(keys.counters())
    assert int(counters[counter_field("requests", "m1").encode()]) == 150
    assert int(counters[counter_field("output_tokens", "m2").encode()]) == 1500
    assert int(counters[counter_field("success", "m2", "stop").encode()]) == 150


async def test_redelivered_entries_count_once(redis_url: str, keys: Keys, r: aredis.Redis) -> None:
    """Invariant: a stream's samples are counted once, however often its entries arrive."""
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    events = stream_events("chatcmpl-a", "m", accepted_us=now_us, chunk_us=[now_us + 100_000,
                           now_us + 120_000], terminal_us=now_us + 130_000)  # fmt: skip
    await publish(r, keys, PARTS, events)
    key = keys.events_for("chatcmpl-a", PARTS)
    entries = await r.xrange(key)
    c1 = MetricsConsumer(r, settings, consumer_name="c1")
    c2 = MetricsConsumer(r, settings, consumer_name="c2")  # a fresh process: empty memory
    await c1.start()
    assert await c1.handle([(key, entries)]) == 3
    await c1.handle([(key, entries)])
    await c2.handle([(key, entries)])
    await c2.handle([(key, entries[-1:])])  # the terminal alone, after a "restart"
    out = await query_latency(r, keys, settings, model="m", window_s=60)
    assert out["all"]["ttft"]["count"] == 1
    assert out["all"]["itl"]["count"] == 1
    assert out["all"]["itl"]["max"] == pytest.approx(0.02)
    assert int(await r.hget(keys.counters(), counter_field("requests", "m"))) == 1


async def test_redelivered_batch_entries_count_once(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    """Invariant: a stream's samples are counted once, however its batch entries are split
    and however often they arrive (each entry holds parts of two streams)."""
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    events = []
    for sid in ("chatcmpl-a", "chatcmpl-c"):  # the same partition of 4
        events += stream_events(sid, "m", accepted_us=now_us, chunk_us=[now_us + 100_000,
                                now_us + 120_000, now_us + 150_000],
                                terminal_us=now_us + 160_000)  # fmt: skip
    key = keys.events_for("chatcmpl-a", PARTS)
    assert keys.events_for("chatcmpl-c", PARTS) == key
    events = [events[i // 2 + (i % 2) * 4] for i in range(8)]  # interleave the two streams
    await publish(r, keys, PARTS, events, batched=True, per_entry=3)
    entries = await r.xrange(key)
    assert len(entries) == 3
    c1 = MetricsConsumer(r, settings, consumer_name="c1")
    c2 = MetricsConsumer(r, settings, consumer_name="c2")  # a fresh process: empty memory
    await c1.start()
    assert await c1.handle([(key, entries[:2])]) == 2
    await c1.handle([(key, entries)])  # the first two again, then the rest
    await c2.handle([(key, entries)])
    await c2.handle([(key, entries[-1:])])  # the last alone, after a "restart"
    assert c1.events_read == 14
    out = await query_latency(r, keys, settings, model="m", window_s=60)
    assert out["all"]["ttft"]["count"] == 2
    assert out["all"]["itl"]["count"] == 4
    assert out["all"]["itl"]["max"] == pytest.approx(0.03)
    assert int(await r.hget(keys.counters(), counter_field("requests", "m"))) == 2


async def test_terminal_without_seen_chunks_is_rebuilt_from_the_log(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    chunk_us = [now_us + 200_000, now_us + 210_000, now_us + 230_000]
    events = stream_events("chatcmpl-b", "m", accepted_us=now_us, chunk_us=chunk_us,
                           terminal_us=now_us + 240_000)  # fmt: skip
    await publish(r, keys, PARTS, events)
    key = keys.events_for("chatcmpl-b", PARTS)
    entries = await r.xrange(key)
    c = MetricsConsumer(r, settings, consumer_name="late")
    await c.start()
    await c.handle([(key, entries[2:])])  # chunk 3 and the terminal only
    out = await query_latency(r, keys, settings, model="m", window_s=60)
    assert out["all"]["ttft"]["count"] == 1
    assert out["all"]["ttft"]["max"] == pytest.approx(0.2)
    assert out["all"]["itl"]["count"] == 2


async def test_malformed_entries_are_counted_and_acked(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    settings = _settings(redis_url, keys)
    c = MetricsConsumer(r, settings, consumer_name="c1", block_ms=10)
    await c.start()
    await r.xadd(keys.events(0), {"f": b"not json"})
    await r.xadd(keys.events(1), {"x": b"1"})
    await r.xadd(keys.events(2), {"f": b'["sid"]'})
    await _drain(c, r, keys)
    assert int(await r.hget(keys.counters(), counter_field("invalid_events", "unknown"))) == 3


async def test_error_and_cancel_counters(redis_url: str, keys: Keys, r: aredis.Redis) -> None:
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    events = [
        *stream_events("s-1", "m", accepted_us=now_us, chunk_us=[now_us + 10],
                       terminal_us=now_us + 20, kind="e", error_code="cancelled"),
        *stream_events("s-2", "m", accepted_us=now_us, chunk_us=[], terminal_us=now_us + 20,
                       kind="e", error_code="overloaded"),
        *stream_events("s-3", "m", accepted_us=now_us, chunk_us=[now_us + 5],
                       terminal_us=now_us + 9, finish_reason="length", prompt_tokens=12),
    ]  # fmt: skip
    await publish(r, keys, PARTS, events)
    c = MetricsConsumer(r, settings, consumer_name="c1", block_ms=10)
    await c.start()
    await _drain(c, r, keys)
    raw = await r.hgetall(keys.counters())
    got = {k.decode(): int(v) for k, v in raw.items()}
    assert got == {
        "requests||m": 3,
        "output_tokens||m": 2,
        "prompt_tokens||m": 12,
        "errors|cancelled|m": 1,
        "errors|overloaded|m": 1,
        "cancels||m": 1,
        "success|abort|m": 1,
        "success|length|m": 1,
    }


async def test_two_consumers_share_the_work(redis_url: str, keys: Keys, r: aredis.Redis) -> None:
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    events = []
    for i in range(400):
        chunk_us = [now_us + 10, now_us + 30]
        events += stream_events(f"s-{i}", "m", accepted_us=now_us, chunk_us=chunk_us,
                                terminal_us=now_us + 40)  # fmt: skip
    stop = asyncio.Event()
    # Small reads, so that neither consumer can take the whole backlog in one call.
    a = MetricsConsumer(r, settings, consumer_name="a", block_ms=50, read_count=20)
    b = MetricsConsumer(r, settings, consumer_name="b", block_ms=50, read_count=20)
    tasks = [asyncio.create_task(a.run(stop)), asyncio.create_task(b.run(stop))]
    await eventually(lambda: _groups_exist(r, keys))
    await publish(r, keys, PARTS, events)

    async def all_counted() -> bool:
        v = await r.hget(keys.counters(), counter_field("requests", "m"))
        return v is not None and int(v) == 400

    await eventually(all_counted, timeout_s=20)
    stop.set()
    await asyncio.gather(*tasks)
    assert a.streams_committed + b.streams_committed == 400
    assert a.entries_read > 0
    assert b.entries_read > 0


async def _groups_exist(r: aredis.Redis, keys: Keys) -> bool:
    for k in keys.all_events(PARTS):
        if not await r.exists(k):
            return False
    return True


@pytest.mark.slow
async def test_sigkill_mid_batch_then_reclaim_counts_every_stream_once(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    n_streams, n_chunks = 3000, 8
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    events = []
    for i in range(n_streams):
        chunk_us = [now_us + 1000 * (j + 1) for j in range(n_chunks)]
        events += stream_events(f"chatcmpl-{i}", "m", accepted_us=now_us, chunk_us=chunk_us,
                                terminal_us=chunk_us[-1] + 500)  # fmt: skip
    for i in range(0, len(events), 5000):
        await publish(r, keys, PARTS, events[i : i + 5000])
    env = dict(os.environ, FAKEAI_REDIS_URL=redis_url, FAKEAI_KEY_PREFIX=keys.prefix,
               FAKEAI_FIREHOSE_PARTITIONS=str(PARTS), FAKEAI_LOG_LEVEL="WARNING")  # fmt: skip
    code = (
        "from fakeai.config import Settings\n"
        "from fakeai.services.metrics.service import main\n"
        "main(Settings.from_env())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)  # noqa: ASYNC220
    try:

        async def some_pending() -> bool:
            for k in keys.all_events(PARTS):
                try:
                    info = await r.xpending(k, METRICS_GROUP)
                except ResponseError:  # NOGROUP: the consumer has not started yet
                    return False
                if info["pending"]:
                    return True
            return False

        await eventually(some_pending, timeout_s=20, interval_s=0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    counted = await r.hget(keys.counters(), counter_field("requests", "m"))
    assert counted is None or int(counted) < n_streams, "killed too late to test recovery"

    c = MetricsConsumer(r, settings, consumer_name="survivor", claim_idle_s=0.05, block_ms=10)
    await c.start()
    await _drain(c, r, keys)
    raw = {k.decode(): int(v) for k, v in (await r.hgetall(keys.counters())).items()}
    assert raw["requests||m"] == n_streams
    assert raw["output_tokens||m"] == n_streams * n_chunks
    out = await query_latency(r, keys, settings, model="m", window_s=300)
    assert out["all"]["ttft"]["count"] == n_streams
    assert out["all"]["e2e"]["count"] == n_streams
    assert out["all"]["itl"]["count"] == n_streams * (n_chunks - 1)


async def test_linger_after_a_short_read_ends_at_once_on_stop(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    """After a read that was not full the consumer waits before reading again (so that the
    next read gathers more); a stop during that wait ends the run at once."""
    settings = _settings(redis_url, keys)
    now_us = int(time.time() * 1e6) - 2_000_000
    events = stream_events("s-1", "m", accepted_us=now_us, chunk_us=[now_us + 10, now_us + 30],
                           terminal_us=now_us + 40)  # fmt: skip
    stop = asyncio.Event()
    c = MetricsConsumer(r, settings, consumer_name="c", block_ms=50, linger_s=3600)
    task = asyncio.create_task(c.run(stop))
    await eventually(lambda: _groups_exist(r, keys))
    await publish(r, keys, PARTS, events, batched=True, per_entry=100)  # one entry, one read

    async def counted() -> bool:
        v = await r.hget(keys.counters(), counter_field("requests", "m"))
        return v is not None and int(v) == 1

    await eventually(counted, timeout_s=10)
    stop.set()
    await asyncio.wait_for(task, 5)  # not the hour-long linger
    assert c.streams_committed == 1
