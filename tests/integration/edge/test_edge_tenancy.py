"""Issue 10, finding 7 and the tenant features, through a real edge under uvicorn.

Regression (finding 7, "No ownership"): with API keys configured, any key holder listed every
running stream and read or cancelled it. The invariant: a stream belongs to the key that
created it; only that key or the admin lists, reads, resumes, cancels and replays it, and every
other key gets the very 404 of a stream that never existed.

Also: per-key limits with OpenAI's ``x-ratelimit-*`` headers and 429 + ``Retry-After``; fault
injection (``X-FakeAI-Fault`` and the seeded ``FAKEAI_FAULTS``); ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from tests.conftest import BOTH
from tests.integration.edge.edgekit import MODEL, Edge, LogWriter, data_events, parse_sse

from fakeai.services.edge.openapi import document
from fakeai.streams import new_stream_id
from fakeai.streams.client import RedisClient

pytestmark = [
    pytest.mark.redis,
    pytest.mark.e2e,
]

StartEdge = Callable[..., AbstractContextManager[Edge]]

CHAT: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}
KEYS = {"api_key": "sk-admin", "api_keys": "alice:sk-alice,bob:sk-bob"}
ALICE = {"Authorization": "Bearer sk-alice"}
BOB = {"Authorization": "Bearer sk-bob"}
ADMIN = {"Authorization": "Bearer sk-admin"}


def _client(edge: Edge, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=edge.url, timeout=10, headers=headers)


@asynccontextmanager
async def _open_stream(
    c: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.Response]:
    async with c.stream("POST", "/v1/chat/completions", json=CHAT, headers=headers or {}) as r:
        yield r


async def _refused(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The error of a streamed request that must be refused (its status checked first: a
    stream that was not refused would never end)."""
    assert resp.status_code == status
    await resp.aread()
    return _error(resp, status)


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


@BOTH
async def test_any_key_listed_read_and_cancelled_every_stream(
    start_edge: StartEdge, logw: LogWriter, rc: RedisClient
) -> None:
    """Finding 7. Invariant: only the creating key or the admin sees a stream; any other key
    gets, on every endpoint, the exact answer for a stream that does not exist."""
    with start_edge(**KEYS) as edge:
        async with (
            _client(edge, ALICE) as alice,
            _client(edge, BOB) as bob,
            _client(edge, ADMIN) as admin,
        ):
            async with _open_stream(alice) as resp:
                assert resp.status_code == 200
                sid = resp.headers["x-stream-id"]
                await logw.take_request()
                assert await rc.hget(logw.keys.meta(sid), "owner") == b"alice"
                await logw.chunks(sid, ["a", "b"])

                # Listing: the owner and the admin see it; another key does not.
                async def listed(c: httpx.AsyncClient) -> bool:
                    r = await c.get("/v1/streams")
                    assert r.status_code == 200
                    return sid in {s["id"] for s in r.json()["data"]}

                assert await listed(alice)
                assert await listed(admin)
                assert not await listed(bob)

                # Every per-stream endpoint: bob gets a never-existed 404, byte for byte.
                created_ms = int(sid[9:20], 16)
                never = new_stream_id("chat", created_ms)
                for method, path in (
                    ("GET", "/v1/streams/{}"),
                    ("GET", "/v1/streams/{}/info"),
                    ("POST", "/v1/streams/{}/cancel"),
                ):
                    hidden = await bob.request(method, path.format(sid))
                    missing = await bob.request(method, path.format(never))
                    assert hidden.status_code == missing.status_code == 404
                    assert hidden.text.replace(sid, "X") == missing.text.replace(never, "X")
                    r = await bob.request(
                        method, path.format(sid), headers={"Last-Event-ID": f"{created_ms}-1"}
                    )
                    assert r.status_code == 404
                assert await rc.hget(logw.keys.meta(sid), "cancel_requested") is None

                await logw.done(sid)
                body = b"".join([b async for b in resp.aiter_bytes()]).decode()
            assert data_events(parse_sse(body))[-1].data == "[DONE]"

            # The owner and the admin read and replay it.
            for c in (alice, admin):
                r = await c.get(f"/v1/streams/{sid}")
                assert r.status_code == 200
                assert data_events(parse_sse(r.text))[-1].data == "[DONE]"
                assert (await c.get(f"/v1/streams/{sid}/info")).json()["status"] == "done"


