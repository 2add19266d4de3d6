"""Benchmark of the metrics path; prints numbers (no pass/fail).

    python -m fakeai.services.metrics.bench [--streams N] [--chunks K] [--lag-runs R]

Uses ``FAKEAI_REDIS_URL`` under a throw-away key prefix (deleted afterwards), else starts an
embedded Redis. Measures:

1. fold throughput: N streams x K chunks written to the firehose, then one consumer drains them;
   samples/s counts every sample folded (TTFT, ITL, TPOT, e2e, tokens/s per stream);
2. Redis memory of one model's series for one hour: 7 metrics, a sample each second, in fine,
   coarse and total buckets (MEMORY USAGE summed over the keys);
3. lag from a terminal firehose entry to ``query_latency`` seeing it, with a running consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import time
import uuid

import msgspec
import redis.asyncio as aredis

from fakeai.config import Settings
from fakeai.embedded_redis import EmbeddedRedis
from fakeai.services.metrics.service import MetricsConsumer
from fakeai.streams import Keys, entry_id
from fakeai.timeseries import Fold
from fakeai.timeseries.query import LATENCY_METRICS, query_latency
from fakeai.wire.messages import FirehoseEvent, encode

PARTITIONS = 4


def _stream(sid: str, model: str, start_us: int, chunks: int, rnd: random.Random) -> list[bytes]:
    t = start_us + int(rnd.lognormvariate(math.log(0.2), 0.5) * 1e6)
    created = start_us // 1000
    data = msgspec.Raw(b'{"choices":[{"index":0,"delta":{"content":" tok"}}]}')
    out = []
    for i in range(1, chunks + 1):
        out.append(encode(FirehoseEvent(stream_id=sid, entry_id=entry_id(created, i), kind="c",
                                        model=model, accepted_at_us=start_us, emitted_at_us=t,
                                        tokens=1, data=data)))  # fmt: skip
        t += int(rnd.lognormvariate(math.log(0.02), 0.3) * 1e6)
    out.append(encode(FirehoseEvent(stream_id=sid, entry_id=entry_id(created, chunks + 1),
                                    kind="d", model=model, accepted_at_us=start_us,
                                    emitted_at_us=t, tokens=chunks)))  # fmt: skip
    return out


async def _fold_throughput(
    r: aredis.Redis, settings: Settings, streams: int, chunks: int
) -> dict[str, float]:
    keys = Keys(settings.key_prefix)
    rnd = random.Random(1)
    now_us = int(time.time() * 1e6) - 60_000_000
    pipe = r.pipeline(transaction=False)
    for s in range(streams):
        sid = f"chatcmpl-{s}"
        for raw in _stream(sid, f"model-{s % 4}", now_us, chunks, rnd):
            pipe.xadd(keys.events_for(sid, PARTITIONS), {"f": raw})
        if len(pipe) >= 5000:
            await pipe.execute()
    await pipe.execute()
    c = MetricsConsumer(r, settings, consumer_name="bench", block_ms=1)
    await c.start()
    entries = streams * (chunks + 1)
    t0, cpu0 = time.perf_counter(), time.process_time()
    while c.entries_read < entries:
        await c.step()
    dt = time.perf_counter() - t0
    # CPU of this process only (Redis runs apart): steadier than wall time on a shared host.
    cpu = time.process_time() - cpu0
    samples = streams * (chunks - 1 + 4)
    return {"entries": entries, "seconds": dt, "entries_per_s": entries / dt,
            "samples_per_s": samples / dt, "streams_per_s": streams / dt,
            "cpu_us_per_entry": cpu / entries * 1e6}  # fmt: skip


async def _memory_per_model_hour(r: aredis.Redis, settings: Settings) -> dict[str, float]:
    keys = Keys(settings.key_prefix + "mem")
    rnd = random.Random(2)
    base = int(time.time()) - 3600
    fold = Fold(settings.ts_fine_s)
    for sec in range(3600):
        for metric in LATENCY_METRICS:
            for _ in range(5):
                fold.add(metric, "m", rnd.lognormvariate(math.log(0.1), 0.6), base + sec)
    pipe = r.pipeline(transaction=False)
    fold.write(pipe, keys, settings)
    await pipe.execute()
    total, n = 0, 0
    async for k in r.scan_iter(match=f"{keys.prefix}:ts:*", count=1000):
        total += await r.memory_usage(k) or 0
        n += 1
    return {"keys": n, "bytes": total, "mib": total / 2**20}


async def _lag(r: aredis.Redis, settings: Settings, runs: int) -> dict[str, float]:
    keys = Keys(settings.key_prefix + "lag")
    settings = settings.model_copy(update={"key_prefix": keys.prefix})
    stop = asyncio.Event()
    c = MetricsConsumer(r, settings, consumer_name="lag", block_ms=100)
    task = asyncio.create_task(c.run(stop))
    rnd = random.Random(3)
    lags = []
    try:
        # The group starts at id 0: entries added before the consumer is up are read too.
        for i in range(runs):
            sid = f"chatcmpl-lag-{i}"
            now_us = int(time.time() * 1e6)
            events = _stream(sid, "m", now_us - 500_000, 5, rnd)
            pipe = r.pipeline(transaction=False)
            for raw in events:
                pipe.xadd(keys.events_for(sid, PARTITIONS), {"f": raw})
            t0 = time.perf_counter()
            await pipe.execute()
            while True:
                out = await query_latency(r, keys, settings, model="m", window_s=60)
                if out["all"]["e2e"]["count"] > i:
                    break
                await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t0) * 1000)
    finally:
        stop.set()
        await task
    return {"p50_ms": statistics.median(lags), "max_ms": max(lags), "runs": runs}


async def _main(args: argparse.Namespace) -> dict[str, object]:
    base = Settings.from_env()
    server = None
    url = base.redis_url
    if url is None:
        server = EmbeddedRedis(persistent=False)
        server.start()
        url = server.url
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"redis_url": url, "key_prefix": prefix,
                                       "firehose_partitions": PARTITIONS})  # fmt: skip
    r = aredis.Redis.from_url(url)
    try:
        return {
            "fold": await _fold_throughput(r, settings, args.streams, args.chunks),
            "memory_per_model_hour": await _memory_per_model_hour(r, settings),
            "terminal_to_queryable": await _lag(r, settings, args.lag_runs),
        }
    finally:
        async for k in r.scan_iter(match=f"{prefix}*", count=1000):
            await r.delete(k)
        await r.aclose()
        if server is not None:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--streams", type=int, default=5000)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--lag-runs", type=int, default=30)
    args = p.parse_args()
    res = asyncio.run(_main(args))
    f, m, lag = res["fold"], res["memory_per_model_hour"], res["terminal_to_queryable"]
    assert isinstance(f, dict)
    assert isinstance(m, dict)
    assert isinstance(lag, dict)
    print(f"fold: {f['entries']:,} entries in {f['seconds']:.2f}s = "
          f"{f['entries_per_s']:,.0f} entries/s, {f['samples_per_s']:,.0f} samples/s, "
          f"{f['streams_per_s']:,.0f} streams/s, "
          f"{f['cpu_us_per_entry']:.1f} µs CPU/entry")  # fmt: skip
    print(f"memory: one model, one hour, {len(LATENCY_METRICS)} metrics: {m['keys']:,} keys, "
          f"{m['mib']:.1f} MiB")  # fmt: skip
    print(f"lag terminal -> queryable: p50 {lag['p50_ms']:.1f} ms, max {lag['max_ms']:.1f} ms "
          f"({lag['runs']} runs)")  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
