"""The stream log's contract (fakeai.streams.log), on a real Redis and a real cluster.

Every writer packs through the log module and every reader parses through it; these tests
hold the packer and the readers to the contract in the package docstring, and exercise the
raw connection calls of :mod:`fakeai.streams.log.link`, so a redis-py upgrade that breaks
them fails here first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aredis
from redis.exceptions import ResponseError
from tests.conftest import BOTH

from fakeai.streams import Keys, entry_id
from fakeai.streams.client import RedisClient, connect
from fakeai.streams.log import (
    Kind,
    Link,
    ensure_group,
    is_duplicate_id,
    iter_entries,
    last_entry,
    pack_command,
    pack_entry,
    parse_entry,
    parse_flat,
)
from fakeai.streams.log import firehose as fh
from fakeai.wire import FirehoseItem, FirehoseStream, decode_firehose_batch, encode

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[RedisClient]:
    c = await connect(store_url)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def k() -> Keys:
    return Keys(f"c{uuid.uuid4().hex[:10]}")


def _sids(n: int) -> list[str]:
    return [f"chatcmpl-{uuid.uuid4().hex}" for _ in range(n)]


async def _write(link: Link, key: str, created_ms: int, entries: list[tuple[bytes, bytes]]) -> Any:
    packed = b"".join(
        pack_entry(key.encode(), entry_id(created_ms, seq).encode(), kind, data, 1_000 + seq)
        for seq, (kind, data) in enumerate(entries, start=1)
    )
    return await link.execute([(link.slot(key), packed, len(entries))])


def test_packer_gives_redis_py_bytes() -> None:
    """Our packer sends what redis-py would send for the same arguments."""
    args = (b"XADD", b"k:{7}:s:chunks", b"17-1", b"k", b"c", b"d", b'{"x":"\xc3\xa9"}', b"t", b"9")
    expected = _redis_py_pack(args)
    assert pack_command(*args) == expected
    assert pack_entry(b"k:{7}:s:chunks", b"17-1", b"c", b'{"x":"\xc3\xa9"}', 9) == expected


def _redis_py_pack(args: tuple[bytes, ...]) -> bytes:
    from redis.connection import PythonRespSerializer

    return b"".join(PythonRespSerializer(6000, lambda b: b).pack(*args))


@BOTH
async def test_written_entries_read_back_alike_by_every_reader(
    client: RedisClient, k: Keys
) -> None:
    link = Link(client)
    sid = _sids(1)[0]
    key = k.chunks(sid)
    rows = [(Kind.CHUNK, b'{"n":1}'), (Kind.CHUNK, b'{"n":2}'), (Kind.DONE, b"{}")]
    replies = await _write(link, key, 1700, rows)
    assert replies == [b"1700-1", b"1700-2", b"1700-3"]

    pages = [e async for page in iter_entries(client, key) for e in page]
    assert [(e.id, e.seq, e.kind, e.data, e.t_us) for e in pages] == [
        (b"1700-1", 1, b"c", b'{"n":1}', 1001),
        (b"1700-2", 2, b"c", b'{"n":2}', 1002),
        (b"1700-3", 3, b"d", b"{}", 1003),
    ]
    assert [e.terminal for e in pages] == [False, False, True]
    # Replay from an id: every entry after it, in order.
    after = [e.seq async for page in iter_entries(client, key, "1700-1") for e in page]
    assert after == [2, 3]
    last = await last_entry(client, key)
    assert last is not None
    assert last.terminal
    assert last.seq == 3
    # The raw reader (flat field lists, as a hub reads them) parses to the same entries.
    reader = await link.reader(key)
    try:
        raw = await reader.call(pack_command(b"XRANGE", key.encode(), b"-", b"+"))
    finally:
        await reader.close()
    assert [parse_flat(i, f) for i, f in raw] == pages
    assert parse_entry(b"1700-1", {b"k": b"c", b"d": b"x", b"t": b"5"}).t_us == 5


@BOTH
async def test_a_resent_entry_is_rejected_by_its_id(client: RedisClient, k: Keys) -> None:
    link = Link(client)
    key = k.chunks(_sids(1)[0])
    await _write(link, key, 1700, [(Kind.CHUNK, b"1"), (Kind.CHUNK, b"2")])
    again = await _write(link, key, 1700, [(Kind.CHUNK, b"1")])
    assert len(again) == 1
    assert is_duplicate_id(again[0])
    assert not is_duplicate_id(ResponseError("WRONGTYPE Operation against a key"))
    assert await client.xlen(key) == 2


@BOTH
async def test_execute_routes_groups_of_many_slots_in_order(client: RedisClient, k: Keys) -> None:
    """Commands of streams in many buckets (all masters on a cluster) in one call: replies in
    the order of the groups, each stream's entries in seq order."""
    link = Link(client)
    sids = _sids(40)
    groups = []
    for sid in sids:
        key = k.chunks(sid).encode()
        packed = pack_entry(key, b"5-1", b"c", b"a", 1) + pack_entry(key, b"5-2", b"d", b"{}", 2)
        groups.append((link.slot(key), packed, 2))
    replies = await link.execute(groups)
    assert replies == [b"5-1", b"5-2"] * len(sids)
    if link.cluster:
        assert len({link.client.get_node_from_key(k.chunks(s)).name for s in sids}) == 3  # type: ignore[union-attr]


