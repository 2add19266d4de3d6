"""`fakeai-streams tail` on a single Redis and on a 3-master cluster: every observer group sees
every event of every partition, and a fresh group is destroyed however the run ends (its limit,
SIGINT, SIGTERM).

(The observers' interplay with the metrics group is in tests/integration/metrics/.)
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys

import pytest
from tests.conftest import BOTH
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.services.observer import tail
from fakeai.streams import Keys, new_stream_id, partition_for
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Kind, Link
from fakeai.streams.log.firehose import batch_entry, event, pack_batch, stream_head

pytestmark = pytest.mark.redis

PARTS = 3
CREATED = 1_700_000_000_000


async def publish(r: RedisClient, keys: Keys, n_streams: int) -> list[str]:
    """Per stream two chunks and a done event, one batch entry per stream in its partition."""
    link = Link(r)
    groups = []
    sids = [new_stream_id("chat", CREATED + i) for i in range(n_streams)]
    for i, sid in enumerate(sids):
        model = "m" if i % 2 else "other"
        head = stream_head(sid, model, 1_000, CREATED + i)
        evs = [
            event(1, Kind.CHUNK, 2_000, 1, b'{"choices":[{"index":0,"delta":{"content":" t1"}}]}'),
            event(2, Kind.CHUNK, 3_000, 1, b'{"choices":[{"index":0,"delta":{"content":" t2"}}]}'),
            event(3, Kind.DONE, 4_000, 2, b'{"finish_reason":"stop"}'),
        ]
        key = keys.events(partition_for(sid, PARTS))
        groups.append((link.slot(key), pack_batch(key.encode(), batch_entry([(head, evs)])), 1))
    replies = await link.execute(groups)
    assert not [x for x in replies if isinstance(x, Exception)]
    return sids


async def _group_names(r: RedisClient, keys: Keys) -> list[set[str]]:
    out = []
    for key in keys.all_events(PARTS):
        groups = await r.xinfo_groups(key) if await r.exists(key) else []
        out.append({g["name"].decode() for g in groups})
    return out


@BOTH
async def test_observers_see_every_event_of_every_partition(
    store_url: str, rc: RedisClient, keys: Keys
) -> None:
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix, firehose_partitions=PARTS)
    n_streams = 20
    total = n_streams * 3
    outs = [io.StringIO(), io.StringIO()]
    readies = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(tail.run(settings, fmt="jsonl", out=outs[0], limit=total,
                                     ready=readies[0])),
        asyncio.create_task(tail.run(settings, group="watchers", out=outs[1], limit=total,
                                     ready=readies[1])),
    ]  # fmt: skip
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 10)
    sids = await publish(rc, keys, n_streams)
    assert await asyncio.wait_for(asyncio.gather(*tasks), 20) == [total, total]
    rows = [json.loads(line) for line in outs[0].getvalue().splitlines()]
    assert {(row["stream_id"], row["entry_id"]) for row in rows} == {
        (sid, f"{CREATED + i}-{seq}") for i, sid in enumerate(sids) for seq in (1, 2, 3)
    }
    lines = outs[1].getvalue().splitlines()
    assert f"{sids[1]} m  t1" in lines
    assert f"{sids[1]} m [done]" in lines
    # The fresh group is gone from every partition; the named one stays.
    assert await _group_names(rc, keys) == [{"watchers"}] * PARTS


@BOTH
async def test_a_named_group_resumes_where_it_stopped(
    store_url: str, rc: RedisClient, keys: Keys
) -> None:
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix, firehose_partitions=PARTS)
    ready = asyncio.Event()
    first = io.StringIO()
    task = asyncio.create_task(tail.run(settings, group="g", out=first, limit=2, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    sids = await publish(rc, keys, 1)
    assert await asyncio.wait_for(task, 10) == 2
    second = io.StringIO()
    assert await asyncio.wait_for(tail.run(settings, group="g", out=second, limit=1), 10) == 1
    assert first.getvalue().splitlines() == [f"{sids[0]} other  t1", f"{sids[0]} other  t2"]
    # the entry was cut short by the limit: delivered again, whole (at-least-once)
    assert second.getvalue().splitlines() == [f"{sids[0]} other  t1"]


@BOTH
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_ends_tail_and_destroys_its_group(
    store_url: str, rc: RedisClient, keys: Keys, sig: signal.Signals
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEAI_")}
    env["FAKEAI_FIREHOSE_PARTITIONS"] = str(PARTS)
    cmd = [sys.executable, "-m", "fakeai.services.cli", "tail", "--redis-url", store_url,
           "--key-prefix", keys.prefix, "--format", "jsonl"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:

        async def every_partition_has_a_group() -> bool:
            assert proc.returncode is None, await proc.communicate()
            return all(await _group_names(rc, keys))

        await eventually(every_partition_has_a_group, timeout_s=20, interval_s=0.05)
        await publish(rc, keys, 2)
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert not err.strip(), err
    assert await _group_names(rc, keys) == [set()] * PARTS
    assert len(out.splitlines()) <= 6  # whatever it printed before the signal, nothing else


async def test_tail_into_a_closed_pipe_exits_quietly_and_destroys_its_group(
    store_url: str, rc: RedisClient, keys: Keys
) -> None:
    """``tail | head -1``: the reader goes away; tail ends as a Unix tool does (141, no
    traceback) and still removes its fresh group from every partition."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEAI_")}
    env["FAKEAI_FIREHOSE_PARTITIONS"] = str(PARTS)
    cmd = [sys.executable, "-m", "fakeai.services.cli", "tail", "--redis-url", store_url,
           "--key-prefix", keys.prefix]  # fmt: skip
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=write_end, stderr=asyncio.subprocess.PIPE
    )
    os.close(write_end)
    try:

        async def every_partition_has_a_group() -> bool:
            assert proc.returncode is None
            return all(await _group_names(rc, keys))

        await eventually(every_partition_has_a_group, timeout_s=20, interval_s=0.05)
        await publish(rc, keys, 1)
        with os.fdopen(read_end, "rb") as reader:  # closed after one line, as by `head -1`
            first = await asyncio.wait_for(asyncio.to_thread(reader.readline), 10)

        async def ended() -> bool:
            await publish(rc, keys, 1)  # something more to write, into the closed pipe
            return proc.returncode is not None

        await eventually(ended, timeout_s=20, interval_s=0.1)
        assert proc.stderr is not None
        err = await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert first.split()[-1] == b"t1"
    assert proc.returncode == 141, err
    assert not err.strip(), err
    assert await _group_names(rc, keys) == [set()] * PARTS
