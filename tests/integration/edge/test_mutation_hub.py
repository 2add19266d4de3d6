"""The hub at its edges, on a real Redis: the exact XREAD it sends and its defaults, the
counters, subscribe/unsubscribe bookkeeping, the unblock kick, raw replies in RESP2 and RESP3
(multi-row batches, a terminal in the middle, nil on a timeout), overflowed subscribers, the
backoff and the down deadline against a Redis that is not there, the log lines of a lost and
a regained connection, and what ``end_all``/``close`` leave behind.

Written from the mutation testing of ``fakeai/services/edge/hub.py`` (docs/TESTING.md): each
case kills mutants the other hub tests let live. The pauses of the read loop are recorded
(and shortened to a bare yield) through the hub module's ``asyncio`` where a test checks
them; Redis is never faked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aredis
from tests.integration.edge.edgekit import LogWriter
from tests.support.servers import eventually

import fakeai.services.edge.hub as hub_module
from fakeai.embedded_redis import free_port
from fakeai.services.edge.hub import REPLY_MARGIN_S, Hub
from fakeai.services.edge.interrupted import RESUME_HINT, StreamInterrupted
from fakeai.services.edge.subscription import Subscription
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Link, Reader, pack_command

pytestmark = pytest.mark.redis

BLOCK_MS = 60_000
"""Long enough that no read of these tests ends by its BLOCK timeout."""
HUB_LOGGER = "fakeai.services.edge.hub"


class SpyLink(Link):
    """A real :class:`Link` that records the keys its readers are opened for and every
    command they send, and can hold a connect until :attr:`gate` is set."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self.opened: list[bytes] = []
        self.sent: list[bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.hold = asyncio.Event()
        """Cleared: a reply is held (after it arrived) until it is set again."""
        self.hold.set()
        self.held = 0
        self.send = asyncio.Event()
        """Cleared: a read waits, already counted as blocked by the hub, before it is sent."""
        self.send.set()
        self.waiting = 0
        self.refreshes = 0

    async def refresh(self) -> None:
        self.refreshes += 1
        await super().refresh()

    async def reader(self, key: str | bytes) -> Reader:
        self.opened.append(key if isinstance(key, bytes) else key.encode())
        await self.gate.wait()
        reader = await super().reader(key)
        call = reader.call

        async def spy(packed: bytes) -> Any:
            if not self.send.is_set():
                self.waiting += 1
                await self.send.wait()
            self.sent.append(packed)
            reply = await call(packed)
            if not self.hold.is_set():
                self.held += 1
                await self.hold.wait()
            return reply

        reader.call = spy  # type: ignore[method-assign]
        return reader


class Pauses:
    """The hub module's ``asyncio`` with ``sleep`` recorded and cut to a bare yield."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.hook: Callable[[], None] | None = None
        """Called at each pause, before it yields."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if self.hook is not None:
            self.hook()
        await asyncio.sleep(0)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> Pauses:
    p = Pauses()
    monkeypatch.setattr(hub_module, "asyncio", p)
    return p


@pytest.fixture
def link(rc: RedisClient) -> SpyLink:
    return SpyLink(rc)


@pytest.fixture
async def hub(link: SpyLink, rc: RedisClient) -> AsyncIterator[Hub]:
    h = Hub(link, block_ms=BLOCK_MS)
    h.start()
    try:
        yield h
    finally:
        await eventually(lambda: _settled(h, rc))
        await h.close()


@pytest.fixture
async def dead_link() -> AsyncIterator[Link]:
    """A link to a port nobody listens on."""
    dead = aredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}")
    try:
        yield Link(dead)
    finally:
        await dead.aclose()


def _lane(hub: Hub) -> Any:
    (lane,) = hub._lanes.values()
    return lane


async def _blocked(hub: Hub, rc: RedisClient) -> bool:
    """The lane's XREAD is blocked on the server (not just on its way: a cancellation that
    lands while redis-py sends it is lost, as Python 3.11's ``asyncio.wait_for`` does, and the
    read then blocks for its whole BLOCK time)."""
    lane = _lane(hub)
    reader = lane.reader
    if lane.blocked_gen is None or reader is None:
        return False
    clients = await rc.client_list()
    return any(int(c["id"]) == reader.client_id and "b" in c["flags"] for c in clients)


