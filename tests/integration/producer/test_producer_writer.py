"""The write coalescer against a real Redis and a real cluster: batching, duplicates, errors,
backpressure, and the order/ack contract."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
import pytest
from tests.conftest import BOTH
from tests.integration.producer.producerkit import PARTITIONS, chat_request

from fakeai.services.producer.records import Outcome, StreamRecords
from fakeai.services.producer.writer import Cmds, LogWriter, WriteFailed
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import (
    Group,
    Kind,
    Link,
    ensure_group,
    iter_entries,
    pack_command,
    pack_entry,
)
from fakeai.streams.log.firehose import firehose_events

pytestmark = pytest.mark.redis


def _xadd(link: Link, key: str, seq: int) -> Cmds:
    return Cmds(link.slot(key), pack_entry(key.encode(), b"1-%d" % seq, Kind.CHUNK, b"{}", seq), 1)


@BOTH
async def test_items_put_together_share_one_flush(rc: RedisClient, keys: Keys) -> None:
    link = Link(rc)
    writer = LogWriter(link)
    writer.start()
    key = keys.chunks("coalesce")
    for seq in range(1, 1001):
        await writer.put(_xadd(link, key, seq))
    await writer.write(Cmds(link.slot(key), pack_command(b"PING"), 1))
    await writer.close()
    assert await rc.xlen(key) == 1000
    assert writer.batches <= 2  # everything queued before the flusher ran goes in one batch
    assert writer.commands == 1001


@BOTH
async def test_duplicate_entry_ids_are_ignored_and_other_errors_fail_the_write(
    rc: RedisClient, keys: Keys
) -> None:
    link = Link(rc)
    writer = LogWriter(link)
    writer.start()
    key = keys.chunks("dups")
    await writer.write(_xadd(link, key, 1))
    await writer.write(_xadd(link, key, 1))  # re-sent after a failover: not an error
    assert await rc.xlen(key) == 1
    await rc.set(keys.meta("wrongtype"), "x")
    with pytest.raises(WriteFailed, match="WRONGTYPE"):
        await writer.write(_xadd(link, keys.meta("wrongtype"), 1))
    await writer.write(_xadd(link, key, 2))  # the writer goes on
    await writer.close()
    assert await rc.xlen(key) == 2


async def test_put_waits_for_room_when_max_pending_items_wait(rc: RedisClient, keys: Keys) -> None:
    link = Link(rc)
    writer = LogWriter(link, max_pending=10, max_batch=4)
    key = keys.chunks("backpressure")
    putter = asyncio.create_task(_put_many(writer, link, key, 50))
    await asyncio.sleep(0)
    assert not putter.done()
    assert writer.pending == 10
    writer.start()
    await asyncio.wait_for(putter, 5)
    await writer.close()
    assert await rc.xlen(key) == 50
    assert writer.batches >= 50 // 4


async def _put_many(writer: LogWriter, link: Link, key: str, n: int) -> None:
    for seq in range(1, n + 1):
        await writer.put(_xadd(link, key, seq))


async def test_put_nowait_refuses_only_when_max_pending_items_wait(
    rc: RedisClient, keys: Keys
) -> None:
    link = Link(rc)
    writer = LogWriter(link, max_pending=3)
    key = keys.chunks("nowait")
    assert all([writer.put_nowait(_xadd(link, key, seq)) for seq in (1, 2, 3)])
    assert not writer.put_nowait(_xadd(link, key, 4))
    assert writer.pending == 3
    writer.start()
    await writer.write(Cmds(link.slot(key), pack_command(b"PING"), 1))
    assert writer.put_nowait(_xadd(link, key, 4))
    await writer.close()
    assert await rc.xlen(key) == 4


class _SpyLink(Link):
    """A real link that records the commands of each ``execute`` call (names and keys)."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self.calls: list[list[list[bytes]]] = []

    async def execute(self, groups: Sequence[Group]) -> list[Any]:
        reader = hiredis.Reader()
        for _, packed, _ in groups:
            reader.feed(packed)
        commands = []
        while (command := reader.gets()) is not False:
            commands.append(command)
        self.calls.append(commands)
        return await super().execute(groups)


