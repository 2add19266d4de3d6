"""Issue 10, findings 5 and 6 at the edge: Redis out of memory, restarted or gone. Every
request ends in an answer that names the cause, nothing is left half-written, and a restart
costs no 503 once Redis is back.

These tests start Redis servers of their own (they change ``maxmemory`` or restart them).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis
from tests.conftest import BOTH
from tests.integration.edge.edgekit import (
    MODEL,
    Edge,
    LogWriter,
    data_events,
    lease_producer,
    parse_sse,
)

from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.embedded_redis import EmbeddedRedis
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, connect

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


def _out_of_memory(resp: httpx.Response) -> None:
    err = _err(resp, 503)
    assert err["code"] == "redis_out_of_memory"
    assert "Redis is out of memory (maxmemory)" in err["message"]
    assert int(resp.headers["retry-after"]) >= 1


@pytest.fixture
async def own_redis() -> AsyncIterator[tuple[str, aredis.Redis]]:
    with EmbeddedRedis() as server:
        admin = aredis.Redis.from_url(server.url)
        try:
            yield server.url, admin
        finally:
            await admin.aclose()


async def _meta_keys(r: Any, keys: Keys) -> list[bytes]:
    return [k async for k in r.scan_iter(match=f"{keys.prefix}:*:meta")]


async def test_redis_out_of_memory_is_503_naming_the_cause_and_writes_nothing(
    start_edge: StartEdge, own_redis: tuple[str, aredis.Redis], keys: Keys
) -> None:
    """Finding 5: with ``maxmemory`` reached, new requests got 500 ``internal_error`` and
    ``/readyz`` stayed 200. Now: 503 naming the cause, with ``Retry-After``; no meta hash,
    no index entry and no request is left behind; ``/readyz`` says why; and it all works
    again once memory is available."""
    url, admin = own_redis
    await lease_producer(admin, keys)
    with start_edge(redis_url=url) as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            assert (await c.get("/readyz")).status_code == 200
            await admin.config_set("maxmemory", 1)  # noeviction (the default): writes refused
            try:
                _out_of_memory(await c.post("/v1/chat/completions", json=CHAT))
                whole = {**CHAT, "stream": False}
                _out_of_memory(await c.post("/v1/completions", json={**whole, "prompt": "x"}))
                _out_of_memory(await c.get("/readyz"))
                assert await _meta_keys(admin, keys) == []
                assert await admin.zcard(keys.active()) == 0
                assert [await admin.xlen(k) for k in keys.all_requests(4)] == [0] * 4
            finally:
                await admin.config_set("maxmemory", 0)
            assert (await c.get("/readyz")).status_code == 200
            async with c.stream("POST", "/v1/chat/completions", json=CHAT) as resp:
                assert resp.status_code == 200
    assert await admin.zcard(keys.active()) == 1


async def test_out_of_memory_on_one_cluster_node_leaves_no_record_without_a_request(
    start_edge: StartEdge,
) -> None:
    """Finding 5 on a cluster, where the creation cannot be one transaction: with the node of
    the request partition out of memory, or the node of the active index, a failed creation
    leaves no meta hash, no index entry and no request behind."""
    with EmbeddedCluster(masters=3, replicas=0) as cluster:
        rc = await connect(cluster.url)
        assert isinstance(rc, aredis.RedisCluster)
        try:
            keys = _keys_apart(rc)
            await lease_producer(rc, keys)
            partition = keys.requests(0)
            with start_edge(
                redis_url=cluster.url, key_prefix=keys.prefix, request_partitions=1
            ) as edge:
                async with httpx.AsyncClient(base_url=edge.url, timeout=20) as c:
                    for full in (partition, keys.active()):
                        node = rc.get_node_from_key(full)
                        await rc.config_set("maxmemory", 1, target_nodes=node)
                        try:
                            for _ in range(6):  # streams land in random buckets, on any node
                                _out_of_memory(await c.post("/v1/chat/completions", json=CHAT))
                        finally:
                            await rc.config_set("maxmemory", 0, target_nodes=node)
                        metas = await _cluster_meta_keys(rc, keys)
                        assert metas == [], f"{full} out of memory"
                        assert await rc.zcard(keys.active()) == 0
                        assert await rc.xlen(partition) == 0
                    async with c.stream("POST", "/v1/chat/completions", json=CHAT) as resp:
                        assert resp.status_code == 200
            assert await rc.zcard(keys.active()) == 1
            assert await rc.xlen(partition) == 1
        finally:
            await rc.aclose()


def _keys_apart(rc: aredis.RedisCluster) -> Keys:
    """A prefix whose active index sits on another node than request partition 0."""
    while True:
        keys = Keys(f"t{uuid.uuid4().hex[:12]}")
        a = rc.get_node_from_key(keys.active())
        p = rc.get_node_from_key(keys.requests(0))
        if a is not None and p is not None and a.name != p.name:
            return keys


async def _cluster_meta_keys(rc: aredis.RedisCluster, keys: Keys) -> list[bytes]:
    found: list[bytes] = []
    for node in rc.get_primaries():
        found += await rc.keys(f"{keys.prefix}:*:meta", target_nodes=node)
    return found


async def test_stale_pooled_connections_after_a_redis_restart_give_no_503(
    start_edge: StartEdge, keys: Keys, tmp_path: Path
) -> None:
    """Finding 6: after a Redis restart the pooled connections were dead, and the first
    requests to take one got a 503 (some replays an error event inside a 200). Now a dead
    pooled connection is replaced at once, and a replay decides before its first byte; a
    Redis that is really down is still a 503."""
    server = EmbeddedRedis(state_dir=tmp_path, persistent=True)
    server.start()
    try:
        writer = await connect(server.url)
        logw = LogWriter(writer, keys)
        sid, ids, done = await logw.finished(5)
        await writer.aclose()
        with start_edge(redis_url=server.url) as edge:
            async with httpx.AsyncClient(base_url=edge.url, timeout=20) as c:
                info = f"/v1/streams/{sid}/info"
                warm = await asyncio.gather(*[c.get(info) for _ in range(30)])
                assert {r.status_code for r in warm} == {200}
                server.stop()  # SIGTERM: Redis writes its append-only file and exits
                server = EmbeddedRedis(state_dir=tmp_path, persistent=True, port=server.port)
                server.start()
                replays = [c.get(f"/v1/streams/{sid}") for _ in range(20)]
                infos = [c.get(info) for _ in range(20)]
                posts = [_post_status(c) for _ in range(10)]
                got = await asyncio.gather(*replays, *infos, *posts)
                for resp in got[:20]:
                    assert resp.status_code == 200, resp.text
                    events = data_events(parse_sse(resp.text))
                    assert [e.id for e in events] == [*ids, done]
                    assert '"error"' not in resp.text
                assert [r.status_code for r in got[20:40]] == [200] * 20
                assert got[40:] == [200] * 10
                server.stop()
                down = await c.get(info)
                assert _err(down, 503)["code"] == "redis_unavailable"
                assert down.headers["retry-after"] == "1"
    finally:
        server.stop()


async def test_a_replay_whose_first_read_fails_answers_an_error_status_not_a_200(
    start_edge: StartEdge, own_redis: tuple[str, aredis.Redis], keys: Keys
) -> None:
    """Finding 6: a replay whose entries could not be read began with a 200 and carried the
    error as an event. The first page is now read with the snapshot, before the status
    line: a failure there is an HTTP error. (The failure here: an ACL that refuses XRANGE.)"""
    url, admin = own_redis
    logw = LogWriter(admin, keys)
    sid, _ids, _done = await logw.finished(3)
    running = await logw.create()
    await logw.chunks(running, ["a"])
    await admin.acl_setuser(
        "edge", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-xrange"],
    )  # fmt: skip
    with start_edge(redis_url=url.replace("redis://", "redis://edge:pw@")) as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            for stream in (sid, running):
                resp = await c.get(f"/v1/streams/{stream}")
                assert resp.status_code >= 500, resp.text
                assert resp.headers["content-type"] == "application/json"
                assert "error" in resp.json()


async def _post_status(c: httpx.AsyncClient) -> int:
    async with c.stream("POST", "/v1/chat/completions", json=CHAT) as resp:
        return resp.status_code


@BOTH
async def test_readyz_is_503_naming_why_without_a_live_producer_lease(
    edge: Edge, rc: RedisClient, keys: Keys
) -> None:
    """``/readyz`` said 200 with no producer at all (finding 1: it stayed 200 while every
    producer was dead). A lease whose expiry has passed does not count."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        err = _err(await c.get("/readyz"), 503)
        assert err["code"] == "no_producers"
        assert keys.producers() in err["message"]
        await lease_producer(rc, keys, name="dead", ttl_s=-5)
        assert _err(await c.get("/readyz"), 503)["code"] == "no_producers"
        await lease_producer(rc, keys, name="alive", ttl_s=30)
        resp = await c.get("/readyz")
    assert resp.json() == {"status": "ready", "producers": 1}