async def _settled(hub: Hub, rc: RedisClient) -> bool:
    """Every reader is blocked on the server, idle, or done: safe to close."""
    for lane in hub._lanes.values():
        if lane.task is None or lane.task.done():
            continue
        if not lane.last and not lane.wake.is_set():
            continue
        if lane.reader is not None and await _blocked(hub, rc):
            continue
        return False
    return True


def _sub(hub: Hub, logw: LogWriter, sid: str, limit: int = 64) -> Subscription:
    return hub.subscribe(logw.keys.chunks(sid), f"{logw.created[sid]}-0", limit=limit)


async def _get(sub: Subscription) -> list[tuple[int, bytes]]:
    return [(e.seq, e.kind) for e in await asyncio.wait_for(sub.get(), 15)]


async def _interrupted(sub: Subscription) -> StreamInterrupted:
    with pytest.raises(StreamInterrupted) as info:
        await asyncio.wait_for(sub.get(), 15)
    return info.value


async def _atomic(r: RedisClient, logw: LogWriter, writes: list[tuple[str, bytes]]) -> None:
    """Append entries (stream, kind) in one MULTI/EXEC: a blocked XREAD gets them in one reply."""
    pipe = r.pipeline(transaction=True)
    for sid, kind in writes:
        pipe.xadd(logw.keys.chunks(sid), {"k": kind, "d": b"{}", "t": 1}, id=logw._next(sid))
    await pipe.execute()


# -- construction and the command ----------------------------------------------------------


async def test_defaults_and_the_exact_xread(rc: RedisClient, logw: LogWriter) -> None:
    """``XREAD COUNT 512 BLOCK <block_ms> STREAMS <key> <concrete id>``; the reply may take
    the block time plus the margin; the reader is opened for the lane's key."""
    plain = Link(rc)
    defaults = Hub(plain)
    assert defaults.link is plain
    assert defaults._xread == (b"XREAD", b"COUNT", b"512", b"BLOCK", b"1000", b"STREAMS")
    assert REPLY_MARGIN_S == 5.0
    assert defaults._reply_timeout_s == 6.0
    assert defaults._down_deadline_s == 10.0
    assert Hub(plain, block_ms=250)._reply_timeout_s == 5.25
    assert (defaults.reads, defaults.overflows) == (0, 0)
    assert (defaults.keys, defaults.subscriptions, defaults.readers) == (0, 0, 0)
    assert (hub_module._BACKOFF_MIN_S, hub_module._BACKOFF_MAX_S) == (0.05, 1.0)
    await defaults.close()

    spy = SpyLink(rc)
    hub = Hub(spy, block_ms=1234)
    hub.start()
    try:
        sid = await logw.create()
        key = logw.keys.chunks(sid).encode()
        sub = _sub(hub, logw, sid)
        await logw.chunks(sid, ["a"])
        assert await _get(sub) == [(1, b"c")]
        assert spy.opened == [key]
        start = b"%d-0" % logw.created[sid]
        assert spy.sent[0] == pack_command(
            b"XREAD", b"COUNT", b"512", b"BLOCK", b"1234", b"STREAMS", key, start
        )
    finally:
        await eventually(lambda: _settled(hub, rc))
        await hub.close()


async def test_nothing_reads_before_start_and_nothing_after_close(
    link: SpyLink, rc: RedisClient, logw: LogWriter
) -> None:
    hub = Hub(link, block_ms=BLOCK_MS)
    sid = await logw.create()
    sub = _sub(hub, logw, sid)
    await logw.chunks(sid, ["early"])
    assert _lane(hub).task is None
    assert hub.readers == 0
    assert link.opened == []
    hub.start()
    try:
        assert await _get(sub) == [(1, b"c")]
        assert hub.readers == 1
    finally:
        await eventually(lambda: _settled(hub, rc))
        await hub.close()
    assert hub.readers == 0

    closed = Hub(link, block_ms=BLOCK_MS)
    closed.subscribe(logw.keys.chunks(sid), "1-0", limit=4)
    await closed.close()
    closed.start()
    assert _lane(closed).task is None