@BOTH
async def test_a_stale_slot_map_is_followed(client: RedisClient, k: Keys) -> None:
    """MOVED (a resharded slot, a failover) is answered by re-sending after a refresh."""
    link = Link(client)
    if not isinstance(client, aredis.RedisCluster):
        pytest.skip("a single server never redirects")
    sid = _sids(1)[0]
    key = k.chunks(sid)
    slot = client.keyslot(key)
    manager = client.nodes_manager
    right = manager.get_node_from_slot(slot)
    wrong = next(n for n in client.get_primaries() if n.name != right.name)
    manager.slots_cache[slot] = [wrong]  # the map a client holds after a reshard it missed
    replies = await _write(link, key, 9, [(Kind.CHUNK, b"x")])
    assert replies == [b"9-1"]
    assert manager.get_node_from_slot(slot).name == right.name


@BOTH
async def test_a_blocking_reader_wakes_on_unblock_and_on_data(client: RedisClient, k: Keys) -> None:
    link = Link(client)
    key = k.chunks(_sids(1)[0])
    reader = await link.reader(key)
    try:
        xread = pack_command(b"XREAD", b"BLOCK", b"10000", b"STREAMS", key.encode(), b"0-0")
        blocked = asyncio.create_task(reader.call(xread))
        for _ in range(500):  # the command may still be on its way: retry the unblock
            if await reader.unblock():
                break
            await asyncio.sleep(0.005)
        assert await asyncio.wait_for(blocked, 5) is None  # unblocked: a nil reply
        blocked = asyncio.create_task(reader.call(xread))
        await _write(link, key, 3, [(Kind.CHUNK, b"y")])
        reply = await asyncio.wait_for(blocked, 5)
        rows = reply[key.encode()] if isinstance(reply, dict) else reply[0][1]
        assert [parse_flat(i, f).data for i, f in rows] == [b"y"]
    finally:
        await reader.close()


@BOTH
async def test_read_sets_name_keys_one_read_may_hold(client: RedisClient, k: Keys) -> None:
    link = Link(client)
    keys = [k.chunks(s).encode() for s in _sids(30)]
    sets = link.read_sets(keys)
    assert sorted(x for s in sets for x in s) == sorted(keys)
    if link.cluster:
        assert all(len({link.slot(x) for x in s}) == 1 for s in sets)
        assert len(sets) > 1
    else:
        assert len(sets) == 1


@BOTH
async def test_ensure_group_tolerates_only_an_existing_group(client: RedisClient, k: Keys) -> None:
    streams = k.all_events(4)
    await ensure_group(client, streams, "g", "0")
    await ensure_group(client, streams, "g", "0")  # BUSYGROUP: fine
    for s in streams:
        assert [g["name"] for g in await client.xinfo_groups(s)] == [b"g"]
    await client.set(k.cancels(), "not a stream")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await ensure_group(client, [k.cancels()], "g", "0")


@BOTH
async def test_firehose_batches_decode_to_the_wire_structs(client: RedisClient, k: Keys) -> None:
    link = Link(client)
    head = fh.stream_head("chatcmpl-\u00e9x", "gpt-4o", 11, 12)
    events = [fh.event(1, b"c", 13, 1, b'{"a":1}'), fh.event(2, b"e", 14, 0, b"{}", "timeout")]
    entry = fh.batch_entry([(head, events)])
    expected = [
        FirehoseStream(
            "chatcmpl-\u00e9x",
            "gpt-4o",
            11,
            12,
            [
                FirehoseItem(1, "c", 13, 1, msgspec.Raw(b'{"a":1}')),
                FirehoseItem(2, "e", 14, 0, msgspec.Raw(b"{}"), "timeout"),
            ],
        )
    ]
    # The same structs as msgspec's encoding (which spells out trailing defaults as null).
    assert decode_firehose_batch(entry) == expected == decode_firehose_batch(encode(expected))
    key = k.events(0)
    await link.execute([(link.slot(key), fh.pack_batch(key.encode(), entry), 1)])
    (_, fields), *_ = await client.xrange(key)
    name, raw = fh.payload_field(fields)
    assert name == fh.F_BATCH
    assert decode_firehose_batch(raw) == expected
    assert fh.payload_field([b"b", raw]) == (fh.F_BATCH, raw)
    assert fh.payload_field({b"x": b"1"}) == (None, b"")
