"""The edge's shared timers: heartbeat wake-ups per time slot, one stall sweep per loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.types import Message

from fakeai.services.edge.responses import EventStream, _StallWatch
from fakeai.services.edge.subscription import Subscription, Wakeups
from fakeai.streams.log import parse_flat


async def test_wakeups_settle_a_waiter_after_its_timeout_never_before() -> None:
    loop = asyncio.get_running_loop()
    wakeups = Wakeups()
    subs = [Subscription(b"k", 0, 16, wakeups) for _ in range(50)]
    t0 = loop.time()
    waits = [asyncio.create_task(sub.get(0.08)) for sub in subs]
    await asyncio.sleep(0)  # every wait has joined its slot
    slots = {sub._slot for sub in subs}
    assert len(slots) <= 2  # fifty waits, one or two loop timers
    assert await asyncio.gather(*waits) == [[]] * 50
    elapsed = loop.time() - t0
    assert elapsed >= 0.08 - 0.002
    assert not wakeups._slots  # fired slots are gone


async def test_a_discarded_waiter_is_left_alone_and_a_done_one_is_not_set_twice() -> None:
    wakeups = Wakeups()
    kept, dropped, done = (Subscription(b"k", 0, 16, wakeups) for _ in range(3))
    kept_wait = asyncio.create_task(kept.get(0.02))
    dropped_wait = asyncio.create_task(dropped.get(0.02))
    done_wait = asyncio.create_task(done.get(0.02))
    await asyncio.sleep(0)  # all three wait in their slots
    entry = parse_flat(b"1-1", [b"k", b"c", b"d", b"{}", b"t", b"1"])
    done._push([entry])  # settled by an entry before its slot fires
    dropped._release()  # left its slot: the slot must not settle it
    assert await kept_wait == []
    assert await done_wait == [entry]
    assert not dropped_wait.done()
    dropped_wait.cancel()


async def test_subscription_heartbeat_through_shared_wakeups() -> None:
    sub = Subscription(b"k", 0, 16, Wakeups())
    assert await sub.get(0.02) == []  # idle: the heartbeat signal
    sub._push([])  # nothing to deliver, nothing to wake
    assert await sub.get(0.02) == []


async def test_a_busy_subscription_holds_one_slot_and_beats_only_after_silence() -> None:
    loop = asyncio.get_running_loop()
    wakeups = Wakeups()
    sub = Subscription(b"k", 0, 16, wakeups)
    entry = parse_flat(b"1-1", [b"k", b"c", b"d", b"{}", b"t", b"1"])
    got: list[list[object]] = []

    async def consume() -> None:
        while len(got) < 200:
            got.append(list(await sub.get(30.0)))  # no heartbeat due while busy

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the consumer starts and waits
    for _ in range(200):  # a wait per event: the slot is joined once, not per wait
        assert sub._waiter is not None
        assert sum(sub in slot for slot in wakeups._slots.values()) == 1
        sub._push([entry])
        await asyncio.sleep(0)  # the consumer takes the entry and waits again
    await consumer
    assert all(batch == [entry] for batch in got)  # entries, never a heartbeat in between
    t0 = loop.time()
    assert await sub.get(0.05) == []  # silence: the heartbeat, after the timeout
    assert loop.time() - t0 >= 0.05 - 0.002
    sub._release()
    assert not any(sub in slot for slot in wakeups._slots.values())


async def test_a_write_pending_past_send_timeout_ends_the_response() -> None:
    """A peer that stopped reading: the stall sweep ends the response, the body is closed."""
    closed = asyncio.Event()
    blocked = asyncio.Event()

    async def content() -> AsyncGenerator[bytes, None]:
        try:
            yield b"data: 1\n\n"
        finally:
            closed.set()

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never says anything
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            blocked.set()
            await asyncio.Event().wait()  # the socket never drains

    response = EventStream(content(), headers={}, media_type="text/event-stream", send_timeout=0.1)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    async with asyncio.timeout(5):
        await response.run(scope, receive, send)
    assert blocked.is_set()
    assert closed.is_set()
    assert id(asyncio.get_running_loop()) not in _StallWatch._by_loop  # no timer left behind
