"""Benchmark of the metrics path; prints numbers (no pass/fail).

    python -m fakeai.services.metrics.bench [--streams N] [--chunks K] [--lag-runs R]
                                            [--per-entry S] [--cluster]

Uses ``FAKEAI_REDIS_URL`` (a single Redis or a cluster node) under a throw-away key prefix
(deleted afterwards), else starts an embedded Redis, or with ``--cluster`` an embedded 3-master
cluster (fakeai.embedded_cluster). Measures:

1. fold throughput: N streams x K chunks written to the firehose in batch entries (each holds
   one event of S streams), then one consumer drains them; samples/s counts every sample
   folded (TTFT, ITL, TPOT, e2e, tokens/s per stream);
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
from collections import defaultdict

import msgspec
from msgspec.structs import replace

from fakeai.config import Settings
from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.embedded_redis import EmbeddedRedis
from fakeai.services.metrics.service import MetricsConsumer
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, connect
from fakeai.streams.log import Link
from fakeai.streams.log.firehose import pack_batch
from fakeai.timeseries import Fold
from fakeai.timeseries.query import LATENCY_METRICS, query_latency
from fakeai.wire.messages import FirehoseItem, FirehoseStream, encode

PARTITIONS = 4


def _stream(sid: str, model: str, start_us: int, chunks: int, rnd: random.Random) -> FirehoseStream:
    """One whole stream: chunks 1..K then its terminal event."""
    t = start_us + int(rnd.lognormvariate(math.log(0.2), 0.5) * 1e6)
    data = msgspec.Raw(b'{"choices":[{"index":0,"delta":{"content":" tok"}}]}')
    events = []
    for i in range(1, chunks + 1):
        events.append(FirehoseItem(seq=i, kind="c", emitted_at_us=t, tokens=1, data=data))
        t += int(rnd.lognormvariate(math.log(0.02), 0.3) * 1e6)
    events.append(FirehoseItem(seq=chunks + 1, kind="d", emitted_at_us=t, tokens=chunks))
    return FirehoseStream(stream_id=sid, model=model, accepted_at_us=start_us,
                          created_ms=start_us // 1000, events=events)  # fmt: skip


def _entries(streams: list[FirehoseStream], per_entry: int) -> list[bytes]:
    """Batch entries (field ``b``) as a producer's flushes write them: event k of
    ``per_entry`` streams in one entry, for every k (one partition's share of a flush)."""
    out = []
    depth = max(len(s.events) for s in streams)
    for lo in range(0, len(streams), per_entry):
        group = streams[lo : lo + per_entry]
        for k in range(depth):
            out.append(encode([replace(s, events=s.events[k : k + 1]) for s in group
                               if k < len(s.events)]))  # fmt: skip
    return out


async def _publish(r: RedisClient, batches: list[tuple[str, bytes]]) -> None:
    """XADD each ``(partition key, batch)`` as a firehose entry, 5,000 per round trip."""
    link = Link(r)
    for i in range(0, len(batches), 5000):
        groups = [
            (link.slot(k), pack_batch(k.encode(), raw), 1) for k, raw in batches[i : i + 5000]
        ]
        for reply in await link.execute(groups):
            if isinstance(reply, Exception):
                raise reply


async def _fold_throughput(
    r: RedisClient, settings: Settings, streams: int, chunks: int, per_entry: int
) -> dict[str, float]:
    keys = Keys(settings.key_prefix)
    rnd = random.Random(1)
    now_us = int(time.time() * 1e6) - 60_000_000
    by_partition: dict[str, list[FirehoseStream]] = defaultdict(list)
    for s in range(streams):
        sid = f"chatcmpl-{s}"
        by_partition[keys.events_for(sid, PARTITIONS)].append(
            _stream(sid, f"model-{s % 4}", now_us, chunks, rnd)
        )
    await _publish(
        r, [(key, raw) for key, g in by_partition.items() for raw in _entries(g, per_entry)]
    )
    events = streams * (chunks + 1)
    async with MetricsConsumer(r, settings, consumer_name="bench", block_ms=1) as c:
        await c.start()
        t0, cpu0 = time.perf_counter(), time.process_time()
        while c.events_read < events:
            await c.step()
        dt = time.perf_counter() - t0
    # CPU of this process only (Redis runs apart): steadier than wall time on a shared host.
    cpu = time.process_time() - cpu0
    samples = streams * (chunks - 1 + 4)
    return {"events": events, "entries": c.entries_read, "seconds": dt,
            "events_per_s": events / dt, "samples_per_s": samples / dt,
            "streams_per_s": streams / dt, "cpu_us_per_event": cpu / events * 1e6}  # fmt: skip


async def _memory_per_model_hour(r: RedisClient, settings: Settings) -> dict[str, float]:
    keys = Keys(settings.key_prefix + "mem")
    rnd = random.Random(2)
    base = int(time.time()) - 3600
    fold = Fold(settings.ts_fine_s)
    for sec in range(3600):
        for metric in LATENCY_METRICS:
            for _ in range(5):
                fold.add(metric, "m", rnd.lognormvariate(math.log(0.1), 0.6), base + sec)
    pipe = r.pipeline(transaction=False)
    fold.register(pipe, keys)
    fold.write(pipe, keys, settings)
    await pipe.execute()
    total, n = 0, 0
    async for k in r.scan_iter(match=f"{keys.prefix}:ts:*", count=1000):
        total += await r.memory_usage(k) or 0
        n += 1
    return {"keys": n, "bytes": total, "mib": total / 2**20}


async def _lag(r: RedisClient, settings: Settings, runs: int) -> dict[str, float]:
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
            stream = _stream(sid, "m", now_us - 500_000, 5, rnd)
            batches = [(keys.events_for(sid, PARTITIONS), raw) for raw in _entries([stream], 1)]
            t0 = time.perf_counter()
            await _publish(r, batches)
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
    server: EmbeddedRedis | EmbeddedCluster | None = None
    url = base.redis_url
    if url is None:
        server = EmbeddedCluster(masters=3) if args.cluster else EmbeddedRedis(persistent=False)
        url = server.start()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"redis_url": url, "key_prefix": prefix,
                                       "firehose_partitions": PARTITIONS})  # fmt: skip
    r = await connect(url)
    try:
        return {
            "fold": await _fold_throughput(r, settings, args.streams, args.chunks, args.per_entry),
            "memory_per_model_hour": await _memory_per_model_hour(r, settings),
            "terminal_to_queryable": await _lag(r, settings, args.lag_runs),
        }
    finally:
        # A cluster client scans every master; one key per DEL (the keys span slots).
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
    p.add_argument("--per-entry", type=int, default=32,
                   help="streams per firehose batch entry (one event each)")  # fmt: skip
    p.add_argument("--cluster", action="store_true",
                   help="without FAKEAI_REDIS_URL: an embedded 3-master cluster")  # fmt: skip
    args = p.parse_args()
    res = asyncio.run(_main(args))
    f, m, lag = res["fold"], res["memory_per_model_hour"], res["terminal_to_queryable"]
    assert isinstance(f, dict)
    assert isinstance(m, dict)
    assert isinstance(lag, dict)
    print(f"fold: {f['events']:,} events ({f['entries']:,} entries) in {f['seconds']:.2f}s = "
          f"{f['events_per_s']:,.0f} events/s, {f['samples_per_s']:,.0f} samples/s, "
          f"{f['streams_per_s']:,.0f} streams/s, "
          f"{f['cpu_us_per_event']:.1f} µs CPU/event")  # fmt: skip
    print(f"memory: one model, one hour, {len(LATENCY_METRICS)} metrics: {m['keys']:,} keys, "
          f"{m['mib']:.1f} MiB")  # fmt: skip
    print(f"lag terminal -> queryable: p50 {lag['p50_ms']:.1f} ms, max {lag['max_ms']:.1f} ms "
          f"({lag['runs']} runs)")  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
