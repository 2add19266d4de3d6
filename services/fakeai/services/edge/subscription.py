"""A client's queue on a live stream, and the heartbeat timers every queue shares.

The hub (:mod:`.hub`) fills a :class:`Subscription` per client; the client's response takes
whole batches from it. :class:`Wakeups` gives waiting subscriptions their heartbeat timeouts
without a loop timer per wait.
"""

from __future__ import annotations

import asyncio
import math

from fakeai.services.edge.interrupted import RESUME_HINT, StreamInterrupted
from fakeai.streams.log import Entry

__all__ = ["Subscription", "Wakeups"]


class Wakeups:
    """Heartbeat timeouts shared by every waiting subscription: one loop timer per time slot,
    not one per wait.

    A subscription joins the slot that ends at the next multiple of ``timeout / 8`` after its
    deadline, so it wakes between ``timeout`` and ``9/8 timeout`` after its wait began. An idle
    SSE connection then costs a set entry instead of a loop timer (~0.5 KiB each; S5 holds
    10,000). Use from one event loop (the hub's).

    A subscription joins a slot at most once per period, not once per wait: each wait only
    notes when it began, and the slot, when it fires, settles the subscription's waiter if it
    has waited ``timeout`` by then, or moves it to the slot of its own deadline. A busy stream
    (a wait per delivered event) then costs no set add and discard per event.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[float, set[Subscription]] = {}

    def join(
        self, loop: asyncio.AbstractEventLoop, sub: Subscription, due: float, timeout: float
    ) -> float:
        """Put ``sub`` in the slot of ``due`` (loop clock); returns that slot."""
        grain = timeout / 8
        when = math.ceil(due / grain) * grain if grain > 0 else loop.time()
        slot = self._slots.get(when)
        if slot is None:
            slot = self._slots[when] = set()
            loop.call_at(when, self._fire, loop, when)
        slot.add(sub)
        return when

    def discard(self, when: float, sub: Subscription) -> None:
        slot = self._slots.get(when)
        if slot is not None:
            slot.discard(sub)

    def _fire(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        now = loop.time()
        for sub in self._slots.pop(when, ()):
            sub._on_slot(loop, now)


class Subscription:
    """One client's view of a live stream: a bounded queue the hub fills."""

    __slots__ = (
        "_failure",
        "_items",
        "_slot",
        "_timeout",
        "_waiter",
        "_waiting_since",
        "_wakeups",
        "key",
        "limit",
        "overflowed",
        "start_seq",
    )

    def __init__(self, key: bytes, start_seq: int, limit: int, wakeups: Wakeups) -> None:
        self._wakeups = wakeups
        self.key = key
        self.start_seq = start_seq
        """Every entry with a larger seq reaches this queue (unless it overflows)."""
        self.limit = limit
        # A plain list handed over whole by get() (no copy), and one bare future as the
        # wake-up: cheaper per delivered batch than a deque copy plus an asyncio.Event.
        self._items: list[Entry] = []
        self._waiter: asyncio.Future[None] | None = None
        self._failure: StreamInterrupted | None = None
        self.overflowed = False
        # Heartbeat bookkeeping (see Wakeups): the slot this subscription is in, if any, and
        # when the current wait began.
        self._slot: float | None = None
        self._timeout = 0.0
        self._waiting_since = 0.0

    def _push(self, batch: list[Entry]) -> None:
        if self._failure is not None:
            return
        # One XREAD batch may exceed the bound by itself (a fast reader takes it at once);
        # entries piling up behind an unread batch are what marks a slow client.
        if self._items and len(self._items) + len(batch) > self.limit:
            # Memory stays bounded: drop what is queued; the client resumes from Redis.
            self._items.clear()
            self.overflowed = True
            self._fail(
                StreamInterrupted(
                    "slow_consumer",
                    f"client fell more than {self.limit} events behind; {RESUME_HINT}",
                )
            )
            return
        self._items.extend(batch)
        w = self._waiter  # _wake, inline: this runs once per subscriber per XREAD reply
        if w is not None and not w.done():
            w.set_result(None)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, failure: StreamInterrupted) -> None:
        if self._failure is None:
            self._failure = failure
        self._wake()

    async def get(self, timeout: float | None = None) -> list[Entry]:
        """The entries queued so far (waits for at least one).

        With ``timeout``, an empty list when nothing arrived within it (at most an eighth
        later, see :class:`Wakeups`): the SSE heartbeat is sent from the response's own task
        on that signal (see :mod:`.responses`). The timer settles the waiter; it is not a
        cancelling timeout scope.

        Raises:
            StreamInterrupted: the queue overflowed, Redis stayed down, or the edge is closing.
        """
        while not self._items:
            if self._failure is not None:
                raise self._failure
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            if timeout is not None:
                since = self._waiting_since = loop.time()
                if self._slot is None or timeout != self._timeout:
                    self._release()  # a different timeout: the slot of the new one
                    self._slot = self._wakeups.join(loop, self, since + timeout, timeout)
                self._timeout = timeout
            try:
                await waiter
            finally:
                self._waiter = None
            if timeout is not None and not self._items and self._failure is None:
                return []
        if self._failure is not None:
            raise self._failure
        batch, self._items = self._items, []
        return batch

    def _on_slot(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        """Its :class:`Wakeups` slot fired: settle a wait that has lasted its timeout, move a
        younger one to the slot of its deadline; one that is not waiting re-joins on its
        next wait."""
        self._slot = None
        w = self._waiter
        if w is None or w.done():
            return
        due = self._waiting_since + self._timeout
        if due <= now + 0.001:  # loop timers may fire up to a millisecond early
            w.set_result(None)
        else:
            self._slot = self._wakeups.join(loop, self, due, self._timeout)

    def _release(self) -> None:
        """Leave the heartbeat slot (the subscription has ended)."""
        if self._slot is not None:
            self._wakeups.discard(self._slot, self)
            self._slot = None
