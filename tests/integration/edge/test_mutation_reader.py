"""The edge reader's iterators driven directly against a real Redis and a real hub.

The resume and pace promises are tested end to end elsewhere (test_edge_resume.py,
test_promise_timing.py, under uvicorn); these tests reach each branch of
:mod:`fakeai.services.edge.reader` without a server, fast enough for mutation testing to run
them once per mutant (docs/TESTING.md): ``?pace=`` parsing, the first page read before the
200, the catch-up XRANGE only when the hub starts beyond the client, the deadline of a stream
that never ends, heartbeats, pacing, and shutdown during a paced wait.

Timing asserts are lower bounds (a deadline is never early) or bounds many times the expected
time (a wait that should take 0.1 s must not take 5).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import pytest
from tests.integration.edge.edgekit import LogWriter

from fakeai.errors import BadRequest
from fakeai.services.edge.hub import Hub
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.reader import (
    END_GRACE_S,
    PACE_MAX,
    _after,
    live_until,
    parse_pace,
    read_finished,
    read_live,
)
from fakeai.streams.client import RedisClient
from fakeai.streams.log import PAGE, Entry, Kind, Link, iter_entries

pytestmark = pytest.mark.redis

BOUND_S = 5.0
"""Upper bound for waits expected to take a fraction of a second (many times their length)."""


@pytest.fixture
async def hub(rc: RedisClient) -> AsyncIterator[Hub]:
    h = Hub(Link(rc), block_ms=10_000)
    h.start()
    try:
        yield h
    finally:
        await h.close()


class CountingRedis:
    """The real client, counting the XRANGE calls made through it."""

    def __init__(self, inner: RedisClient) -> None:
        self.inner = inner
        self.xranges = 0

    async def xrange(self, *args: Any, **kwargs: Any) -> Any:
        self.xranges += 1
        return await self.inner.xrange(*args, **kwargs)


def _e(seq: int, kind: bytes = Kind.CHUNK) -> Entry:
    return Entry(b"1700-%d" % seq, seq, kind, b"{}", 0)


async def _drain(it: AsyncGenerator[list[Entry], None]) -> list[list[Entry]]:
    """Every batch until the iterator ends (bounded)."""
    out: list[list[Entry]] = []
    async with asyncio.timeout(BOUND_S):
        async for batch in it:
            out.append(batch)
    return out


async def _until_error(
    it: AsyncGenerator[list[Entry], None],
) -> tuple[list[tuple[float, list[Entry]]], StreamInterrupted]:
    """Every batch with when it came (monotonic s), until the iterator raises (bounded)."""
    got: list[tuple[float, list[Entry]]] = []
    try:
        async with asyncio.timeout(BOUND_S):
            async for batch in it:
                got.append((time.monotonic(), batch))
    except StreamInterrupted as e:
        return got, e
    raise AssertionError(f"the iterator ended without an error after {len(got)} batches")


async def _new(logw: LogWriter) -> tuple[str, str, int]:
    """A new running stream: its id, log key and creation time (ms)."""
    sid = await logw.create()
    return sid, logw.keys.chunks(sid), logw.created[sid]


def _ids(batches: list[list[Entry]]) -> list[str]:
    return [e.id.decode() for b in batches for e in b]


async def _page(rc: RedisClient, key: str, after: str) -> list[Entry]:
    async for page in iter_entries(rc, key, after):
        return page
    return []


# -- ?pace= and the stream deadline ------------------------------------------------------------


# The accepted values: tests/unit/services/test_edge_caps.py::test_parse_pace.
@pytest.mark.parametrize("raw", ["0.009", "1000.5", "0", "-1", "abc", "nan", "inf", "Fast"])
def test_a_bad_pace_is_a_400_naming_the_choices(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_pace(raw)
    assert info.value.param == "pace"
    assert info.value.message == (
        "pace: expected original, fast, or a speed factor from 0.01 to 1000 such as 2 or 0.5; "
        f"got {raw!r}"
    )


def test_live_until_is_creation_plus_the_limit_plus_the_grace() -> None:
    assert END_GRACE_S == 1.0
    assert live_until(1_700_000_000_000, 30.0) == 1_700_000_031.0
    assert live_until(1_700_000_000_500, 0.25) == pytest.approx(1_700_000_001.75, abs=1e-6)


# -- _after: the gate every batch passes --------------------------------------------------------


def test_a_single_new_entry_is_passed_as_its_own_list() -> None:
    batch = [_e(4)]
    out, last, ended = _after(batch, 3)
    assert out is batch
    assert (last, ended) == (4, False)
    out, last, ended = _after([_e(4, Kind.DONE)], 3)
    assert ([e.seq for e in out], last, ended) == ([4], 4, True)


def test_a_single_old_entry_is_skipped() -> None:
    assert _after([_e(3)], 3) == ([], 3, False)
    assert _after([_e(2)], 3) == ([], 3, False)


def test_a_single_terminal_entry_at_the_position_ends_quietly() -> None:
    assert _after([_e(3, Kind.DONE)], 3) == ([], 3, True)
    assert _after([_e(3, Kind.ERROR)], 3) == ([], 3, True)


@pytest.mark.parametrize("batch", [[_e(2, Kind.DONE)], [_e(1), _e(2, Kind.DONE), _e(3)]])
def test_a_terminal_entry_before_the_position_is_beyond_end(batch: list[Entry]) -> None:
    with pytest.raises(StreamInterrupted) as info:
        _after(batch, 5)
    assert info.value.code == "beyond_end"
    assert info.value.message == (
        "Last-Event-ID 1700-5 is past the end of this stream: it ended with event 1700-2"
    )


def test_a_terminal_entry_in_the_seam_ends_the_batch_with_what_came_before() -> None:
    out, last, ended = _after([_e(1), _e(2, Kind.DONE)], 2)
    assert (out, last, ended) == ([], 2, True)


@pytest.mark.parametrize(("batch", "first"), [([_e(5)], 2), ([_e(2), _e(5)], 3)])
def test_the_lost_range_is_named_exactly(batch: list[Entry], first: int) -> None:
    with pytest.raises(StreamInterrupted) as info:
        _after(batch, 1)
    assert info.value.code == "entries_lost"
    assert info.value.message == (
        f"entries 1700-{first} to 1700-4 of this stream were lost by Redis (a failover before "
        "they were replicated); to read on, resume with Last-Event-ID 1700-4"
    )


def test_entries_after_a_terminal_one_are_not_passed() -> None:
    out, last, ended = _after([_e(3), _e(4, Kind.ERROR), _e(5)], 2)
    assert ([e.seq for e in out], last, ended) == ([3, 4], 4, True)


# -- read_live ----------------------------------------------------------------------------------


async def test_a_first_page_that_ends_the_stream_needs_no_other_read(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid = await logw.create()
    key = logw.keys.chunks(sid)
    ids = [*await logw.chunks(sid, ["a", "b"]), await logw.done(sid)]
    created = logw.created[sid]
    first = await _page(rc, key, f"{created}-0")
    sub = hub.subscribe(key, f"{created}-0", limit=64)
    spy = CountingRedis(rc)
    got = await _drain(
        read_live(
            cast(Any, spy), hub, sub, key=key, created_ms=created, after_seq=0, first_page=first
        )
    )
    assert _ids(got) == ids
    assert len(got) == 1  # entries ready together come as one batch
    assert spy.xranges == 0
    assert hub.subscriptions == 0  # the iterator released its subscription


async def test_the_backlog_is_read_only_when_the_hub_starts_beyond_the_client(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """The hub starts at 3 and the first page already holds 1..3: no XRANGE; 4, 5 and the end
    come from the hub alone."""
    sid, key, created = await _new(logw)
    old = await logw.chunks(sid, ["a", "b", "c"])
    first = await _page(rc, key, f"{created}-0")
    sub = hub.subscribe(key, old[-1], limit=64)
    spy = CountingRedis(rc)
    it = read_live(
        cast(Any, spy), hub, sub, key=key, created_ms=created, after_seq=0, first_page=first
    )
    async with asyncio.timeout(BOUND_S):
        assert _ids([await anext(it)]) == old
        new = [*await logw.chunks(sid, ["d", "e"]), await logw.done(sid)]
        rest = [b async for b in it]
    assert _ids(rest) == new
    assert spy.xranges == 0


async def test_the_backlog_between_the_first_page_and_the_hub_is_read_once(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """The first page holds 1..2, the hub starts at 5: 3..5 come from XRANGE, then the hub's
    entries; the seam is not repeated."""
    sid, key, created = await _new(logw)
    old = await logw.chunks(sid, ["a", "b", "c", "d", "e"])
    first = (await _page(rc, key, f"{created}-0"))[:2]
    sub = hub.subscribe(key, old[-1], limit=64)
    spy = CountingRedis(rc)
    it = read_live(
        cast(Any, spy), hub, sub, key=key, created_ms=created, after_seq=0, first_page=first
    )
    async with asyncio.timeout(BOUND_S):
        got = [await anext(it), await anext(it)]
        assert _ids(got) == old
        assert spy.xranges == 1
        new = [*await logw.chunks(sid, ["f"]), await logw.done(sid)]
        got += [b async for b in it]
    assert _ids(got) == old + new


async def test_the_backlog_is_read_from_the_client_position_not_the_start(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """A client near the end of a long log: one XRANGE page from its position (reading from
    the start would take two pages and skip most of them)."""
    sid, key, created = await _new(logw)
    old = await logw.chunks(sid, [f"t{i}" for i in range(PAGE + 20)])
    sub = hub.subscribe(key, old[-1], limit=64)
    spy = CountingRedis(rc)
    it = read_live(cast(Any, spy), hub, sub, key=key, created_ms=created, after_seq=PAGE)
    async with asyncio.timeout(BOUND_S):
        assert _ids([await anext(it)]) == old[PAGE:]
        assert spy.xranges == 1
        end = await logw.done(sid)
        assert _ids([b async for b in it]) == [end]


async def test_a_backlog_that_ends_the_stream_ends_the_reader_before_any_wait(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid, key, created = await _new(logw)
    ids = [*await logw.chunks(sid, ["a", "b"]), await logw.done(sid)]
    sub = hub.subscribe(key, ids[-1], limit=64)
    got = await _drain(read_live(rc, hub, sub, key=key, created_ms=created, after_seq=1))
    assert _ids(got) == ids[1:]
    assert hub.subscriptions == 0


async def test_a_resume_at_the_terminal_entry_ends_quietly_beyond_it_with_an_error(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """The hub starts before the client's position and delivers the terminal entry: at the
    client's own position that is the end; before it, the position never existed."""
    sid, key, created = await _new(logw)
    ids = [*await logw.chunks(sid, ["a"]), await logw.done(sid)]
    sub = hub.subscribe(key, ids[0], limit=64)
    got = await _drain(read_live(rc, hub, sub, key=key, created_ms=created, after_seq=2))
    assert got == []
    sub = hub.subscribe(key, ids[0], limit=64)
    with pytest.raises(StreamInterrupted) as info:
        await _drain(read_live(rc, hub, sub, key=key, created_ms=created, after_seq=7))
    assert info.value.code == "beyond_end"
    assert hub.subscriptions == 0


