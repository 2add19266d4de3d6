"""The hub and the live reader against a real Redis: seam, unblock, overflow, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis
from tests.integration.edge.edgekit import LogWriter
from tests.support.servers import eventually

from fakeai.embedded_redis import free_port
from fakeai.services.edge.hub import Hub
from fakeai.services.edge.log import StreamInterrupted
from fakeai.services.edge.reader import read_live
from fakeai.streams import Keys

pytestmark = pytest.mark.redis


@pytest.fixture
async def hub(redis_url: str, r: aredis.Redis) -> AsyncIterator[Hub]:
    h = Hub(redis_url, r, block_ms=10_000)
    h.start()
    try:
        yield h
    finally:
        await h.close()


async def test_seam_entries_seen_by_both_backlog_and_queue_are_sent_once(
    hub: Hub, r: aredis.Redis, logw: LogWriter
) -> None:
    sid = await logw.create()
    key = logw.keys.chunks(sid)
    first = await logw.chunks(sid, ["a", "b", "c"])
    sub = hub.subscribe(key, first[-1], limit=64)
    more = await logw.chunks(sid, ["d", "e", "f"])
    # Let the hub queue d..f before the reader starts: its XRANGE will return them too.
    await eventually(lambda: _queued(sub, 3))
    reader = read_live(r, hub, sub, key=key, created_ms=logw.created[sid], after_seq=0)
    got = [e.id.decode() for e in await anext(reader)]  # the backlog, d..f included
    assert got == [*first, *more]
    done = await logw.done(sid)
    got += [e.id.decode() async for batch in reader for e in batch]
    assert got == [*first, *more, done]


async def _queued(sub: object, n: int) -> bool:
    return len(sub._items) >= n  # type: ignore[attr-defined]


async def test_a_new_key_interrupts_the_blocked_read(
    hub: Hub, r: aredis.Redis, logw: LogWriter
) -> None:
    """The hub blocks for 10 s on one key; a second key's entries still arrive at once."""
    a = await logw.create()
    sub_a = hub.subscribe(logw.keys.chunks(a), f"{logw.created[a]}-0", limit=64)
    await eventually(lambda: _blocked(hub))
    b = await logw.create()
    sub_b = hub.subscribe(logw.keys.chunks(b), f"{logw.created[b]}-0", limit=64)
    await logw.chunks(b, ["hello"])
    batch = await asyncio.wait_for(sub_b.get(), 3)  # well under the 10 s block
    assert [e.seq for e in batch] == [1]
    hub.unsubscribe(sub_a)
    hub.unsubscribe(sub_b)


async def _blocked(hub: Hub) -> bool:
    return hub._blocked_gen is not None


async def test_terminal_entry_is_delivered_then_the_key_dropped(hub: Hub, logw: LogWriter) -> None:
    sid = await logw.create()
    sub = hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=64)
    await logw.chunks(sid, ["x"])
    await logw.done(sid)
    got = []
    while not (got and got[-1].terminal):
        got += await asyncio.wait_for(sub.get(), 3)
    assert [e.kind for e in got] == [b"c", b"d"]
    assert hub.keys == 0


async def test_a_subscriber_that_falls_behind_is_ended_resumably(hub: Hub, logw: LogWriter) -> None:
    sid = await logw.create()
    sub = hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=16)
    for i in range(40):  # nobody reads: batches pile up past the bound
        await logw.chunks(sid, [f"{i}"])
    await eventually(lambda: _overflowed(sub))
    with pytest.raises(StreamInterrupted) as info:
        await sub.get()
    assert info.value.code == "slow_consumer"
    assert "Last-Event-ID" in info.value.message
    assert hub.overflows == 1
    assert len(sub._items) == 0  # memory released


async def _overflowed(sub: object) -> bool:
    return bool(sub.overflowed)  # type: ignore[attr-defined]


async def test_hub_reconnects_after_its_connection_is_killed(
    hub: Hub, r: aredis.Redis, logw: LogWriter
) -> None:
    sid = await logw.create()
    sub = hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=64)
    await eventually(lambda: _blocked(hub))
    await r.client_kill_filter(_id=hub._client_id)
    await logw.chunks(sid, ["after-kill"])
    batch = await asyncio.wait_for(sub.get(), 5)
    assert [e.seq for e in batch] == [1]


async def test_redis_down_past_the_deadline_ends_subscribers(r: aredis.Redis) -> None:
    dead_url = f"redis://127.0.0.1:{free_port()}"
    hub = Hub(dead_url, r, down_deadline_s=0.2)
    hub.start()
    try:
        sub = hub.subscribe(Keys("tdead").chunks("chatcmpl-x"), "1-0", limit=16)
        with pytest.raises(StreamInterrupted) as info:
            await asyncio.wait_for(sub.get(), 5)
        assert info.value.code == "redis_unavailable"
    finally:
        await hub.close()


async def test_live_reader_yields_an_empty_batch_as_heartbeat_then_the_entries(
    hub: Hub, r: aredis.Redis, logw: LogWriter
) -> None:
    """The SSE heartbeat runs in the response's own task: an idle live reader must signal
    it (an empty batch) and then go on with the stream, not end or skip entries."""
    sid = await logw.create()
    key = logw.keys.chunks(sid)
    first = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, first[-1], limit=64)
    seq = int(first[-1].split("-")[1])
    entries = read_live(
        r, hub, sub, key=key, created_ms=logw.created[sid], after_seq=seq, heartbeat_s=0.02
    )
    try:
        assert await anext(entries) == []
        more = await logw.chunks(sid, ["b"])
        batch = await anext(entries)
        while not batch:  # more heartbeats may come before the hub delivers "b"
            batch = await anext(entries)
        assert [e.id.decode() for e in batch] == more
    finally:
        await entries.aclose()
