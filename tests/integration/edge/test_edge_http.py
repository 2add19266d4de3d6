"""The edge's HTTP contract: OpenAI endpoints, errors, formats, cancel, info, heartbeat."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from tests.conftest import BOTH
from tests.integration.edge.edgekit import (
    MODEL,
    Edge,
    LogWriter,
    data_events,
    lease_producer,
    parse_sse,
)
from tests.support.servers import eventually

from fakeai.embedded_redis import free_port
from fakeai.streams import Keys, new_stream_id
from fakeai.streams.client import RedisClient
from fakeai.streams.meta import F
from fakeai.wire import decode_cancel

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _err(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    err: dict[str, object] = body["error"]
    return err


@BOTH
async def test_streaming_chat_publishes_the_request_and_relays_the_log(
    edge: Edge, logw: LogWriter, rc: RedisClient
) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        headers = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "5", "X-FakeAI-Seed": "7"}
        async with c.stream("POST", "/v1/chat/completions", json=CHAT, headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert resp.headers["cache-control"] == "no-cache"
            sid = resp.headers["x-stream-id"]
            req = await logw.take_request()
            assert req.stream_id == sid
            assert (req.endpoint, req.model, req.stream) == ("chat", MODEL, True)
            assert (req.ttft_ms, req.itl_ms, req.seed) == (0.0, 5.0, 7)
            assert req.body["messages"] == CHAT["messages"]
            meta = await rc.hgetall(logw.keys.meta(sid))
            assert meta[F.STATUS.encode()] == b"queued"
            assert await rc.zscore(logw.keys.active(), sid) == req.created_ms
            assert await rc.ttl(logw.keys.meta(sid)) > 86_400
            ids = await logw.chunks(sid, ["Hel", "lo"])
            done = await logw.done(sid)
            raw = b"".join([b async for b in resp.aiter_bytes()]).decode()
    events = parse_sse(raw)
    assert [e.id for e in events] == [*ids, done]
    assert events[0].retry == 3000
    assert all(e.retry is None for e in events[1:])
    assert json.loads(events[0].data or "")["choices"][0]["delta"]["content"] == "Hel"
    assert events[-1].data == "[DONE]"
    assert "event:" not in raw


@BOTH
async def test_non_streaming_returns_the_response_entry(edge: Edge, logw: LogWriter) -> None:
    body = {"model": MODEL, "prompt": "say hi", "max_tokens": 3}
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        task = asyncio.create_task(c.post("/v1/completions", json=body))
        req = await logw.take_request()
        assert (req.endpoint, req.stream) == ("completion", False)
        assert req.stream_id.startswith("cmpl-")
        whole = {"id": req.stream_id, "object": "text_completion", "choices": [{"text": "hi"}]}
        await logw.response(req.stream_id, whole)
        await logw.done(req.stream_id)
        resp = await asyncio.wait_for(task, 5)
    assert resp.status_code == 200
    assert resp.json() == whole
    assert resp.headers["x-stream-id"] == req.stream_id


async def test_non_streaming_error_entry_is_an_http_error(edge: Edge, logw: LogWriter) -> None:
    body = {**CHAT, "stream": False}
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        task = asyncio.create_task(c.post("/v1/chat/completions", json=body))
        req = await logw.take_request()
        await logw.error(req.stream_id, code="rate_limit_exceeded", message="slow down")
        resp = await asyncio.wait_for(task, 5)
    err = _err(resp, 429)
    assert err["message"] == "slow down"


@BOTH
async def test_error_entry_after_200_is_an_sse_error_event(edge: Edge, logw: LogWriter) -> None:
    sid = await logw.create()
    ids = await logw.chunks(sid, ["a"])
    eid = await logw.error(sid, code="generation_failed")
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.get(f"/v1/streams/{sid}")
    events = data_events(parse_sse(resp.text))
    assert [e.id for e in events] == [ids[0], eid, None]
    assert json.loads(events[1].data or "")["error"]["code"] == "generation_failed"
    assert events[2].data == "[DONE]"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({**CHAT, "n": "2"}, "n"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**CHAT, "temperature": 3}, "temperature"),
        ({**CHAT, "messages": [{"content": "no role"}]}, "messages.0.role"),
    ],
)
async def test_invalid_fields_are_400_naming_the_param(
    edge: Edge, body: dict[str, object], param: str
) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.post("/v1/chat/completions", json=body)
    err = _err(resp, 400)
    assert err["param"] == param
    assert param in str(err["message"])


async def test_unknown_fields_are_accepted_and_passed_on(edge: Edge, logw: LogWriter) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        body = {**CHAT, "include_obfuscation": False, "stream": False}
        task = asyncio.create_task(c.post("/v1/chat/completions", json=body))
        req = await logw.take_request()
        await logw.response(req.stream_id, {"ok": True})
        assert (await asyncio.wait_for(task, 5)).json() == {"ok": True}
    assert req.body["include_obfuscation"] is False


async def test_client_leaving_a_non_streaming_wait_releases_it(edge: Edge, logw: LogWriter) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        task = asyncio.create_task(c.post("/v1/chat/completions", json={**CHAT, "stream": False}))
        await logw.take_request()
        await eventually(lambda: _hub_keys(edge))
        task.cancel()
    await eventually(lambda: _no_hub_keys(edge))


async def _no_hub_keys(edge: Edge) -> bool:
    return edge.state.hub.keys == 0


async def test_malformed_json_is_400(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.post(
            "/v1/chat/completions",
            content=b'{"model": ',
            headers={"content-type": "application/json"},
        )
        assert _err(resp, 400)["code"] == "invalid_json"
        resp = await c.post("/v1/chat/completions", json=[1, 2])
        _err(resp, 400)


async def test_unknown_model_is_404_model_not_found(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.post("/v1/chat/completions", json={**CHAT, "model": "no-such-model-xyz"})
    err = _err(resp, 404)
    assert (err["code"], err["param"]) == ("model_not_found", "model")


async def test_body_over_the_limit_is_413(start_edge: StartEdge) -> None:
    with start_edge(max_body_bytes=2048) as edge:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            resp = await c.post("/v1/chat/completions", json=big)
            assert _err(resp, 413)["code"] == "request_too_large"

            async def chunked():  # no Content-Length: the edge counts what arrives
                yield json.dumps(big).encode()

            resp = await c.post("/v1/chat/completions", content=chunked())
            assert _err(resp, 413)["code"] == "request_too_large"


async def test_api_key_is_enforced_on_v1(start_edge: StartEdge) -> None:
    with start_edge(api_key="sekrit") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            assert _err(await c.get("/v1/models"), 401)["code"] == "invalid_api_key"
            bad = {"Authorization": "Bearer nope"}
            _err(await c.get("/v1/models", headers=bad), 401)
            ok = await c.get("/v1/models", headers={"Authorization": "Bearer sekrit"})
            assert ok.status_code == 200
            assert (await c.get("/healthz")).status_code == 200


async def test_redis_unreachable_is_503_with_retry_after(start_edge: StartEdge) -> None:
    with start_edge(redis_url=f"redis://127.0.0.1:{free_port()}") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=20) as c:
            resp = await c.post("/v1/chat/completions", json=CHAT)
            assert _err(resp, 503)["code"] == "redis_unavailable"
            assert resp.headers["retry-after"] == "1"
            ready = await c.get("/readyz")
            assert _err(ready, 503)["code"] == "redis_unavailable"
            assert "retry-after" in ready.headers
            sid = new_stream_id("chat", int(time.time() * 1000))
            _err(await c.get(f"/v1/streams/{sid}"), 503)
            assert (await c.get("/healthz")).status_code == 200


async def test_readyz_and_models(edge: Edge, rc: RedisClient, keys: Keys) -> None:
    await lease_producer(rc, keys)
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        assert (await c.get("/readyz")).json() == {"status": "ready", "producers": 1}
        models = (await c.get("/v1/models")).json()
    assert models["object"] == "list"
    assert MODEL in [m["id"] for m in models["data"]]
    assert all(m["object"] == "model" for m in models["data"])


async def test_bad_last_event_ids_are_400(edge: Edge, logw: LogWriter) -> None:
    sid, _ids, done = await logw.finished(3)
    created = logw.created[sid]
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        for bad in ("nonsense", f"{created + 1}-1", f"{created}-99"):
            resp = await c.get(f"/v1/streams/{sid}", headers={"Last-Event-ID": bad})
            err = _err(resp, 400)
            assert (err["param"], err["code"]) == ("last_event_id", "invalid_event_id")
        # The terminal id itself is fine: nothing is left to send.
        resp = await c.get(f"/v1/streams/{sid}", params={"last_event_id": done})
        assert data_events(parse_sse(resp.text)) == []


@BOTH
async def test_unknown_and_expired_streams(start_edge: StartEdge) -> None:
    with start_edge(retention_s=60) as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            assert _err(await c.get("/v1/streams/not-an-id"), 404)["code"] == "stream_not_found"
            fresh = new_stream_id("chat", int(time.time() * 1000))
            assert _err(await c.get(f"/v1/streams/{fresh}"), 404)["code"] == "stream_not_found"
            old = new_stream_id("chat", int(time.time() * 1000) - 3_600_000)
            assert _err(await c.get(f"/v1/streams/{old}"), 410)["code"] == "stream_expired"
            assert _err(await c.get(f"/v1/streams/{old}/info"), 410)["code"] == "stream_expired"
    with start_edge(retention_s=0) as edge:  # kept forever: a missing stream never existed
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            _err(await c.get(f"/v1/streams/{old}"), 404)


async def test_formats_by_query_and_accept(edge: Edge, logw: LogWriter) -> None:
    sid, _ids, _done = await logw.finished(3)
    url = f"/v1/streams/{sid}"
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        text = await c.get(url, params={"format": "text"})
        assert text.text == "t0 t1 t2 "
        assert text.headers["content-type"] == "text/plain; charset=utf-8"
        by_accept = await c.get(url, headers={"Accept": "text/plain"})
        assert by_accept.text == text.text
        jsonl = await c.get(url, headers={"Accept": "application/jsonl"})
        lines = [json.loads(x) for x in jsonl.text.splitlines()]
        assert [x["type"] for x in lines] == ["chunk", "chunk", "chunk", "done"]
        assert lines[0]["data"]["choices"][0]["delta"]["content"] == "t0 "
        sse = await c.get(url, headers={"Accept": "*/*"})
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert _err(await c.get(url, params={"format": "xml"}), 400)["param"] == "format"


async def test_error_entry_in_jsonl_and_text(edge: Edge, logw: LogWriter) -> None:
    sid = await logw.create()
    await logw.chunks(sid, ["part"])
    await logw.error(sid, code="boom", message="it broke")
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        lines = (await c.get(f"/v1/streams/{sid}", params={"format": "jsonl"})).text.splitlines()
        text = (await c.get(f"/v1/streams/{sid}", params={"format": "text"})).text
    last = json.loads(lines[-1])
    assert (last["type"], last["error"]["code"]) == ("error", "boom")
    assert text == "part\n[error] boom: it broke\n"


async def test_disconnect_after_n_events_then_resume(edge: Edge, logw: LogWriter) -> None:
    sid, ids, done = await logw.finished(6)
    url = f"/v1/streams/{sid}"
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        cut = await c.get(url, headers={"X-FakeAI-Disconnect-After": "2"})
        events = data_events(parse_sse(cut.text))
        assert [e.id for e in events] == ids[:2]
        assert "[DONE]" not in cut.text
        rest = await c.get(url, headers={"Last-Event-ID": events[-1].id or ""})
        assert [e.id for e in data_events(parse_sse(rest.text))] == [*ids[2:], done]
        bad = await c.get(url, headers={"X-FakeAI-Disconnect-After": "0"})
        assert _err(bad, 400)["param"] == "X-FakeAI-Disconnect-After"


@BOTH
async def test_disconnect_after_on_a_live_post_keeps_the_stream_going(
    edge: Edge, logw: LogWriter
) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        headers = {"X-FakeAI-Disconnect-After": "1"}
        task = asyncio.create_task(c.post("/v1/chat/completions", json=CHAT, headers=headers))
        req = await logw.take_request()
        ids = await logw.chunks(req.stream_id, ["a", "b"])
        resp = await asyncio.wait_for(task, 5)
        assert [e.id for e in data_events(parse_sse(resp.text))] == ids[:1]
        done = await logw.done(req.stream_id)
        rest = await c.get(f"/v1/streams/{req.stream_id}", headers={"Last-Event-ID": ids[0]})
    assert [e.id for e in data_events(parse_sse(rest.text))] == [ids[1], done]


async def test_heartbeat_comment_on_an_idle_stream(start_edge: StartEdge, logw: LogWriter) -> None:
    with start_edge(heartbeat_s=0.05) as edge:
        sid = await logw.create()
        async with (
            httpx.AsyncClient(base_url=edge.url, timeout=10) as c,
            c.stream("GET", f"/v1/streams/{sid}") as resp,
        ):
            seen = ""
            async for text in resp.aiter_text():
                seen += text
                if ": ping\n\n" in seen:
                    break
    assert seen.startswith(f"id: {logw.created[sid]}-0\nretry: 3000\n\n")
    assert ": ping\n\n" in seen


async def test_slow_consumer_gets_a_resumable_error_event(
    start_edge: StartEdge, logw: LogWriter
) -> None:
    with start_edge(client_buffer=16) as edge:
        sid = await logw.create()
        host, port = edge.url.removeprefix("http://").split(":")
        # A client with a tiny receive window that does not read: the edge's sends block.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.sendall(f"GET /v1/streams/{sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            await eventually(lambda: _hub_keys(edge))
            pad = "y" * 2048
            written = 0
            while edge.state.hub.overflows == 0:
                await logw.chunks(sid, [pad] * 64)
                written += 64
                assert written < 20_000, "the edge never saw the client fall behind"
                await asyncio.sleep(0.01)
            await logw.done(sid)
            sock.settimeout(10)
            raw = b""
            while b"data: [DONE]\n\n" not in raw:
                part = await asyncio.to_thread(sock.recv, 1 << 16)
                assert part, "connection closed without the error event"
                raw += part
        finally:
            sock.close()
    body = raw.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    assert '"code":"slow_consumer"' in body
    assert "Last-Event-ID" in body


async def _hub_keys(edge: Edge) -> int:
    return edge.state.hub.keys


@BOTH
async def test_cancel_writes_the_signal(edge: Edge, logw: LogWriter, rc: RedisClient) -> None:
    sid = await logw.create()
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.post(f"/v1/streams/{sid}/cancel")
        assert resp.json() == {"id": sid, "status": "cancelling", "cancel_requested": True}
        entries = await rc.xrange(logw.keys.cancels())
        assert decode_cancel(entries[-1][1][b"c"]).stream_id == sid
        assert await rc.hget(logw.keys.meta(sid), F.CANCEL_REQUESTED) == b"1"
        await logw.done(sid)
        again = await c.post(f"/v1/streams/{sid}/cancel")
        assert again.json() == {"id": sid, "status": "done", "cancel_requested": False}
        assert len(await rc.xrange(logw.keys.cancels())) == 1
        unknown = new_stream_id("chat", int(time.time() * 1000))
        _err(await c.post(f"/v1/streams/{unknown}/cancel"), 404)


@BOTH
async def test_info_and_active_list(edge: Edge, logw: LogWriter, rc: RedisClient) -> None:
    sid, _ids, done = await logw.finished(4)
    await rc.zadd(logw.keys.active(), {sid: logw.created[sid]})
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        info = (await c.get(f"/v1/streams/{sid}/info")).json()
        listing = (await c.get("/v1/streams", params={"limit": 5})).json()
        _err(await c.get("/v1/streams", params={"limit": "0"}), 400)
    assert info["id"] == sid
    assert (info["status"], info["model"], info["endpoint"]) == ("done", MODEL, "chat")
    assert info["chunks"] == 5
    assert info["last_event_id"] == done
    assert info["timings"]["accepted_at"] == pytest.approx(logw.created[sid] / 1000)
    assert listing["data"] == [
        {
            "id": sid,
            "model": MODEL,
            "status": "done",
            "endpoint": "chat",
            "created_ms": logw.created[sid],
        }
    ]


async def test_unknown_route_is_openai_shaped(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        _err(await c.get("/v1/nope"), 404)


async def test_ttft_counts_from_the_first_bytes_of_the_request(edge: Edge, logw: LogWriter) -> None:
    """The arrival stamp is taken when the request starts to be parsed, not when the app runs.

    The request line goes out, then the rest 1 s later: the stored ``accepted_at`` must be the
    time of the first bytes, before the rest was even sent (an app-level stamp comes after it).
    An ordering, not a tolerance: the edge has a whole second to read the first bytes, and a
    loaded machine that delays the client's second write only widens the gap.
    """
    host, port = edge.url.removeprefix("http://").split(":")
    body = json.dumps(CHAT).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\n"
    rest = (
        f"Host: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        first_bytes = time.time()
        writer.write(head)
        await writer.drain()
        await asyncio.sleep(1.0)  # the stimulus: a slow client, not synchronization
        rest_sent = time.time()
        writer.write(rest)
        await writer.drain()
        req = await logw.take_request()
        status = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 200"), status
    assert first_bytes - 0.05 <= req.accepted_at < rest_sent, req.accepted_at - first_bytes