async def test_a_stream_without_an_end_times_out_at_its_deadline_not_before(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """No heartbeat asked: nothing is yielded while waiting, and the ``timeout`` error comes
    once ``ends_at`` has passed."""
    sid, key, created = await _new(logw)
    ids = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, ids[-1], limit=64)
    start = time.time()
    ends_at = start + 0.3
    it = read_live(rc, hub, sub, key=key, created_ms=created, after_seq=1, ends_at=ends_at)
    with pytest.raises(StreamInterrupted) as info:
        async with asyncio.timeout(BOUND_S):
            await anext(it)
    assert time.time() >= ends_at - 0.005
    assert info.value.code == "timeout"
    assert info.value.message == (
        f"the stream ran past its limit of max_stream_s without ending (created at {created} ms)"
    )
    assert hub.subscriptions == 0


async def test_a_deadline_already_past_ends_the_reader_at_once(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid, key, created = await _new(logw)
    ids = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, ids[-1], limit=64)
    it = read_live(
        rc, hub, sub, key=key, created_ms=created, after_seq=1, heartbeat_s=10.0,
        ends_at=time.time() - 1,
    )  # fmt: skip
    with pytest.raises(StreamInterrupted) as info:
        async with asyncio.timeout(BOUND_S):
            await anext(it)
    assert info.value.code == "timeout"