# -- counters and bookkeeping ----------------------------------------------------------------


async def test_counters_and_unsubscribe_drop_a_key_with_its_last_subscriber(
    hub: Hub, logw: LogWriter
) -> None:
    a, b = await logw.create(), await logw.create()
    a1, a2, b1 = _sub(hub, logw, a), _sub(hub, logw, a), _sub(hub, logw, b)
    assert (hub.keys, hub.subscriptions) == (2, 3)
    hub.unsubscribe(a1)
    hub.unsubscribe(a1)  # idempotent
    assert (hub.keys, hub.subscriptions) == (2, 2)
    await logw.chunks(a, ["x"])
    assert await _get(a2) == [(1, b"c")]
    assert hub.readers == 1
    hub.unsubscribe(a2)
    assert (hub.keys, hub.subscriptions) == (1, 1)
    hub.unsubscribe(b1)
    hub.unsubscribe(b1)
    assert (hub.keys, hub.subscriptions) == (0, 0)
    assert hub.readers == 1  # an idle reader keeps its connection
    # The key was dropped: a new subscriber starts where it says, not where the hub was.
    more = await logw.chunks(a, ["y", "z"])
    again = hub.subscribe(logw.keys.chunks(a), more[0], limit=64)
    assert (hub.keys, hub.subscriptions) == (1, 1)
    assert await _get(again) == [(3, b"c")]


async def test_unsubscribe_leaves_the_heartbeat_slot(hub: Hub, logw: LogWriter) -> None:
    sid = await logw.create()
    sub = _sub(hub, logw, sid)
    waiting = asyncio.create_task(sub.get(timeout=30))
    await eventually(lambda: _in_a_slot(hub, sub))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    hub.unsubscribe(sub)
    assert sub._slot is None
    assert not await _in_a_slot(hub, sub)


async def _in_a_slot(hub: Hub, sub: Subscription) -> bool:
    return any(sub in slot for slot in hub._wakeups._slots.values())


async def test_reads_counts_each_answered_xread(hub: Hub, logw: LogWriter) -> None:
    sid = await logw.create()
    sub = _sub(hub, logw, sid)
    await logw.chunks(sid, ["one"])
    assert await _get(sub) == [(1, b"c")]
    assert hub.reads == 1
    await logw.chunks(sid, ["two"])
    assert await _get(sub) == [(2, b"c")]
    assert hub.reads == 2


async def test_nil_replies_are_timeouts_and_the_reader_goes_on(
    rc: RedisClient, logw: LogWriter
) -> None:
    hub = Hub(Link(rc), block_ms=20)
    hub.start()
    try:
        sid = await logw.create()
        sub = _sub(hub, logw, sid)
        await eventually(lambda: _reads_at_least(hub, 3))  # nothing written: nil replies
        await logw.chunks(sid, ["late"])
        assert await _get(sub) == [(1, b"c")]
    finally:
        await hub.close()


async def _reads_at_least(hub: Hub, n: int) -> bool:
    return hub.reads >= n


# -- the unblock kick ------------------------------------------------------------------------


async def test_each_new_key_unblocks_the_blocked_read(
    hub: Hub, link: SpyLink, rc: RedisClient, logw: LogWriter
) -> None:
    """A 60 s BLOCK: every key added while it is blocked is read at once (eventually's deadline
    is well under the block), again and again."""
    a = await logw.create()
    sub_a = _sub(hub, logw, a)
    assert _lane(hub).kick_task is None  # nothing to unblock yet
    assert _lane(hub).task.get_name() == "edge-hub-0"
    for n in range(2):
        await eventually(lambda: _blocked(hub, rc))
        reads = hub.reads
        sid = await logw.create()
        await logw.chunks(sid, ["hello"])
        sub = _sub(hub, logw, sid)
        assert _lane(hub).kick_task.get_name() == "edge-hub-unblock"
        assert await _get(sub) == [(1, b"c")]
        assert hub.reads >= reads + 1
        assert hub.keys == n + 2
    await eventually(lambda: _kick_done(hub))
    await logw.chunks(a, ["a"])
    assert await _get(sub_a) == [(1, b"c")]
    assert len(link.opened) == 1  # the kicks never cost the reader its connection


