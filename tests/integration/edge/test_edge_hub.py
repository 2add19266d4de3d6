"""The hub and the live reader against a real Redis and a real 3-master cluster: fan-out over
buckets, seam, unblock, terminal, overflow, lost connections, a moved slot, a failover."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis
from tests.conftest import BOTH
from tests.integration.edge.edgekit import LogWriter
from tests.support.redis_clients import DROPS_A_NODE, collect_removed_node_connections
from tests.support.servers import eventually

from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.embedded_redis import free_port
from fakeai.services.edge.hub import Hub
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.reader import read_live
from fakeai.services.edge.subscription import Subscription
from fakeai.streams import Keys, bucket_for
from fakeai.streams.client import RedisClient, connect
from fakeai.streams.log import Entry, Link

pytestmark = pytest.mark.redis


@pytest.fixture
def link(rc: RedisClient) -> Link:
    return Link(rc)


@pytest.fixture
async def hub(link: Link) -> AsyncIterator[Hub]:
    h = Hub(link, block_ms=10_000)
    h.start()
    try:
        yield h
    finally:
        await h.close()


async def _blocked(hub: Hub) -> bool:
    return any(lane.blocked_gen is not None for lane in hub._lanes.values())


async def _until_terminal(sub: Subscription, timeout_s: float = 5.0) -> list[Entry]:
    got: list[Entry] = []
    async with asyncio.timeout(timeout_s):
        while not (got and got[-1].terminal):
            got += await sub.get()
    return got


@BOTH
async def test_fan_out_over_streams_of_many_buckets_reads_once_per_bucket(
    hub: Hub, link: Link, logw: LogWriter
) -> None:
    """One reader per slot with watched streams on a cluster (streams of one bucket share
    it), ONE reader for everything on a single server; every subscriber gets its stream."""
    sids = [await logw.create() for _ in range(16)]
    sids += [await logw.create(bucket=7) for _ in range(4)]
    subs = {}
    for sid in sids:
        key = logw.keys.chunks(sid)
        subs[sid] = [hub.subscribe(key, f"{logw.created[sid]}-0", limit=64) for _ in range(2)]
    for sid in sids:
        await logw.chunks(sid, [sid[-6:]])
        await logw.done(sid)
    for sid in sids:
        for sub in subs[sid]:
            got = await _until_terminal(sub)
            assert [(e.seq, e.kind) for e in got] == [(1, b"c"), (2, b"d")], sid
    slots = {link.slot(logw.keys.chunks(sid)) for sid in sids}
    if link.cluster:
        assert hub.readers == len(slots) > 1
        assert len(slots) == len({bucket_for(sid) for sid in sids}) < len(sids)
    else:
        assert hub.readers == 1
    assert hub.keys == 0  # terminal entries drop their keys


@BOTH
async def test_seam_entries_seen_by_both_backlog_and_queue_are_sent_once(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid = await logw.create()
    key = logw.keys.chunks(sid)
    first = await logw.chunks(sid, ["a", "b", "c"])
    sub = hub.subscribe(key, first[-1], limit=64)
    more = await logw.chunks(sid, ["d", "e", "f"])
    # Let the hub queue d..f before the reader starts: its XRANGE will return them too.
    await eventually(lambda: _queued(sub, 3))
    reader = read_live(rc, hub, sub, key=key, created_ms=logw.created[sid], after_seq=0)
    got = [e.id.decode() for e in await anext(reader)]  # the backlog, d..f included
    assert got == [*first, *more]
    done = await logw.done(sid)
    got += [e.id.decode() async for batch in reader for e in batch]
    assert got == [*first, *more, done]


async def _queued(sub: Subscription, n: int) -> bool:
    return len(sub._items) >= n


@BOTH
async def test_a_new_key_interrupts_the_blocked_read(hub: Hub, logw: LogWriter) -> None:
    """The hub blocks for 10 s on one key; a second key of the same reader (same bucket) is
    read at once: CLIENT UNBLOCK, then one XREAD naming both."""
    a = await logw.create(bucket=3)
    sub_a = hub.subscribe(logw.keys.chunks(a), f"{logw.created[a]}-0", limit=64)
    await eventually(lambda: _blocked(hub))
    b = await logw.create(bucket=3)
    sub_b = hub.subscribe(logw.keys.chunks(b), f"{logw.created[b]}-0", limit=64)
    assert len(hub._lanes) == 1
    await logw.chunks(b, ["hello"])
    batch = await asyncio.wait_for(sub_b.get(), 3)  # well under the 10 s block
    assert [e.seq for e in batch] == [1]
    await logw.chunks(a, ["still here"])
    assert [e.seq for e in await asyncio.wait_for(sub_a.get(), 3)] == [1]
    hub.unsubscribe(sub_a)
    hub.unsubscribe(sub_b)
    assert hub.keys == 0


async def test_close_ends_a_read_that_missed_its_cancellation(link: Link, logw: LogWriter) -> None:
    """On Python 3.11 redis-py's send (``asyncio.wait_for``) can swallow a cancellation that
    lands as the send completes (CPython gh-86296): the read then goes on to its reply. Here
    the reader's call ignores its cancellation the same way; close() must end that read by
    closing its connection, not wait for the XREAD's reply (nil after the 10 s block)."""
    hub = Hub(link, block_ms=10_000)
    hub.start()
    sid = await logw.create()
    hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=64)
    await eventually(lambda: _blocked(hub))
    (lane,) = hub._lanes.values()
    reader = lane.reader
    assert reader is not None
    real_call = reader.call
    deaf = asyncio.Event()
    ended: list[str] = []

    async def deaf_call(packed: bytes) -> object:
        read = asyncio.ensure_future(real_call(packed))
        deaf.set()
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            try:  # the cancellation is lost; the read goes on
                reply = await read
            except Exception as e:
                ended.append(type(e).__name__)
                raise
            ended.append(f"reply {reply!r}")
            return reply

    reader.call = deaf_call  # type: ignore[method-assign]
    # the read in flight was issued through the real call: make the loop re-issue it
    assert await reader.unblock()
    await asyncio.wait_for(deaf.wait(), 5)
    await eventually(lambda: _blocked(hub))
    await hub.close()
    assert ended == ["ConnectionError"]  # closed under the read, not answered 10 s later
    assert hub.readers == 0