async def test_heartbeats_come_until_the_deadline_then_the_timeout(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    """With a heartbeat shorter than the time left, empty batches come (each at least one
    period after the last), then the timeout."""
    sid, key, created = await _new(logw)
    ids = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, ids[-1], limit=64)
    start = time.monotonic()
    ends_at = time.time() + 0.5
    it = read_live(
        rc, hub, sub, key=key, created_ms=created, after_seq=1, heartbeat_s=0.1, ends_at=ends_at
    )
    got, error = await _until_error(it)
    assert error.code == "timeout"
    assert all(b == [] for _, b in got)
    beats = [t - start for t, _ in got]
    assert time.time() >= ends_at - 0.005
    assert 1 <= len(beats) <= 7  # a wait may end a millisecond early: one more short one
    for k, t in enumerate(beats, 1):
        assert t >= min(0.1 * k, 0.5) - 0.002


async def test_entries_after_heartbeats_are_delivered_in_order(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid, key, created = await _new(logw)
    ids = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, ids[-1], limit=64)
    it = read_live(rc, hub, sub, key=key, created_ms=created, after_seq=1, heartbeat_s=0.05)
    async with asyncio.timeout(BOUND_S):
        assert await anext(it) == []
        new = [*await logw.chunks(sid, ["b", "c"]), await logw.done(sid)]
        got = [b async for b in it if b]
    assert _ids(got) == new


