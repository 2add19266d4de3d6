"""Resume and replay through a real edge: every position, live seams, two clients, pacing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from tests.conftest import BOTH
from tests.integration.edge.edgekit import Edge, LogWriter, SSEEvent, data_events, parse_sse
from tests.support.servers import eventually

from fakeai.streams.client import RedisClient

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def _texts(events: list[dict[str, object]]) -> list[str]:
    out = []
    for e in events:
        if e["type"] == "chunk":
            data = e["data"]
            assert isinstance(data, dict)
            out.append(data["choices"][0]["delta"]["content"])
    return out


async def _jsonl(client: httpx.AsyncClient, url: str, **params: str) -> list[dict[str, object]]:
    resp = await client.get(url, params={"format": "jsonl", **params})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines()]


@BOTH
async def test_resume_from_every_position_of_a_finished_stream(edge: Edge, logw: LogWriter) -> None:
    sid, ids, done_id = await logw.finished(12)
    all_ids = [*ids, done_id]
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        whole = await _jsonl(c, f"/v1/streams/{sid}")
        assert [e["id"] for e in whole] == all_ids
        assert whole[-1]["type"] == "done"
        for k, pos in enumerate(all_ids):
            rest = await _jsonl(c, f"/v1/streams/{sid}", last_event_id=pos)
            assert [e["id"] for e in rest] == all_ids[k + 1 :], f"after {pos}"
        # The header wins over the query parameter.
        resp = await c.get(
            f"/v1/streams/{sid}",
            params={"last_event_id": ids[0]},
            headers={"Last-Event-ID": ids[5], "Accept": "text/event-stream"},
        )
        events = parse_sse(resp.text)
        assert events[0].id == ids[5]
        assert events[0].data is None
        assert events[0].retry == 3000
        assert [e.id for e in data_events(events)] == all_ids[6:]
        assert data_events(events)[-1].data == "[DONE]"


@BOTH
async def test_sse_replay_is_byte_exact(edge: Edge, logw: LogWriter, rc: RedisClient) -> None:
    sid, _ids, done_id = await logw.finished(3)
    stored: Any = await rc.xrange(logw.keys.chunks(sid))
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.get(f"/v1/streams/{sid}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["x-stream-id"] == sid
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-accel-buffering"] == "no"
    created = logw.created[sid]
    expected = f"id: {created}-0\nretry: 3000\n\n".encode()
    for eid, fields in stored[:-1]:
        expected += b"id: " + eid + b"\ndata: " + fields[b"d"] + b"\n\n"
    expected += f"id: {done_id}\ndata: [DONE]\n\n".encode()
    assert resp.content == expected


async def _collect_sse(client: httpx.AsyncClient, url: str, **headers: str) -> list[SSEEvent]:
    async with client.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200
        raw = b"".join([b async for b in resp.aiter_bytes()])
    return parse_sse(raw.decode())


@BOTH
async def test_live_clients_joining_at_every_point_get_exactly_the_rest(
    edge: Edge, logw: LogWriter
) -> None:
    """Clients join and resume while chunks are being appended (backlog + live seam)."""
    sid = await logw.create()
    n = 40
    url = f"/v1/streams/{sid}"
    async with httpx.AsyncClient(base_url=edge.url, timeout=20) as c:
        tasks: list[tuple[str | None, asyncio.Task[list[SSEEvent]]]] = []
        written: list[str] = []
        for i in range(n):
            written += await logw.chunks(sid, [f"w{i} "])
            after = written[i // 2] if i % 2 else None
            hdrs = {"Last-Event-ID": after} if after else {}
            tasks.append((after, asyncio.create_task(_collect_sse(c, url, **hdrs))))
            await asyncio.sleep(0)  # let some clients subscribe between appends
        done_id = await logw.done(sid)
        everything = [*written, done_id]
        for after, task in tasks:
            events = data_events(await task)
            start = everything.index(after) + 1 if after else 0
            assert [e.id for e in events] == everything[start:], f"after {after}"
            assert events[-1].data == "[DONE]"


@BOTH
async def test_two_clients_on_one_live_stream_get_identical_events(
    edge: Edge, logw: LogWriter
) -> None:
    sid = await logw.create()
    async with httpx.AsyncClient(base_url=edge.url, timeout=20) as c:
        a = asyncio.create_task(_collect_sse(c, f"/v1/streams/{sid}"))
        b = asyncio.create_task(_collect_sse(c, f"/v1/streams/{sid}"))
        await eventually(lambda: _hub_keys(edge))
        for i in range(30):
            await logw.chunks(sid, [f"x{i}"])
        await logw.done(sid)
        ea, eb = await a, await b
    assert [(e.id, e.data) for e in ea] == [(e.id, e.data) for e in eb]
    assert len(data_events(ea)) == 31


async def _hub_keys(edge: Edge) -> int:
    return edge.state.hub.keys


async def test_replay_pace_original_takes_the_recorded_time_and_fast_does_not(
    edge: Edge, logw: LogWriter
) -> None:
    t0 = time.time_ns() // 1000
    sid = await logw.create(accepted_at=t0 / 1e6)
    gap_us = 40_000
    await logw.chunks(
        sid, [f"p{i}" for i in range(10)], t_us=[t0 + gap_us * (i + 1) for i in range(10)]
    )
    await logw.done(sid, t_us=t0 + gap_us * 11)
    recorded = gap_us * 11 / 1e6  # 0.44 s from accepted_at to the terminal entry
    url = f"/v1/streams/{sid}"
    async with httpx.AsyncClient(base_url=edge.url, timeout=20) as c:
        arrivals: dict[str, list[float]] = {}
        for pace in ("original", "2", "fast"):
            start = time.monotonic()
            stamps = []
            async with c.stream("GET", url, params={"pace": pace, "format": "jsonl"}) as resp:
                async for _line in resp.aiter_lines():
                    stamps.append(time.monotonic() - start)
            arrivals[pace] = stamps
    assert len(arrivals["original"]) == 11
    # Lower bounds only: the first chunk waits its recorded TTFT, the end its full time.
    assert arrivals["original"][0] >= 0.04 * 0.9
    assert arrivals["original"][-1] >= recorded * 0.95
    assert arrivals["2"][-1] >= recorded / 2 * 0.95
    assert arrivals["fast"][-1] < arrivals["original"][-1]
    assert arrivals["original"] == sorted(arrivals["original"])


async def test_pace_is_ignored_on_a_live_stream(edge: Edge, logw: LogWriter) -> None:
    t0 = time.time_ns() // 1000
    sid = await logw.create(accepted_at=t0 / 1e6 - 100)  # "recorded" long ago
    await logw.chunks(sid, ["a", "b"], t_us=[t0, t0])
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        task = asyncio.create_task(
            c.get(f"/v1/streams/{sid}", params={"pace": "original", "format": "text"})
        )
        await eventually(lambda: _hub_keys(edge))
        await logw.chunks(sid, ["c"])
        await logw.done(sid)
        resp = await asyncio.wait_for(task, 5)
    assert resp.text == "abc"


async def test_bad_pace_is_a_400_naming_it(edge: Edge, logw: LogWriter) -> None:
    sid, _, _ = await logw.finished(1)
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.get(f"/v1/streams/{sid}", params={"pace": "-1"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "pace"
