"""Per-client iterators over one stream's log: live (hub + catch-up) and finished (replay).

Resume contract: given the position ``<created_ms>-<after_seq>`` a client already has, the
iterator yields every later entry exactly once, in order, and stops after the terminal entry.

- Live: register on the hub FIRST, then page through ``XRANGE key (<after> +`` to catch up,
  then drain the hub queue, skipping ids <= the last one yielded (entries appended while
  catching up arrive both ways: that seam is where duplicates would come from). The first page
  may come with the caller's snapshot (read before the 200 goes out, so a failing Redis is a
  503 rather than an error event in a 200); it is then completed by XRANGE after subscribing
  whenever the hub's start lies beyond it.
- Finished (the terminal entry is already in the log): XRANGE alone, no hub. ``pace`` replays
  the recorded timing: entry k is due at ``start + (t_k - base) / pace``, on absolute
  deadlines so per-chunk work does not accumulate into drift (see :mod:`fakeai.timing`).
  ``pace`` is bounded (:data:`PACE_MIN` to :data:`PACE_MAX`), so a replay lasts at most
  ``1 / PACE_MIN`` times the recording.

Every live wait ends:

- a terminal entry at or before the client's position (a ``Last-Event-ID`` beyond the end of a
  stream that was still running when the request came) ends the response at once: with a
  ``beyond_end`` error event when the position was past the terminal entry, quietly when it
  was the terminal entry itself;
- a stream without a terminal entry ends its readers with a ``timeout`` error event once
  ``max_stream_s`` (plus :data:`END_GRACE_S`, so the producer's own ``timeout`` entry wins
  when it comes) has passed since the stream's creation (:func:`live_until`), even if every
  producer died and Redis lost the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator

from fakeai.errors import BadRequest
from fakeai.services.edge.hub import Hub, Subscription
from fakeai.services.edge.interrupted import RESUME_HINT, StreamInterrupted
from fakeai.streams.client import RedisClient
from fakeai.streams.log import PAGE, Entry, iter_entries

__all__ = [
    "END_GRACE_S",
    "PACE_MAX",
    "PACE_MIN",
    "live_until",
    "parse_pace",
    "read_finished",
    "read_live",
]

PACE_MIN = 0.01
"""Slowest replay: a hundred times slower than recorded."""
PACE_MAX = 1000.0
"""Fastest paced replay (``fast`` sends without waits at all)."""
_PACES = f"original, fast, or a speed factor from {PACE_MIN:g} to {PACE_MAX:g} such as 2 or 0.5"
END_GRACE_S = 1.0
"""How long after ``max_stream_s`` the edge waits for the producer's own terminal entry."""
_TICK_S = 15.0
"""Longest wait between two deadline checks of a response without heartbeats."""


def parse_pace(raw: str | None) -> float | None:
    """``?pace=`` as a speed factor: ``original`` = 1, ``fast`` (or absent) = None (no waits).

    Raises:
        BadRequest: not a number, or outside :data:`PACE_MIN` .. :data:`PACE_MAX`.
    """
    if raw is None or raw == "" or raw == "fast":
        return None
    if raw == "original":
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not PACE_MIN <= factor <= PACE_MAX:  # NaN fails both comparisons
        raise BadRequest(f"pace: expected {_PACES}; got {raw!r}", param="pace")
    return factor


def live_until(created_ms: int, max_stream_s: float) -> float:
    """When (Unix s) a stream created at ``created_ms`` is over, terminal entry or not."""
    return created_ms / 1000 + max_stream_s + END_GRACE_S


def _after(batch: list[Entry], last: int) -> tuple[list[Entry], int, bool]:
    """The entries of ``batch`` after seq ``last``, up to a terminal one: (new, last, ended).

    Raises:
        StreamInterrupted: ``entries_lost``, when the next entry is not ``last + 1``: seqs are
            consecutive, so a hole means entries that Redis acknowledged and then lost (a
            cluster failover before they reached the replica). Loss is never silent.
    """
    if len(batch) == 1:  # the usual live case: no new list
        e = batch[0]
        if e.seq <= last:
            if e.terminal:
                return [], last, _ended_before(last, e)
            return [], last, False
        if e.seq != last + 1:
            raise _lost(last, e)
        return batch, e.seq, e.terminal
    out: list[Entry] = []
    for e in batch:
        if e.seq <= last:
            if e.terminal:
                return out, last, _ended_before(last, e)
            continue  # the seam: already yielded
        if e.seq != last + 1:
            raise _lost(last, e)
        out.append(e)
        last = e.seq
        if e.terminal:
            return out, last, True
    return out, last, False


def _ended_before(last: int, e: Entry) -> bool:
    """A terminal entry at or before ``last``: it was never yielded (the iterators return after
    yielding one), so ``last`` is the client's own position. The terminal entry itself means
    the client has everything (True: the end); before it, the position never existed.

    Raises:
        StreamInterrupted: ``beyond_end``.
    """
    if e.seq == last:
        return True
    head = e.id.partition(b"-")[0].decode()
    raise StreamInterrupted(
        "beyond_end",
        f"Last-Event-ID {head}-{last} is past the end of this stream: it ended with event "
        f"{e.id.decode()}",
    )