async def test_a_closed_reader_releases_its_subscription(
    hub: Hub, rc: RedisClient, logw: LogWriter
) -> None:
    sid, key, created = await _new(logw)
    ids = await logw.chunks(sid, ["a"])
    sub = hub.subscribe(key, ids[-1], limit=64)
    it = read_live(rc, hub, sub, key=key, created_ms=created, after_seq=0, heartbeat_s=0.05)
    async with asyncio.timeout(BOUND_S):
        assert _ids([await anext(it)]) == ids
    assert hub.subscriptions == 1
    await it.aclose()
    assert hub.subscriptions == 0
    assert hub.keys == 0


# -- read_finished --------------------------------------------------------------------------


async def _finished(
    logw: LogWriter, n: int, t_us: list[int] | None = None
) -> tuple[str, list[str]]:
    sid = await logw.create()
    ids = await logw.chunks(sid, [f"t{i}" for i in range(n)], t_us=t_us)
    ids.append(await logw.done(sid, t_us=t_us[-1] if t_us else None))
    return sid, ids


async def test_an_unpaced_replay_reads_every_page_after_the_position(
    rc: RedisClient, logw: LogWriter
) -> None:
    sid, ids = await _finished(logw, PAGE + 90)
    key, created = logw.keys.chunks(sid), logw.created[sid]
    got = await _drain(
        read_finished(
            rc, key, created_ms=created, after_seq=5, pace=None, base_t_us=None,
            closing=asyncio.Event(),
        )
    )  # fmt: skip
    assert _ids(got) == ids[5:]
    assert [len(b) for b in got] == [PAGE, len(ids) - 5 - PAGE]