@BOTH
async def test_streams_land_in_seq_order_and_each_request_is_acked_after_its_end_and_firehose(
    rc: RedisClient, keys: Keys
) -> None:
    """The writer's contract: a stream's entries in seq order; a request's XACK only after its
    terminal XADD and the firehose entry that carries the terminal event (on a cluster, in a
    second ``execute`` once the first has returned)."""
    link = _SpyLink(rc)
    writer = LogWriter(link)
    reqs = [chat_request() for _ in range(12)]  # streams of many buckets and partitions
    records = []
    for req in reqs:
        key = keys.requests_for(req.stream_id, PARTITIONS)
        await ensure_group(rc, [key], PRODUCERS_GROUP, "0")
        await rc.xadd(key, {"r": b"x"})
        [[_, [(msg_id, _)]]] = await rc.xreadgroup(PRODUCERS_GROUP, "p", {key: ">"}, count=1)
        records.append(
            StreamRecords(
                request=req,
                msg_id=msg_id,
                request_key=key,
                keys=keys,
                link=link,
                firehose_partitions=2,
                retention_s=60,
            )
        )
    # interleaved, as streams that fall due together are
    for seq in range(1, 6):
        for rec in records:
            assert writer.put_nowait(rec.entry(seq, Kind.CHUNK, b'{"s":%d}' % seq, 1))
    finals = [rec.terminal(6, 5, Outcome(finish_reason="stop")) for rec in records]
    writer.start()
    await asyncio.gather(*(writer.write(f) for f in finals))
    await writer.close()

    for rec in records:
        sid = rec.request.stream_id
        log = [e async for page in iter_entries(rc, keys.chunks(sid)) for e in page]
        assert [e.seq for e in log] == [1, 2, 3, 4, 5, 6]
        assert log[-1].kind == Kind.DONE
    for key in {rec.request_key for rec in records}:
        assert int((await rc.xpending(key, PRODUCERS_GROUP))["pending"]) == 0
    events = [
        ev
        for p in range(2)
        for _, f in await rc.xrange(keys.events(p))
        for ev in firehose_events(f)
    ]
    assert {(e.stream_id, e.kind) for e in events if e.kind == "d"} == {
        (r.stream_id, "d") for r in reqs
    }
    # where each XACK went: after its stream's last XADD and its partition's last firehose XADD
    flat = [(i, c) for i, call in enumerate(link.calls) for c in call]
    for rec in records:
        sid = rec.request.stream_id
        ack = [b"XACK", rec.request_key.encode(), PRODUCERS_GROUP.encode(), rec.msg_id]
        ack_at = [n for n, (_, c) in enumerate(flat) if c == ack]
        log_at = [
            n for n, (_, c) in enumerate(flat) if c[:2] == [b"XADD", keys.chunks(sid).encode()]
        ]
        part = [b"XADD", keys.events_for(sid, 2).encode()]
        fire_at = [n for n, (_, c) in enumerate(flat) if c[:2] == part and n < ack_at[-1]]
        assert ack_at
        assert log_at
        assert fire_at
        assert max(log_at) < min(ack_at)
        if link.cluster:  # a separate execute, sent once the one with the firehose returned
            assert flat[fire_at[-1]][0] < flat[ack_at[0]][0]
            assert flat[log_at[-1]][0] < flat[ack_at[0]][0]


class _BreakingLink(Link):
    """A real link whose first ``execute`` fails the way redis-py did when a failover's slot-map
    refresh closed a connection mid-send (``AttributeError`` on its writer)."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self.failures = 1

    async def execute(self, groups: Sequence[Group]) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        return await super().execute(groups)


async def test_writer_survives_an_unexpected_failure_of_a_flush(
    rc: RedisClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (a master failover): an unexpected error in a flush killed the flusher, and
    every stream of the producer stalled with no error. The flush is retried and logged."""
    link = _BreakingLink(rc)
    writer = LogWriter(link)
    writer.start()
    key = keys.chunks("breaks")
    await asyncio.wait_for(writer.write(_xadd(link, key, 1)), 5)
    await writer.close()
    assert await rc.xlen(key) == 1
    assert link.failures == 0
    assert "writer: unexpected failure" in caplog.text
