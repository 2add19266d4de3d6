"""The write coalescer at its edges, on a real Redis: its bounds and defaults, items that fail
in the middle of a batch, a shutdown while Redis is away, redirections a cluster still answers,
refused firehose and ack commands, and Redis out of memory (a short episode costs a pause; past
``oom_retry_s`` a stream's data entries stop and a request is never acknowledged while its
terminal entry is missing).

Written from the mutation testing of ``fakeai/services/producer/writer.py`` (docs/TESTING.md):
each case kills a mutant the other tests let live.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MovedError
from tests.conftest import BOTH
from tests.integration.producer.producerkit import PARTITIONS, chat_request
from tests.support.servers import eventually

from fakeai.embedded_redis import EmbeddedRedis, free_port
from fakeai.services.producer.records import Outcome, StreamRecords
from fakeai.services.producer.writer import Cmds, LogWriter, WriteFailed
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import F_KIND, Group, Kind, Link, ensure_group, pack_command, pack_entry

pytestmark = pytest.mark.redis


def _xadd(link: Link, key: str, seq: int) -> Cmds:
    return Cmds(link.slot(key), pack_entry(key.encode(), b"1-%d" % seq, Kind.CHUNK, b"{}", seq), 1)


def _ping(link: Link) -> Cmds:
    return Cmds(0, pack_command(b"PING"), 1)


async def _records(client: RedisClient, keys: Keys, link: Link) -> StreamRecords:
    """The records of a stream whose request is read (pending) in the producers' group."""
    req = chat_request()
    key = keys.requests_for(req.stream_id, PARTITIONS)
    await ensure_group(client, [key], PRODUCERS_GROUP, "0")
    await client.xadd(key, {"r": b"x"})
    [[_, [(msg_id, _)]]] = await client.xreadgroup(PRODUCERS_GROUP, "p", {key: ">"}, count=1)
    return StreamRecords(request=req, msg_id=msg_id, request_key=key, keys=keys, link=link,
                         firehose_partitions=2, retention_s=60)  # fmt: skip


async def _pending(client: RedisClient, rec: StreamRecords) -> int:
    """1 while the stream's request waits for its XACK, else 0 (other streams may share its
    requests partition)."""
    rows = await client.xpending_range(
        rec.request_key, PRODUCERS_GROUP, min=rec.msg_id, max=rec.msg_id, count=1
    )
    return len(rows)


class _CountingLink(Link):
    """A real link that counts its ``execute`` calls; ``replies`` stand in for the first
    calls' replies (what a cluster answers mid-failover), or are raised when exceptions."""

    def __init__(self, client: RedisClient, replies: Sequence[list[Any] | Exception] = ()) -> None:
        super().__init__(client)
        self.calls = 0
        self._replies = list(replies)

    async def execute(self, groups: Sequence[Group]) -> list[Any]:
        self.calls += 1
        if self._replies:
            reply = self._replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        return await super().execute(groups)


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The writer's log lines at ``level``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "fakeai.services.producer.writer" and r.levelno == level
    ]


def test_bounds_below_one_are_refused_naming_both() -> None:
    link = Link(aredis.Redis())
    with pytest.raises(ValueError, match=r"^max_pending and max_batch must be >= 1; got 0, 5000$"):
        LogWriter(link, max_pending=0)
    with pytest.raises(ValueError, match=r"got 50000, 0$"):
        LogWriter(link, max_batch=0)
    one = LogWriter(link, max_pending=1, max_batch=1)
    assert one.max_pending == 1
    assert LogWriter(link).max_pending == 50_000
    assert (one.batches, one.commands, one.pending, one.refused) == (0, 0, 0, {})


async def test_a_batch_takes_at_most_max_batch_items(rc: RedisClient, keys: Keys) -> None:
    link = Link(rc)
    writer = LogWriter(link)
    for _ in range(5_000):
        assert writer.put_nowait(_ping(link))
    writer.start()
    writer.start()  # idempotent: one flusher
    await writer.write(_ping(link))  # the 5001st item: a second batch
    await writer.close()
    assert (writer.batches, writer.commands, writer.pending) == (2, 5_001, 0)

    small = LogWriter(link, max_batch=1)
    key = keys.chunks("one-by-one")
    for seq in (1, 2, 3):
        small.put_nowait(_xadd(link, key, seq))
    small.start()
    await small.write(_xadd(link, key, 4))
    await small.close()
    assert (small.batches, small.commands) == (4, 4)
    assert await rc.xlen(key) == 4