async def test_a_full_first_page_is_followed_by_the_rest(rc: RedisClient, logw: LogWriter) -> None:
    sid, ids = await _finished(logw, PAGE + 10)
    key, created = logw.keys.chunks(sid), logw.created[sid]
    first = await _page(rc, key, f"{created}-0")
    assert len(first) == PAGE
    spy = CountingRedis(rc)
    got = await _drain(
        read_finished(
            cast(Any, spy), key, created_ms=created, after_seq=0, pace=None, base_t_us=None,
            closing=asyncio.Event(), first_page=first,
        )
    )  # fmt: skip
    assert _ids(got) == ids
    assert spy.xranges == 1


async def test_a_short_first_page_is_the_whole_replay(rc: RedisClient, logw: LogWriter) -> None:
    sid, ids = await _finished(logw, 3)
    key, created = logw.keys.chunks(sid), logw.created[sid]
    first = await _page(rc, key, f"{created}-1")
    spy = CountingRedis(rc)
    got = await _drain(
        read_finished(
            cast(Any, spy), key, created_ms=created, after_seq=1, pace=None, base_t_us=None,
            closing=asyncio.Event(), first_page=first,
        )
    )  # fmt: skip
    assert _ids(got) == ids[1:]
    assert spy.xranges == 0


async def test_a_paced_replay_after_a_full_first_page_sends_each_entry_once(
    rc: RedisClient, logw: LogWriter
) -> None:
    sid, ids = await _finished(logw, PAGE + 3)
    key, created = logw.keys.chunks(sid), logw.created[sid]
    first = await _page(rc, key, f"{created}-0")
    got = await _drain(
        read_finished(
            rc, key, created_ms=created, after_seq=0, pace=PACE_MAX, base_t_us=None,
            closing=asyncio.Event(), first_page=first,
        )
    )  # fmt: skip
    assert _ids(got) == ids


async def test_a_hole_in_a_paced_replay_is_reported(rc: RedisClient, logw: LogWriter) -> None:
    sid, _ = await _finished(logw, 4)
    key, created = logw.keys.chunks(sid), logw.created[sid]
    await rc.xdel(key, f"{created}-3")
    it = read_finished(
        rc, key, created_ms=created, after_seq=0, pace=PACE_MAX, base_t_us=None,
        closing=asyncio.Event(),
    )  # fmt: skip
    got, error = await _until_error(it)
    assert error.code == "entries_lost"
    assert _ids([b for _, b in got]) == [f"{created}-1", f"{created}-2"]


async def _paced(
    rc: RedisClient,
    logw: LogWriter,
    offsets_ms: list[int],
    pace: float,
    *,
    base_ms: int | None = None,
    heartbeat_s: float | None = None,
) -> tuple[list[str], list[tuple[float, list[str]]]]:
    """Replay a finished stream whose entries were recorded at ``offsets_ms`` (the last one
    the terminal entry); returns its ids and each yielded batch with when it came (s after
    the replay started)."""
    t0 = 1_700_000_000_000_000
    sid, ids = await _finished(logw, len(offsets_ms) - 1, [t0 + o * 1000 for o in offsets_ms])
    key, created = logw.keys.chunks(sid), logw.created[sid]
    start = time.monotonic()
    it = read_finished(
        rc, key, created_ms=created, after_seq=0, pace=pace,
        base_t_us=None if base_ms is None else t0 + base_ms * 1000,
        closing=asyncio.Event(), heartbeat_s=heartbeat_s,
    )  # fmt: skip
    got: list[tuple[float, list[str]]] = []
    async with asyncio.timeout(BOUND_S):
        async for b in it:
            got.append((time.monotonic() - start, [e.id.decode() for e in b]))
    return ids, got


async def test_a_slowed_replay_keeps_every_entry_at_or_after_its_deadline(
    rc: RedisClient, logw: LogWriter
) -> None:
    ids, got = await _paced(rc, logw, [0, 50, 100, 150], pace=0.5)
    assert [i for _, b in got for i in b] == ids
    assert all(len(b) == 1 for _, b in got)
    for (t, _), offset_s in zip(got, [0, 0.1, 0.2, 0.3], strict=True):
        assert t >= offset_s - 0.002