async def test_the_kick_retries_until_the_read_has_reached_the_server(
    hub: Hub, link: SpyLink, logw: LogWriter, pauses: Pauses
) -> None:
    """CLIENT UNBLOCK answers 0 while the XREAD is still on its way: the kick tries again
    every 2 ms until it lands."""
    link.send.clear()
    a = await logw.create()
    _sub(hub, logw, a)
    await eventually(lambda: _waiting(link))
    b = await logw.create()
    await logw.chunks(b, ["b"])
    sub_b = _sub(hub, logw, b)
    await eventually(lambda: _paused(pauses, 2))
    link.send.set()
    assert await _get(sub_b) == [(1, b"c")]
    await eventually(lambda: _kick_done(hub))
    assert set(pauses.sleeps) == {0.002}


async def test_a_refused_unblock_is_logged_and_the_read_ends_by_its_block_time(
    redis_url: str,
    rc: RedisClient,
    key_prefix: str,
    logw: LogWriter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CLIENT UNBLOCK that fails (here: an ACL user may not send it) is logged at debug
    level; the new key is read once the blocked read ends by itself."""
    caplog.set_level(logging.DEBUG, logger=HUB_LOGGER)
    user = f"{key_prefix}-hub"
    await rc.execute_command(
        "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-client|unblock"
    )
    client = aredis.Redis.from_url(redis_url, username=user, password="pw")
    hub = Hub(Link(client), block_ms=300)
    hub.start()
    try:
        a, b = await logw.create(), await logw.create()
        await logw.chunks(b, ["b"])
        _sub(hub, logw, a)
        await eventually(lambda: _blocked(hub, rc))
        sub_b = _sub(hub, logw, b)
        assert _lane(hub).kick_task is not None
        assert await _get(sub_b) == [(1, b"c")]
        failed = [rec for rec in caplog.records if rec.name == HUB_LOGGER]
        assert len(failed) == 1
        assert failed[0].levelno == logging.DEBUG
        assert failed[0].getMessage().startswith("hub unblock failed: ")
        assert "client|unblock" in failed[0].getMessage()  # the error itself
        assert _lane(hub).kick_task is None
    finally:
        await eventually(lambda: _settled(hub, rc))
        await hub.close()
        await client.aclose()
        await rc.execute_command("ACL", "DELUSER", user)


async def _waiting(link: SpyLink) -> bool:
    return link.waiting > 0


async def _kick_done(hub: Hub) -> bool:
    return _lane(hub).kick_task is None


async def test_unsubscribing_every_key_while_connecting_idles_the_reader(
    hub: Hub, link: SpyLink, logw: LogWriter
) -> None:
    link.gate.clear()
    sid = await logw.create()
    sub = _sub(hub, logw, sid)
    await eventually(lambda: _opened(link))
    hub.unsubscribe(sub)
    link.gate.set()
    await eventually(lambda: _readers(hub, 1))  # connected, nothing to read: idle
    assert link.sent == []
    other = await logw.create()
    sub2 = _sub(hub, logw, other)
    await logw.chunks(other, ["b"])
    assert await _get(sub2) == [(1, b"c")]
    assert len(link.opened) == 1


async def _opened(link: SpyLink) -> bool:
    return bool(link.opened)


async def _readers(hub: Hub, n: int) -> bool:
    return hub.readers == n


# -- replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
async def test_multi_row_replies_of_many_keys_in_resp2_and_resp3(
    redis_url: str, rc: RedisClient, logw: LogWriter, protocol: int
) -> None:
    """RESP2 answers a list of [key, rows], RESP3 a map; rows of several streams in one reply;
    a multi-row batch without a terminal keeps its key, one with a terminal (last, or in the
    middle) delivers every row and drops it; the next read starts after the batch."""
    client = aredis.Redis.from_url(redis_url, protocol=protocol)
    hub = Hub(Link(client), block_ms=BLOCK_MS)
    try:
        x, y, z = await logw.create(), await logw.create(), await logw.create()
        await logw.chunks(x, ["1", "2"])
        await logw.chunks(y, ["1"])
        sx, sy, sz = _sub(hub, logw, x), _sub(hub, logw, y), _sub(hub, logw, z)
        hub.start()
        assert await _get(sx) == [(1, b"c"), (2, b"c")]
        assert await _get(sy) == [(1, b"c")]
        assert hub.reads == 1
        assert hub.keys == 3
        await eventually(lambda: _blocked(hub, rc))
        await _atomic(rc, logw, [(x, b"c"), (y, b"c"), (y, b"c"), (y, b"d"), (z, b"c")])
        assert await _get(sx) == [(3, b"c")]
        assert await _get(sy) == [(2, b"c"), (3, b"c"), (4, b"d")]
        assert await _get(sz) == [(1, b"c")]
        assert (hub.keys, hub.subscriptions) == (2, 2)  # y ended
        await eventually(lambda: _blocked(hub, rc))
        await _atomic(rc, logw, [(x, b"c"), (x, b"e"), (x, b"c"), (z, b"c")])
        assert await _get(sx) == [(4, b"c"), (5, b"e"), (6, b"c")]
        assert await _get(sz) == [(2, b"c")]
        assert (hub.keys, hub.subscriptions) == (1, 1)  # x ended, z goes on
        await logw.chunks(z, ["3"])
        assert await _get(sz) == [(3, b"c")]
    finally:
        await hub.close()
        await client.aclose()


async def test_a_reply_row_of_a_key_no_longer_watched_is_skipped(
    hub: Hub, link: SpyLink, logw: LogWriter
) -> None:
    """A key dropped while its read is under way may still be in the reply; the keys after
    it are delivered from that same reply."""
    a, b = await logw.create(), await logw.create()
    await logw.chunks(a, ["a"])
    await logw.chunks(b, ["b"])
    link.hold.clear()
    sub_a, sub_b = _sub(hub, logw, a), _sub(hub, logw, b)
    await eventually(lambda: _held(link))
    hub.unsubscribe(sub_a)
    link.hold.set()
    assert await _get(sub_b) == [(1, b"c")]
    assert hub.reads == 1
    assert sub_a._items == []


async def _held(link: SpyLink) -> bool:
    return link.held > 0


async def test_overflowed_subscribers_are_skipped_and_counted_once(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid = await logw.create()
    slow = [_sub(hub, logw, sid, limit=2) for _ in range(3)]
    fast = [_sub(hub, logw, sid) for _ in range(4)]
    for seq in range(1, 7):
        await logw.chunks(sid, [str(seq)])
        for sub in fast:
            assert await _get(sub) == [(seq, b"c")]
    assert hub.overflows == 3
    assert all(sub.overflowed for sub in slow)
    for sub in slow:
        assert (await _interrupted(sub)).code == "slow_consumer"


# -- shutdown --------------------------------------------------------------------------------


async def test_end_all_fails_every_subscriber_with_the_given_error(
    hub: Hub, logw: LogWriter
) -> None:
    a, b = await logw.create(), await logw.create()
    subs = [_sub(hub, logw, a), _sub(hub, logw, a), _sub(hub, logw, b)]
    hub.end_all("some_code", "some message")
    for sub in subs:
        failure = await _interrupted(sub)
        assert (failure.code, failure.message) == ("some_code", "some message")
    assert (hub.keys, hub.subscriptions) == (0, 0)


async def test_close_ends_subscribers_cancels_readers_and_refuses_new_ones(
    link: SpyLink, rc: RedisClient, logw: LogWriter
) -> None:
    hub = Hub(link, block_ms=5000)
    hub.start()
    a, b = await logw.create(), await logw.create()
    subs = [_sub(hub, logw, a), _sub(hub, logw, b)]
    await eventually(lambda: _blocked(hub, rc))
    lane = _lane(hub)
    await hub.close()
    shutdown = ("edge_shutdown", f"the server is shutting down; {RESUME_HINT}")
    for sub in subs:
        failure = await _interrupted(sub)
        assert (failure.code, failure.message) == shutdown
    assert lane.task is not None
    assert lane.task.cancelled()  # not left to end its 5 s read
    assert (hub.readers, hub.keys, hub.subscriptions) == (0, 0, 0)
    with pytest.raises(StreamInterrupted) as info:
        _sub(hub, logw, a)
    assert (info.value.code, info.value.message) == shutdown


# -- Redis lost ------------------------------------------------------------------------------


async def test_backoff_doubles_to_its_cap_and_the_deadline_is_not_early(
    dead_link: Link, pauses: Pauses, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(dead_link, block_ms=100, down_deadline_s=3600)
    hub.start()
    try:
        sub = hub.subscribe(Keys("tdead").chunks("chatcmpl-x"), "1-0", limit=16)
        await eventually(lambda: _paused(pauses, 8))
        assert pauses.sleeps[:8] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
        assert sub._failure is None
        assert hub.keys == 1
        lost = [r for r in caplog.records if r.name == HUB_LOGGER and "lost Redis" in r.message]
        assert len(lost) == 1  # once per episode
        assert lost[0].levelno == logging.WARNING
        assert lost[0].getMessage().startswith("hub reader of slot 0 lost Redis (ConnectionError: ")
        assert lost[0].getMessage().endswith("); reconnecting")
        port = dead_link.client.connection_pool.connection_kwargs["port"]
        assert f"127.0.0.1:{port}" in lost[0].getMessage()  # the error itself
    finally:
        await hub.close()


async def _paused(pauses: Pauses, n: int) -> bool:
    return len(pauses.sleeps) >= n


async def test_past_the_deadline_subscribers_end_and_a_new_episode_starts(
    dead_link: Link, pauses: Pauses, caplog: pytest.LogCaptureFixture
) -> None:
    """``redis_unavailable`` after ``down_deadline_s``; the keys go; a later subscriber starts
    a new episode (its own warning, its own deadline); leaving while down resets it too."""
    caplog.set_level(logging.INFO, logger=HUB_LOGGER)
    hub = Hub(dead_link, block_ms=100, down_deadline_s=0.2)
    hub.start()
    try:
        key = Keys("tdead").chunks("chatcmpl-x")
        first = [hub.subscribe(key, "1-0", limit=16) for _ in range(2)]
        for sub in first:
            failure = await _interrupted(sub)
            assert (failure.code, failure.message) == (
                "redis_unavailable",
                f"Redis is unavailable; {RESUME_HINT}",
            )
        assert (hub.keys, hub.subscriptions) == (0, 0)
        assert _lost(caplog) == 1
        second = hub.subscribe(key, "1-0", limit=16)
        assert (await _interrupted(second)).code == "redis_unavailable"
        assert _lost(caplog) == 2
        third = hub.subscribe(key, "1-0", limit=16)
        paused = len(pauses.sleeps)
        await eventually(lambda: _paused(pauses, paused + 1))
        hub.unsubscribe(third)  # idle while down
        await eventually(lambda: _idle(hub))
        fourth = hub.subscribe(key, "1-0", limit=16)
        assert (await _interrupted(fourth)).code == "redis_unavailable"
        assert _lost(caplog) == 4
    finally:
        await hub.close()


async def test_a_subscriber_during_the_pause_after_the_deadline_starts_a_new_episode(
    dead_link: Link, pauses: Pauses, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(dead_link, block_ms=100, down_deadline_s=0.2)
    hub.start()
    key = Keys("tdead").chunks("chatcmpl-x")
    first = hub.subscribe(key, "1-0", limit=16)
    later: list[Subscription] = []

    def subscribe_once_the_first_failed() -> None:
        if first._failure is not None and not later:
            later.append(hub.subscribe(key, "1-0", limit=16))

    pauses.hook = subscribe_once_the_first_failed
    try:
        assert (await _interrupted(first)).code == "redis_unavailable"
        await eventually(lambda: _subscribed(later))
        assert (await _interrupted(later[0])).code == "redis_unavailable"
        assert _lost(caplog) == 2
    finally:
        await hub.close()


async def _subscribed(later: list[Subscription]) -> bool:
    return bool(later)


async def _idle(hub: Hub) -> bool:
    return not _lane(hub).wake.is_set()


def _lost(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.name == HUB_LOGGER and "lost Redis" in r.message for r in caplog.records)


async def test_a_killed_connection_is_logged_reopened_and_the_backoff_reset(
    hub: Hub,
    rc: RedisClient,
    r: aredis.Redis,
    logw: LogWriter,
    pauses: Pauses,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=HUB_LOGGER)
    sid = await logw.create()
    sub = _sub(hub, logw, sid)
    for seq in (1, 2):
        await eventually(lambda: _blocked(hub, rc))
        reader = _lane(hub).reader
        assert await r.client_kill_filter(_id=str(reader.client_id)) == 1
        await logw.chunks(sid, [str(seq)])
        assert await _get(sub) == [(seq, b"c")]
    assert pauses.sleeps == [0.05, 0.05]
    mine = [rec for rec in caplog.records if rec.name == HUB_LOGGER]
    back = [rec for rec in mine if rec.getMessage() == "hub reader of slot 0 reconnected"]
    assert [rec.levelno for rec in back] == [logging.INFO, logging.INFO]
    assert sum("lost Redis" in rec.getMessage() for rec in mine) == 2
    assert hub.readers == 1


async def test_a_reply_later_than_its_timeout_is_a_lost_connection(
    rc: RedisClient,
    logw: LogWriter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reply may take the BLOCK time plus the margin; here the margin is cut to make that
    shorter than the block, so an idle read runs out: the connection is taken for gone,
    dropped and opened again."""
    monkeypatch.setattr(hub_module, "REPLY_MARGIN_S", -0.9)
    link = SpyLink(rc)
    hub = Hub(link, block_ms=1000)
    assert hub._reply_timeout_s == pytest.approx(0.1)
    hub.start()
    try:
        sid = await logw.create()
        _sub(hub, logw, sid)
        await eventually(lambda: _opened_at_least(link, 2))
        (lost, *_) = [r for r in caplog.records if r.name == HUB_LOGGER]
        assert "lost Redis (TimeoutError" in lost.getMessage()
    finally:
        await hub.close()


async def _opened_at_least(link: SpyLink, n: int) -> bool:
    return len(link.opened) >= n


async def test_a_key_added_to_an_idle_reader_needs_no_kick(hub: Hub, logw: LogWriter) -> None:
    a = await logw.create()
    sub_a = _sub(hub, logw, a)
    await logw.chunks(a, ["x"])
    await logw.done(a)
    got = await _get(sub_a)
    while got[-1][1] != b"d":
        got += await _get(sub_a)
    await eventually(lambda: _idle(hub))  # its last key ended
    b = await logw.create()
    sub_b = _sub(hub, logw, b)
    assert _lane(hub).kick_task is None  # nothing is blocked: the wake-up is enough
    await logw.chunks(b, ["y"])
    assert await _get(sub_b) == [(1, b"c")]


# -- the slot map ----------------------------------------------------------------------------


async def test_readers_share_one_failed_slot_map_reload_at_a_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Readers that ask for a reload while one runs wait for that one; a failed reload (no node
    answers: a cluster client of a port nobody listens on) is logged and the reader retries."""
    caplog.set_level(logging.DEBUG, logger=HUB_LOGGER)
    port = free_port()
    client = aredis.RedisCluster(host="127.0.0.1", port=port)
    link = SpyLink(client)
    hub = Hub(link)
    try:
        await asyncio.gather(hub._refresh(), hub._refresh())
        assert link.refreshes == 1
        await hub._refresh()  # the last one is done: a new reload
        assert link.refreshes == 2
        failed = [rec for rec in caplog.records if rec.name == HUB_LOGGER]
        assert len(failed) == 3  # once per caller
        assert {rec.levelno for rec in failed} == {logging.DEBUG}
        assert failed[0].getMessage().startswith("hub slot map reload failed: ")
        assert f"127.0.0.1:{port}" in failed[0].getMessage()  # the error itself
    finally:
        await hub.close()
        await client.aclose()
