"""Cancel reaches every reader: each client of a cancelled stream (the one that created it
and any number of resumers) gets the same events, ending with the ``cancelled`` error event
and ``data: [DONE]``, through a real producer and edge."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from tests.e2e.conftest import StartStack
from tests.support.sse import timing

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

_READERS = 3
_BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Tell me a long story."}],
    "max_tokens": 400,
    "ignore_eos": True,
    "stream": True,
}


async def _read(resp: httpx.Response, started: asyncio.Event) -> list[tuple[str | None, str]]:
    """(id, data) of every event of an SSE response; ``started`` is set at its first chunk."""
    events: list[tuple[str | None, str]] = []
    event_id: str | None = None
    async for line in resp.aiter_lines():
        if line == "":
            event_id = None  # the end of an event (the priming event has no data)
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            events.append((event_id, line[6:]))
            started.set()
    return events


async def test_cancel_ends_every_reader_with_the_cancelled_event(start_stack: StartStack) -> None:
    with start_stack() as stack:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as c:
            headers = timing(0, 50)  # 400 tokens at 50 ms: the cancel lands mid-stream
            async with c.stream("POST", "/v1/chat/completions", json=_BODY, headers=headers) as r:
                assert r.status_code == 200
                sid = r.headers["x-stream-id"]
                starts = [asyncio.Event() for _ in range(_READERS + 1)]
                creator = asyncio.create_task(_read(r, starts[0]))

                async def resumer(started: asyncio.Event) -> list[tuple[str | None, str]]:
                    async with c.stream("GET", f"/v1/streams/{sid}") as resp:
                        assert resp.status_code == 200
                        return await _read(resp, started)

                others = [asyncio.create_task(resumer(s)) for s in starts[1:]]
                await asyncio.wait_for(asyncio.gather(*(s.wait() for s in starts)), 10)
                res = await c.post(f"/v1/streams/{sid}/cancel")
                assert res.json() == {"id": sid, "status": "cancelling", "cancel_requested": True}
                results = await asyncio.wait_for(asyncio.gather(creator, *others), 20)
            info = (await c.get(f"/v1/streams/{sid}/info")).json()
    assert info["status"] == "cancelled"
    for events in results:
        assert events[-1][1] == "[DONE]"
        error = json.loads(events[-2][1])["error"]
        assert error["code"] == "cancelled"
        chunks = [e for e in events[:-2] if e[1].startswith("{")]
        assert 1 <= len(chunks) < 400  # cut short, after some tokens
    # Every reader saw the same log: the same ids and data up to and including the error.
    assert all(events == results[0] for events in results[1:])