async def test_below_returns_once_fewer_than_limit_items_wait(rc: RedisClient) -> None:
    link = Link(rc)
    writer = LogWriter(link)
    for _ in range(3):
        writer.put_nowait(_ping(link))
    await asyncio.wait_for(writer.below(4), 5)  # 3 < 4: at once
    waiting = asyncio.create_task(writer.below(3))
    await asyncio.sleep(0)
    assert not waiting.done()
    writer.start()
    await asyncio.wait_for(waiting, 5)
    assert writer.pending < 3
    await writer.close()


async def test_write_waits_for_room_when_max_pending_items_wait(rc: RedisClient) -> None:
    link = Link(rc)
    writer = LogWriter(link, max_pending=2)
    for _ in range(2):
        writer.put_nowait(_ping(link))
    write = asyncio.ensure_future(writer.write(_ping(link)))
    await asyncio.sleep(0)
    assert writer.pending == 2  # not queued: no room
    writer.start()
    await asyncio.wait_for(write, 5)
    await writer.close()
    assert writer.commands == 3


async def test_only_the_items_redis_refused_fail_in_a_batch(
    rc: RedisClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    link = Link(rc)
    writer = LogWriter(link)
    ok, bad = keys.chunks("ok"), keys.meta("wrongtype")
    await rc.set(bad, "x")
    items = [_xadd(link, ok, 1), _xadd(link, bad, 1), _xadd(link, ok, 1), _xadd(link, ok, 2)]
    writes = [asyncio.ensure_future(writer.write(i)) for i in items]
    await asyncio.sleep(0)  # every write queued before the flusher's first batch
    writer.start()
    results = await asyncio.gather(*writes, return_exceptions=True)
    await writer.close()
    assert writer.batches == 1
    assert results[0] is None
    assert results[2] is None  # a duplicate id is no error
    assert results[3] is None
    assert isinstance(results[1], WriteFailed)
    assert results[1].oom is False
    assert str(results[1]).startswith("WRONGTYPE")
    assert await rc.xlen(ok) == 2
    assert _logged(caplog, logging.ERROR) == [
        f"writer: Redis refused 1 of 4 items (the first: {results[1]})"
    ]


async def test_each_refusal_is_told_to_its_own_item_in_a_mixed_batch(
    rc: RedisClient, keys: Keys
) -> None:
    """Commands, data entries and a stream's end in one batch, the fourth refused (its log key
    holds a string): only its write fails and only its stream is listed in ``refused``."""
    link = Link(rc)
    a, b, c = [await _records(rc, keys, link) for _ in range(3)]
    await rc.set(keys.chunks(c.request.stream_id), "x")
    ok = keys.chunks("mixed")
    writer = LogWriter(link)
    writer.put_nowait(_xadd(link, ok, 1))
    items = [
        a.entry(1, Kind.CHUNK, b'{"a":1}', 1),
        b.terminal(1, 0, Outcome(finish_reason="stop")),
        c.entry(1, Kind.CHUNK, b'{"c":1}', 1),
        _xadd(link, ok, 2),
    ]
    writes = [asyncio.ensure_future(writer.write(i)) for i in items]
    await asyncio.sleep(0)
    writer.start()
    results = await asyncio.gather(*writes, return_exceptions=True)
    await writer.close()
    assert writer.batches == 1
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "NoneType",
        "WriteFailed",
        "NoneType",
    ]
    assert list(writer.refused) == [c.head]
    assert str(writer.refused[c.head]).startswith("WRONGTYPE")
    assert await rc.xlen(ok) == 2
    assert await rc.xlen(keys.chunks(a.request.stream_id)) == 1
    assert await _pending(rc, b) == 0