async def test_every_tenant_key_is_accepted_and_others_are_401(start_edge: StartEdge) -> None:
    with start_edge(**KEYS) as edge:
        async with _client(edge, {}) as c:
            for headers in (ALICE, BOB, ADMIN):
                assert (await c.get("/v1/models", headers=headers)).status_code == 200
            for bad in ("Bearer sk-alic", "Bearer sk-alice2", "Basic sk-alice", ""):
                r = await c.get("/v1/models", headers={"Authorization": bad})
                assert _error(r, 401)["code"] == "invalid_api_key"


async def test_no_rate_limit_requests_past_the_keys_limit_were_served(
    start_edge: StartEdge,
) -> None:
    """Finding 2 ("No rate limit"). Invariant: a key's requests beyond its per-minute limit
    get 429 with Retry-After, and every response of a limited key says where it stands."""
    with start_edge(api_keys="alice:sk-alice,bob:sk-bob", key_requests_per_min=2) as edge:
        async with _client(edge, ALICE) as alice, _client(edge, BOB) as bob:
            remaining = []
            for _ in range(2):
                async with _open_stream(alice) as resp:
                    assert resp.status_code == 200
                    assert resp.headers["x-ratelimit-limit-requests"] == "2"
                    assert resp.headers["x-ratelimit-reset-requests"].endswith("s")
                    remaining.append(resp.headers["x-ratelimit-remaining-requests"])
            assert remaining == ["1", "0"]
            async with _open_stream(alice) as resp:
                err = await _refused(resp, 429)
                assert err["code"] == "rate_limit_exceeded"
                assert int(resp.headers["retry-after"]) >= 1
                assert resp.headers["x-ratelimit-remaining-requests"] == "0"
            async with _open_stream(bob) as resp:  # another key, its own count
                assert resp.status_code == 200


async def test_concurrent_streams_per_key(start_edge: StartEdge, logw: LogWriter) -> None:
    with start_edge(api_keys="alice:sk-alice", key_max_streams=1) as edge:
        async with _client(edge, ALICE) as alice:
            async with _open_stream(alice) as first:
                assert first.status_code == 200
                sid = first.headers["x-stream-id"]
                await logw.take_request()
                async with _open_stream(alice) as second:
                    err = await _refused(second, 429)
                    assert "concurrent streams" in err["message"]
                    assert second.headers["retry-after"] == "1"
                await logw.done(sid)
                await first.aread()
            async with _open_stream(alice) as third:  # the first one has finished
                assert third.status_code == 200


async def test_injected_faults(start_edge: StartEdge, logw: LogWriter) -> None:
    with start_edge() as edge:
        async with _client(edge, {}) as c:
            for fault, status in (("status=503", 503), ("status=429", 429), ("explode", 400)):
                async with _open_stream(c, {"X-FakeAI-Fault": fault}) as r:
                    err = await _refused(r, status)
                if status == 503:
                    assert err["type"] == "server_error"
                    assert r.headers["retry-after"] == "1"
                elif status == 429:
                    assert err["code"] == "rate_limit_exceeded"
                    assert r.headers["x-ratelimit-remaining-requests"] == "0"
                else:
                    assert err["param"] == "X-FakeAI-Fault"

            headers = {"X-FakeAI-Fault": "error_after=1"}
            async with c.stream("POST", "/v1/chat/completions", json=CHAT, headers=headers) as r:
                assert r.status_code == 200
                sid = r.headers["x-stream-id"]
                await logw.take_request()
                ids = await logw.chunks(sid, ["a", "b"])
                body = (await asyncio.wait_for(r.aread(), 10)).decode()
    events = data_events(parse_sse(body))
    assert [e.id for e in events] == [ids[0], None, None]
    assert json.loads(events[1].data or "")["error"]["code"] == "injected_fault"
    assert events[2].data == "[DONE]"


async def test_seeded_fault_rate_from_settings(start_edge: StartEdge) -> None:
    with start_edge(faults="seed=1; 100% status=500") as edge:
        async with _client(edge, {}) as c:
            for _ in range(3):
                async with _open_stream(c) as r:
                    assert (await _refused(r, 500))["type"] == "server_error"
            async with _open_stream(c, {"X-FakeAI-Fault": "status=503"}) as r:
                assert r.status_code == 503  # the header wins over the draw


async def test_the_edge_serves_its_openapi_document(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == json.loads(json.dumps(document()))
