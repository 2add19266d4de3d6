"""Per-client iterators over one stream's log: live (hub + catch-up) and finished (replay).

Resume contract: given the position ``<created_ms>-<after_seq>`` a client already has, the
iterator yields every later entry exactly once, in order, and stops after the terminal entry.

- Live: register on the hub FIRST, then page through ``XRANGE key (<after> +`` to catch up,
  then drain the hub queue, skipping ids <= the last one yielded (entries appended while
  catching up arrive both ways: that seam is where duplicates would come from).
- Finished (the terminal entry is already in the log): XRANGE alone, no hub. ``pace`` replays
  the recorded timing: entry k is due at ``start + (t_k - base) / pace``, on absolute
  deadlines so per-chunk work does not accumulate into drift (see :mod:`fakeai.timing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator

from fakeai.errors import BadRequest
from fakeai.services.edge.hub import Hub, Subscription
from fakeai.services.edge.interrupted import RESUME_HINT, StreamInterrupted
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Entry, iter_entries

__all__ = ["parse_pace", "read_finished", "read_live"]

_PACES = "original, fast, or a positive speed factor such as 2 or 0.5"


def parse_pace(raw: str | None) -> float | None:
    """``?pace=`` as a speed factor: ``original`` = 1, ``fast`` (or absent) = None (no waits)."""
    if raw is None or raw == "" or raw == "fast":
        return None
    if raw == "original":
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not math.isfinite(factor) or factor <= 0:
        raise BadRequest(f"pace: expected {_PACES}; got {raw!r}", param="pace")
    return factor


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
            return [], last, False
        if e.seq != last + 1:
            raise _lost(last, e)
        return batch, e.seq, e.terminal
    out = []
    for e in batch:
        if e.seq <= last:
            continue  # the seam: already yielded
        if e.seq != last + 1:
            raise _lost(last, e)
        out.append(e)
        last = e.seq
        if e.terminal:
            return out, last, True
    return out, last, False


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
) -> AsyncGenerator[list[Entry], None]:
    """Batches of the entries after ``after_seq`` of a stream that may still be running.

    With ``heartbeat_s``, an empty batch each time that long passes without an entry (the
    response sends its SSE heartbeat then).

    Ends after the terminal entry. Entries that are ready together come as one batch, so the
    response writes them with one send. ``sub`` is the caller's subscription to ``key``
    (``hub.subscribe`` before this iterator is created); the iterator releases it when it ends
    or is closed.

    Raises:
        StreamInterrupted: the client's queue overflowed, Redis stayed down, or shutdown.
    """
    try:
        last = after_seq
        if sub.start_seq > last:
            async for page in iter_entries(redis, key, f"{created_ms}-{last}"):
                batch, last, ended = _after(page, last)
                if batch:
                    yield batch
                if ended:
                    return
        while True:
            got = await sub.get(heartbeat_s)
            if not got:
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
) -> AsyncGenerator[list[Entry], None]:
    """Batches of the entries after ``after_seq`` of a finished stream, optionally paced.

    Unpaced, a batch is an XRANGE page; paced, one entry at its deadline. ``base_t_us`` is
    the time the recording's offsets count from (the stream's ``accepted_at``, so TTFT is
    replayed too); None starts from the first entry yielded. With ``heartbeat_s``, a paced
    wait longer than that yields an empty batch every ``heartbeat_s`` (the SSE heartbeat).
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    base = base_t_us
    last = after_seq
    async for page in iter_entries(redis, key, f"{created_ms}-{after_seq}"):
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
