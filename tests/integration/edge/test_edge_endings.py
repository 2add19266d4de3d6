"""Issue 10, findings 3 and 8: every open response ends when its stream ends (or cannot end),
and an unknown stream is a 404 unless it may have existed and expired (410)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from tests.conftest import BOTH
from tests.integration.edge.edgekit import MODEL, Edge, LogWriter, data_events, parse_sse
from tests.support.servers import eventually

from fakeai.streams import new_stream_id
from fakeai.streams.client import RedisClient

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

CHAT: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


def _err(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def _error_event(raw: str) -> dict[str, Any]:
    """The error of an SSE body that ends with an error event then ``[DONE]``."""
    events = data_events(parse_sse(raw))
    assert [e.data for e in events[-1:]] == ["[DONE]"], raw
    err: dict[str, Any] = json.loads(events[-2].data or "")["error"]
    return err


async def _hub_watches(edge: Edge) -> bool:
    return edge.state.hub.keys > 0


@BOTH
async def test_resume_beyond_the_end_of_a_finished_stream_is_400_naming_its_last_id(
    edge: Edge, logw: LogWriter
) -> None:
    sid, _ids, done = await logw.finished(3)
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        beyond = f"{logw.created[sid]}-1000"
        err = _err(await c.get(f"/v1/streams/{sid}", headers={"Last-Event-ID": beyond}), 400)
    assert (err["param"], err["code"]) == ("last_event_id", "invalid_event_id")
    assert done in err["message"]


@BOTH
@pytest.mark.parametrize("fmt", ["sse", "jsonl"])
async def test_resume_beyond_the_end_of_a_running_stream_ends_when_the_stream_ends(
    edge: Edge, logw: LogWriter, fmt: str
) -> None:
    """Finding 3: ``Last-Event-ID: <ms>-1000`` on a running stream sent ``: ping`` forever,
    even after the stream finished. Now the response ends with a ``beyond_end`` error event
    when the terminal entry comes first."""
    sid = await logw.create()
    await logw.chunks(sid, ["a", "b"])
    beyond = f"{logw.created[sid]}-1000"
    async with (
        httpx.AsyncClient(base_url=edge.url, timeout=10) as c,
        c.stream(
            "GET",
            f"/v1/streams/{sid}",
            params={"format": fmt},
            headers={"Last-Event-ID": beyond},
        ) as resp,
    ):
        assert resp.status_code == 200
        await _eventually_watched(edge)
        await logw.chunks(sid, ["c"])
        done = await logw.done(sid)
        raw = (await asyncio.wait_for(resp.aread(), 10)).decode()
    if fmt == "sse":
        err = _error_event(raw)
    else:
        last = json.loads(raw.splitlines()[-1])
        assert last["type"] == "error"
        err = last["error"]
    assert err["code"] == "beyond_end"
    assert beyond in err["message"]
    assert done in err["message"]


@BOTH
async def test_resume_ahead_of_a_running_stream_gets_the_rest_once_it_gets_there(
    edge: Edge, logw: LogWriter
) -> None:
    """The response waits while the stream can still reach the id, then goes on from it."""
    sid = await logw.create()
    await logw.chunks(sid, ["a"])
    ahead = f"{logw.created[sid]}-3"
    async with (
        httpx.AsyncClient(base_url=edge.url, timeout=10) as c,
        c.stream("GET", f"/v1/streams/{sid}", headers={"Last-Event-ID": ahead}) as resp,
    ):
        await _eventually_watched(edge)
        ids = await logw.chunks(sid, ["b", "c", "d", "e"])
        done = await logw.done(sid)
        raw = (await asyncio.wait_for(resp.aread(), 10)).decode()
    assert [e.id for e in data_events(parse_sse(raw))] == [ids[2], ids[3], done]


@BOTH
async def test_a_stream_that_never_ends_ends_its_readers_after_max_stream_s(
    start_edge: StartEdge, logw: LogWriter, rc: RedisClient
) -> None:
    """Finding 3/5: a live stream with no terminal entry (every producer died, or Redis lost
    the stream) held its readers forever. Now each reader gets a ``timeout`` error event
    once ``max_stream_s`` has passed since the stream's creation."""
    with start_edge(max_stream_s=1.0, heartbeat_s=0.2) as edge:
        sid = await logw.create()
        ids = await logw.chunks(sid, ["a"])
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as c:
            get = asyncio.create_task(c.get(f"/v1/streams/{sid}"))
            jsonl = asyncio.create_task(c.get(f"/v1/streams/{sid}", params={"format": "jsonl"}))
            post = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT))
            whole = asyncio.create_task(
                c.post("/v1/chat/completions", json={**CHAT, "stream": False})
            )
            await eventually(lambda: _watching(edge, keys=3, responses=3))
            # Redis loses the stream meanwhile: the wait still ends.
            await rc.delete(logw.keys.chunks(sid), logw.keys.meta(sid))
            got, lines, posted, waited = await asyncio.wait_for(
                asyncio.gather(get, jsonl, post, whole), 25
            )
    assert [e.id for e in data_events(parse_sse(got.text))][:1] == ids
    assert _error_event(got.text)["code"] == "timeout"
    assert json.loads(lines.text.splitlines()[-1])["error"]["code"] == "timeout"
    assert posted.status_code == 200
    assert _error_event(posted.text)["code"] == "timeout"
    assert _err(waited, 504)["code"] == "timeout"


async def test_a_stream_older_than_max_stream_s_ends_at_once(
    start_edge: StartEdge, logw: LogWriter
) -> None:
    with start_edge(max_stream_s=5.0) as edge:
        sid = await logw.create(created_ms=int(time.time() * 1000) - 60_000)
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            resp = await c.get(f"/v1/streams/{sid}")
    assert _error_event(resp.text)["code"] == "timeout"


@BOTH
async def test_a_never_seen_id_is_404_and_410_only_when_older_than_retention(
    start_edge: StartEdge,
) -> None:
    """Finding 8: a never-seen id answered 410. The rule: 404 unless the creation time in the
    id is older than the retention (then it may have existed and expired: 410)."""
    now = int(time.time() * 1000)
    fresh = new_stream_id("chat", now)
    future = new_stream_id("completion", now + 86_400_000)
    recent = new_stream_id("chat", now - 30_000)  # within a 60 s retention
    old = new_stream_id("chat", now - 3_600_000)
    with start_edge(retention_s=60) as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            for sid, status in ((fresh, 404), (future, 404), (recent, 404), (old, 410)):
                for method, path in (
                    ("GET", f"/v1/streams/{sid}"),
                    ("GET", f"/v1/streams/{sid}/info"),
                    ("POST", f"/v1/streams/{sid}/cancel"),
                ):
                    err = _err(await c.request(method, path), status)
                    code = "stream_not_found" if status == 404 else "stream_expired"
                    assert err["code"] == code, (sid, path)
            for bad in ("chatcmpl-nothex", "cmpl-123", "x" * 40):
                assert _err(await c.get(f"/v1/streams/{bad}"), 404)["code"] == "stream_not_found"
    with start_edge(retention_s=0) as edge:  # kept forever: a missing stream never existed
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            assert _err(await c.get(f"/v1/streams/{old}"), 404)["code"] == "stream_not_found"


async def _eventually_watched(edge: Edge) -> None:
    await eventually(lambda: _hub_watches(edge))


async def _watching(edge: Edge, *, keys: int, responses: int) -> bool:
    return edge.state.hub.keys >= keys and edge.state.responses >= responses