async def test_a_fast_pace_shortens_a_long_recording(rc: RedisClient, logw: LogWriter) -> None:
    """60 s recorded at pace 1000 is 60 ms (the bound is five seconds)."""
    ids, got = await _paced(rc, logw, [0, 30_000, 60_000], pace=PACE_MAX)
    assert [i for _, b in got for i in b] == ids
    assert got[-1][0] >= 0.06 - 0.002


async def test_the_time_to_the_first_entry_is_replayed_from_the_base(
    rc: RedisClient, logw: LogWriter
) -> None:
    _, got = await _paced(rc, logw, [200, 210], pace=1.0, base_ms=0)
    assert got[0][0] >= 0.2 - 0.002
    ids, got = await _paced(rc, logw, [60_000, 60_010], pace=1.0)  # no base: the first entry
    assert [i for _, b in got for i in b] == ids


async def test_entries_recorded_before_the_base_are_due_at_once(
    rc: RedisClient, logw: LogWriter
) -> None:
    ids, got = await _paced(rc, logw, [0, 1], pace=1.0, base_ms=60_000)
    assert [i for _, b in got for i in b] == ids


async def test_a_paced_wait_longer_than_the_heartbeat_yields_heartbeats(
    rc: RedisClient, logw: LogWriter
) -> None:
    ids, got = await _paced(rc, logw, [0, 300], pace=1.0, heartbeat_s=0.1)
    batches = [b for _, b in got]
    assert batches[0] == ids[:1]
    assert batches[-1] == ids[1:]
    beats = [t for t, b in got if not b]
    assert 1 <= len(beats) <= 3
    for k, t in enumerate(beats, 1):
        assert t >= 0.1 * k - 0.002


async def test_no_heartbeat_when_the_wait_is_shorter(rc: RedisClient, logw: LogWriter) -> None:
    ids, got = await _paced(rc, logw, [0, 100, 200], pace=1.0, heartbeat_s=10.0)
    assert [b for _, b in got] == [[i] for i in ids]


async def test_shutdown_ends_a_paced_wait_with_edge_shutdown(
    rc: RedisClient, logw: LogWriter
) -> None:
    t0 = 1_700_000_000_000_000
    sid, ids = await _finished(logw, 2, [t0, t0 + 60_000_000, t0 + 60_000_000])
    key, created = logw.keys.chunks(sid), logw.created[sid]
    closing = asyncio.Event()
    it = read_finished(
        rc, key, created_ms=created, after_seq=0, pace=1.0, base_t_us=None, closing=closing,
        heartbeat_s=30.0,
    )  # fmt: skip
    async with asyncio.timeout(BOUND_S):
        assert [e.id.decode() for e in await anext(it)] == ids[:1]
        nxt = asyncio.ensure_future(anext(it))
        done, _ = await asyncio.wait([nxt], timeout=0.05)
        assert not done  # waiting for the entry due in 60 s
        closing.set()
        with pytest.raises(StreamInterrupted) as info:
            await nxt
    assert info.value.code == "edge_shutdown"
    assert info.value.message == (
        "the server is shutting down; reconnect with Last-Event-ID to resume"
    )


async def test_a_replay_that_starts_during_shutdown_ends_at_once(
    rc: RedisClient, logw: LogWriter
) -> None:
    sid, _ = await _finished(logw, 2)
    key, created = logw.keys.chunks(sid), logw.created[sid]
    closing = asyncio.Event()
    closing.set()
    it = read_finished(
        rc, key, created_ms=created, after_seq=0, pace=1.0, base_t_us=None, closing=closing
    )
    with pytest.raises(StreamInterrupted) as info:
        async with asyncio.timeout(BOUND_S):
            await anext(it)
    assert info.value.code == "edge_shutdown"