@BOTH
async def test_terminal_entry_is_delivered_then_the_key_dropped(hub: Hub, logw: LogWriter) -> None:
    sid = await logw.create()
    sub = hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=64)
    await logw.chunks(sid, ["x"])
    await logw.done(sid)
    got = await _until_terminal(sub)
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


async def _overflowed(sub: Subscription) -> bool:
    return sub.overflowed


async def _kill_reader_connection(store_url: str, hub: Hub) -> None:
    """CLIENT KILL the (only) reader's connection, on the node it talks to."""
    (lane,) = hub._lanes.values()
    reader = lane.reader
    assert reader is not None
    url = store_url if reader.node is None else f"redis://{reader.node}"
    node = aredis.Redis.from_url(url)
    try:
        assert await node.client_kill_filter(_id=str(reader.client_id)) == 1
    finally:
        await node.aclose()


@BOTH
async def test_a_reader_survives_a_slot_map_reload_and_a_killed_connection(
    hub: Hub, link: Link, logw: LogWriter, store_url: str
) -> None:
    sid = await logw.create()
    sub = hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=64)
    await eventually(lambda: _blocked(hub))
    await link.refresh()
    await _kill_reader_connection(store_url, hub)
    await logw.chunks(sid, ["after-kill"])
    batch = await asyncio.wait_for(sub.get(), 5)
    assert [e.seq for e in batch] == [1]
    assert hub.readers == 1


async def test_redis_down_past_the_deadline_ends_subscribers() -> None:
    dead = aredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}")
    hub = Hub(Link(dead), down_deadline_s=0.2)
    hub.start()
    try:
        sub = hub.subscribe(Keys("tdead").chunks("chatcmpl-x"), "1-0", limit=16)
        with pytest.raises(StreamInterrupted) as info:
            await asyncio.wait_for(sub.get(), 5)
        assert info.value.code == "redis_unavailable"
    finally:
        await hub.close()
        await dead.aclose()