def _lost(last: int, e: Entry) -> StreamInterrupted:
    head = e.id.partition(b"-")[0].decode()
    return StreamInterrupted(
        "entries_lost",
        f"entries {head}-{last + 1} to {head}-{e.seq - 1} of this stream were lost by Redis "
        f"(a failover before they were replicated); to read on, resume with Last-Event-ID "
        f"{head}-{e.seq - 1}",
    )


async def read_live(
    redis: RedisClient,
    hub: Hub,
    sub: Subscription,
    *,
    key: str,
    created_ms: int,
    after_seq: int,
    heartbeat_s: float | None = None,
    ends_at: float | None = None,
    first_page: list[Entry] | None = None,
) -> AsyncGenerator[list[Entry], None]:
    """Batches of the entries after ``after_seq`` of a stream that may still be running.

    With ``heartbeat_s``, an empty batch each time that long passes without an entry (the
    response sends its SSE heartbeat then).

    Ends after the terminal entry. Entries that are ready together come as one batch, so the
    response writes them with one send. ``sub`` is the caller's subscription to ``key``
    (``hub.subscribe`` before this iterator is created); the iterator releases it when it ends
    or is closed after it started. An iterator closed before it started runs no ``finally``,
    so the caller releases ``sub`` too when it is done (:meth:`Hub.unsubscribe` is
    idempotent; see :mod:`.responses`). ``first_page``: the XRANGE page after ``after_seq``,
    already read (module docstring). ``ends_at`` (Unix s, :func:`live_until`): no wait goes on
    past it.

    Raises:
        StreamInterrupted: the client's queue overflowed, Redis stayed down, shutdown,
            ``beyond_end`` or ``timeout`` (module docstring).
    """
    try:
        last = after_seq
        if first_page:
            batch, last, ended = _after(first_page, last)
            if batch:
                yield batch
            if ended:
                return
        if sub.start_seq > last:
            async for page in iter_entries(redis, key, f"{created_ms}-{last}"):
                batch, last, ended = _after(page, last)
                if batch:
                    yield batch
                if ended:
                    return
        loop = asyncio.get_running_loop()
        end = math.inf if ends_at is None else loop.time() + (ends_at - time.time())
        period = heartbeat_s if heartbeat_s is not None else _TICK_S
        while True:
            wait = period
            left = end - loop.time()
            if left < period:  # the last stretch: wait no longer than the deadline
                if left <= 0:
                    raise StreamInterrupted(
                        "timeout",
                        f"the stream ran past its limit of max_stream_s without ending "
                        f"(created at {created_ms} ms)",
                    )
                wait = left
            got = await sub.get(wait)
            if not got:
                if heartbeat_s is not None:
                    yield []  # heartbeat_s passed without an entry
                continue
            batch, last, ended = _after(got, last)
            del got
            if batch:
                yield batch
            if ended:
                return
            del batch  # an idle stream holds no entry while it waits for the next
    finally:
        hub.unsubscribe(sub)


async def _pages(
    redis: RedisClient, key: str, after: str, first_page: list[Entry] | None
) -> AsyncIterator[list[Entry]]:
    """XRANGE pages after ``after``; the first one given when it was read already."""
    if first_page is None:
        async for page in iter_entries(redis, key, after):
            yield page
        return
    yield first_page
    if len(first_page) == PAGE:
        async for page in iter_entries(redis, key, first_page[-1].id.decode()):
            yield page


async def read_finished(
    redis: RedisClient,
    key: str,
    *,
    created_ms: int,
    after_seq: int,
    pace: float | None,
    base_t_us: int | None,
    closing: asyncio.Event,
    heartbeat_s: float | None = None,
    first_page: list[Entry] | None = None,
) -> AsyncGenerator[list[Entry], None]:
    """Batches of the entries after ``after_seq`` of a finished stream, optionally paced.

    Unpaced, a batch is an XRANGE page; paced, one entry at its deadline. ``base_t_us`` is
    the time the recording's offsets count from (the stream's ``accepted_at``, so TTFT is
    replayed too); None starts from the first entry yielded. With ``heartbeat_s``, a paced
    wait longer than that yields an empty batch every ``heartbeat_s`` (the SSE heartbeat).
    ``first_page``: the XRANGE page after ``after_seq``, already read (module docstring).
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    base = base_t_us
    last = after_seq
    async for page in _pages(redis, key, f"{created_ms}-{after_seq}", first_page):
        if pace is None:
            batch, last, ended = _after(page, last)
            if batch:  # an empty batch means "heartbeat" to the response
                yield batch
            if ended:
                return
            continue
        for e in page:
            _, last, _ = _after([e], last)
            if base is None:
                base = e.t_us
            deadline = t0 + max(0, e.t_us - base) / 1e6 / pace
            while deadline > loop.time() and not closing.is_set():
                # Wait for the deadline, or for shutdown, whichever comes first; a heartbeat
                # in between if the wait is longer than heartbeat_s.
                until = deadline
                if heartbeat_s is not None:
                    until = min(deadline, loop.time() + heartbeat_s)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(until):
                        await closing.wait()
                if until < deadline and not closing.is_set():
                    yield []
            if closing.is_set():
                raise StreamInterrupted(
                    "edge_shutdown", f"the server is shutting down; {RESUME_HINT}"
                )
            yield [e]
            if e.terminal:
                return