async def test_close_gives_up_after_its_timeout_while_redis_is_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens on the port: the flusher retries until ``close`` times out, then the
    write still waiting is cancelled and the queue emptied."""
    client = aredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # fail at once
    link = Link(client)
    writer = LogWriter(link, backoff_cap_s=0.05)
    writer.start()
    writer.put_nowait(_ping(link))
    await eventually(lambda: _taken(writer))  # the flusher retries that batch

    async def warned() -> bool:
        return bool(_logged(caplog, logging.WARNING))

    await eventually(warned)
    write = asyncio.ensure_future(writer.write(_ping(link)))
    await asyncio.sleep(0)
    writer.put_nowait(_ping(link))
    assert writer.pending == 2
    started = time.monotonic()
    await writer.close(timeout_s=0.3)
    assert time.monotonic() - started >= 0.3
    assert writer.pending == 0
    with pytest.raises(asyncio.CancelledError):
        await write
    await client.aclose()
    warnings = _logged(caplog, logging.WARNING)
    assert len(warnings) == 2  # the first failure of the batch, and the shutdown
    assert re.fullmatch(r"writer: Redis unavailable \(.+\); retrying 1 command groups", warnings[0])
    # the batch being retried (1) and the two still queued
    assert warnings[1] == "writer: 3 items not flushed at shutdown (Redis down?)"


async def test_close_ends_a_write_whose_batch_the_flusher_is_retrying() -> None:
    """Regression: close() timing out cancelled the writes still queued but not one in the
    batch the flusher was retrying; that write() waited forever."""
    client = aredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # fail at once
    link = Link(client)
    writer = LogWriter(link, backoff_cap_s=0.05)
    writer.start()
    write = asyncio.ensure_future(writer.write(_ping(link)))
    await asyncio.sleep(0)  # the write is queued
    assert writer.pending == 1
    await eventually(lambda: _taken(writer))  # the flusher holds (and retries) its batch
    await writer.close(timeout_s=0.2)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(write, 10)
    await client.aclose()


def test_a_backoff_cap_below_the_first_delay_is_refused_at_construction() -> None:
    """Regression: accepted, it made the flusher's first retry raise and kill the flusher, and
    every later write waited forever."""
    link = Link(aredis.Redis(port=free_port()))
    with pytest.raises(ValueError, match="first_s <= cap_s"):
        LogWriter(link, backoff_cap_s=0.01)


async def _taken(writer: LogWriter) -> bool:
    return writer.pending == 0


@pytest.mark.parametrize("redirects", [1, 2])
async def test_a_batch_a_cluster_still_redirects_is_sent_again(
    rc: RedisClient, keys: Keys, caplog: pytest.LogCaptureFixture, redirects: int
) -> None:
    caplog.set_level(logging.INFO, logger="fakeai.services.producer.writer")
    moved = MovedError("3999 127.0.0.1:6381")
    link = _CountingLink(rc, replies=[[moved]] * redirects)
    writer = LogWriter(link, backoff_cap_s=0.05)
    writer.start()
    key = keys.chunks("moved")
    await asyncio.wait_for(writer.write(_xadd(link, key, 1)), 10)
    await writer.close()
    assert link.calls == redirects + 1
    assert await rc.xlen(key) == 1
    assert _logged(caplog, logging.WARNING) == [
        f"writer: Redis unavailable ({moved}); retrying 1 command groups"
    ]  # at the first failure, once per outage
    assert _logged(caplog, logging.INFO) == [f"writer: Redis is back after {redirects} retries"]


async def test_an_unexpected_failure_is_logged_once_with_the_groups_it_retries(
    rc: RedisClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    link = _CountingLink(rc, replies=[RuntimeError("boom"), RuntimeError("boom")])
    writer = LogWriter(link, backoff_cap_s=0.05)
    writer.start()
    key = keys.chunks("boom")
    await asyncio.wait_for(writer.write(_xadd(link, key, 1)), 10)
    await writer.close()
    assert await rc.xlen(key) == 1
    assert _logged(caplog, logging.ERROR) == ["writer: unexpected failure; retrying 1 groups"]


@BOTH
async def test_a_refused_ack_is_logged_and_the_write_succeeds(
    rc: RedisClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """On a cluster the XACK goes in a second round trip; refused, it is logged all the same,
    and every command of both counts."""
    link = Link(rc)
    rec = await _records(rc, keys, link)
    await rc.delete(rec.request_key)
    await rc.set(rec.request_key, "x")  # the XACK meets a string: WRONGTYPE
    writer = LogWriter(link)
    writer.start()
    final = rec.terminal(1, 0, Outcome(finish_reason="stop"))
    await writer.write(final)
    await writer.close()
    assert await rc.xlen(keys.chunks(rec.request.stream_id)) == 1
    [error] = _logged(caplog, logging.ERROR)
    assert error.startswith(
        "writer: Redis refused 1 firehose or ack commands (the first: WRONGTYPE"
    )
    firehose = 2  # the partition's XADD and its first XTRIM
    assert writer.commands == final.cmds.n + final.active.n + firehose + final.after.n


# -- Redis out of memory ---------------------------------------------------------------------


@pytest.fixture
async def full_redis() -> AsyncIterator[aredis.Redis]:
    """A Redis of this test only, with ``noeviction`` (made full by a ``maxmemory`` of 1)."""
    server = EmbeddedRedis(persistent=False, extra_args=["--maxmemory-policy", "noeviction"])
    server.start()
    client = aredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        server.stop()


async def _full(client: aredis.Redis, full: bool) -> None:
    await client.config_set("maxmemory", 1 if full else 0)


async def test_a_short_out_of_memory_episode_costs_a_pause_not_the_write(
    full_redis: aredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    link = _CountingLink(full_redis)
    rec = await _records(full_redis, keys, link)
    writer = LogWriter(link, oom_retry_s=60.0)
    writer.start()
    await _full(full_redis, True)
    write = asyncio.ensure_future(writer.write(rec.entry(1, Kind.CHUNK, b'{"a":1}', 1)))
    try:
        await eventually(lambda: _at_least(link, 2))  # refused and retried
        assert not write.done()
    finally:
        await _full(full_redis, False)
    await asyncio.wait_for(write, 10)
    await writer.close()
    assert writer.refused == {}
    assert await full_redis.xlen(keys.chunks(rec.request.stream_id)) == 1
    [error] = _logged(caplog, logging.ERROR)  # once per episode, not once per retry
    assert re.fullmatch(
        r"writer: Redis is out of memory \(.*maxmemory.*\); retrying for up to 60\.0 s, then "
        r"the streams whose writes it refuses end with 'redis_full'",
        error,
    )
    [back] = _logged(caplog, logging.WARNING)
    assert re.fullmatch(r"writer: Redis accepts writes again after \d+\.\d s out of memory", back)


async def _at_least(link: _CountingLink, n: int) -> bool:
    return link.calls >= n


async def test_past_oom_retry_s_a_stream_stops_and_its_request_stays_pending(
    full_redis: aredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis still full after ``oom_retry_s``: the data write fails (``oom``), the stream is
    listed in ``refused`` and its later data entries are dropped, never sent; its terminal
    entry fails too, and the request is not acknowledged. Once memory is back, the end is
    written in a second round trip and acknowledged; ``forget`` lets a stream write again."""
    link = Link(full_redis)
    rec = await _records(full_redis, keys, link)
    chunks = keys.chunks(rec.request.stream_id)
    writer = LogWriter(link, oom_retry_s=0.2)
    writer.start()
    await _full(full_redis, True)
    try:
        started = time.monotonic()
        with pytest.raises(WriteFailed) as refused:
            await writer.write(rec.entry(1, Kind.CHUNK, b'{"a":1}', 1))
        assert time.monotonic() - started >= 0.2
        assert refused.value.oom is True
        assert writer.refused[rec.head].oom is True
        with pytest.raises(WriteFailed) as end:
            await writer.write(rec.terminal(2, 1, Outcome(finish_reason="stop")))
        assert end.value.oom is True
        assert await _pending(full_redis, rec) == 1  # its XACK was never sent
    finally:
        await _full(full_redis, False)
    writer.put_nowait(rec.entry(2, Kind.CHUNK, b'{"a":2}', 1))  # put, not awaited: dropped
    with pytest.raises(WriteFailed) as dropped:
        await writer.write(rec.entry(3, Kind.CHUNK, b'{"a":3}', 1))
    assert dropped.value is writer.refused[rec.head]
    assert str(dropped.value) == str(refused.value)  # Redis's refusal, as it worded it
    assert await full_redis.xlen(chunks) == 0  # nothing after the hole
    assert _logged(caplog, logging.WARNING) == []
    await writer.write(rec.terminal(1, 0, Outcome(error_code="redis_full")))
    assert await _pending(full_redis, rec) == 0
    [back] = _logged(caplog, logging.WARNING)  # the end written: the episode is over
    assert back.startswith("writer: Redis accepts writes again after ")
    other = await _records(full_redis, keys, link)
    await writer.write(other.entry(1, Kind.CHUNK, b'{"b":1}', 1))  # other streams go on
    assert await full_redis.xlen(keys.chunks(other.request.stream_id)) == 1
    writer.forget(rec.head)
    writer.forget(rec.head)  # idempotent
    assert writer.refused == {}
    await writer.close()
    assert [f[F_KIND] for _, f in await full_redis.xrange(chunks)] == [Kind.ERROR]