async def test_live_reader_yields_an_empty_batch_as_heartbeat_then_the_entries(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """The SSE heartbeat runs in the response's own task: an idle live reader must signal
    it (an empty batch) and then go on with the stream, not end or skip entries."""
    sid = await logw.create()
    key = logw.keys.chunks(sid)
    first = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, first[-1], limit=64)
    seq = int(first[-1].split("-")[1])
    entries = read_live(
        rc, hub, sub, key=key, created_ms=logw.created[sid], after_seq=seq, heartbeat_s=0.02
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


# -- a cluster that changes under the reader -----------------------------------------------


def _node_port(hub: Hub) -> int:
    (lane,) = hub._lanes.values()
    assert lane.reader is not None
    assert lane.reader.node is not None
    return int(lane.reader.node.rsplit(":", 1)[1])


async def _move_slot(client: RedisClient, slot: int, source: int, target: int) -> None:
    """Reshard one slot as ``redis-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE
    its keys, then SETSLOT NODE on every master
    (https://redis.io/docs/latest/commands/cluster-setslot/)."""
    assert isinstance(client, aredis.RedisCluster)
    nodes = {n.port: n for n in client.get_primaries()}
    ids = {port: (await n.execute_command("CLUSTER MYID")).decode() for port, n in nodes.items()}
    src, dst = nodes[source], nodes[target]
    await dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
    await src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
    keys = await src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
    if keys:
        await src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    for node in (dst, src, *[n for p, n in nodes.items() if p not in (source, target)]):
        await node.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])


async def test_a_reader_follows_its_slot_to_another_node_on_moved() -> None:
    """Resharding moves the slot of a watched stream while its read is blocked: the reader
    gets MOVED (now or on its next read), reloads the slot map, reads from the new owner;
    the subscriber sees every entry, no error."""
    with EmbeddedCluster(masters=3) as cluster:
        client = await connect(cluster.url)
        hub = Hub(Link(client), block_ms=500)
        hub.start()
        try:
            logw = LogWriter(client, Keys(f"t{uuid.uuid4().hex[:12]}"))
            sid = await logw.create()
            key = logw.keys.chunks(sid)
            sub = hub.subscribe(key, f"{logw.created[sid]}-0", limit=64)
            await logw.chunks(sid, ["before"])
            assert [e.seq for e in await asyncio.wait_for(sub.get(), 5)] == [1]
            await eventually(lambda: _blocked(hub))
            source = _node_port(hub)
            target = next(port for _, port in cluster.masters() if port != source)
            await _move_slot(client, Link(client).slot(key), source, target)
            await logw.chunks(sid, ["after"])  # the cluster client follows MOVED itself
            await logw.done(sid)
            got = await _until_terminal(sub)
            assert [e.seq for e in got] == [2, 3]
            assert _node_port(hub) == target
        finally:
            await hub.close()
            await client.aclose()


@pytest.mark.slow
@DROPS_A_NODE
async def test_a_reader_survives_the_failover_of_its_master(cluster: EmbeddedCluster) -> None:
    """The master of a watched stream's slot dies mid-stream; its replica takes over: the
    subscriber waits (within the down deadline) and gets the rest, no error, no gap."""
    client = await connect(cluster.url)
    hub = Hub(Link(client), block_ms=500, down_deadline_s=20)
    hub.start()
    try:
        logw = LogWriter(client, Keys(f"t{uuid.uuid4().hex[:12]}"))
        sid = await logw.create()
        sub = hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=64)
        await logw.chunks(sid, ["before"])
        assert [e.seq for e in await asyncio.wait_for(sub.get(), 5)] == [1]
        await eventually(lambda: _blocked(hub))
        old = _node_port(hub)
        cluster.kill(old)
        new = await asyncio.to_thread(cluster.failover_wait, old)
        await logw.chunks(sid, ["after"])
        await logw.done(sid)
        got = await _until_terminal(sub, timeout_s=10)
        assert [e.seq for e in got] == [2, 3]
        assert _node_port(hub) == new
    finally:
        await hub.close()
        await client.aclose()
        collect_removed_node_connections()
