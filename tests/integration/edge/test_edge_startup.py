"""Edge start-up: the key layout is checked, and Redis is not needed to start."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
import redis.asyncio as aredis
from tests.conftest import BOTH
from tests.integration.edge.edgekit import Edge, lease_producer
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.embedded_redis import EmbeddedRedis, free_port
from fakeai.services.edge import create_app
from fakeai.streams import LAYOUT, Keys
from fakeai.streams.client import LayoutMismatch, RedisClient

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]


@BOTH
async def test_a_redis_with_the_old_key_layout_stops_start_up_naming_the_fix(
    make_settings: Callable[..., Settings], rc: RedisClient, keys: Keys
) -> None:
    await rc.xadd(keys.layout1_markers()[0], {"r": b"{}"})  # a layout-1 requests stream
    app = create_app(make_settings())
    with pytest.raises(LayoutMismatch, match="migrate"):
        async with app.router.lifespan_context(app):
            pass


@BOTH
async def test_a_fresh_redis_is_marked_with_the_key_layout(
    edge: Edge, rc: RedisClient, keys: Keys
) -> None:
    assert await rc.get(keys.layout()) == LAYOUT.encode()
    await lease_producer(rc, keys)
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        assert (await c.get("/readyz")).json() == {"status": "ready", "producers": 1}


async def test_an_edge_started_before_redis_serves_once_redis_answers(
    start_edge: StartEdge, keys: Keys
) -> None:
    port = free_port()
    with start_edge(redis_url=f"redis://127.0.0.1:{port}") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            resp = await c.get("/v1/streams")
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "redis_unavailable"
            assert resp.headers["retry-after"] == "1"
            with EmbeddedRedis(port=port) as server:
                r = aredis.Redis.from_url(server.url)
                await lease_producer(r, keys)
                await r.aclose()

                async def ready() -> bool:
                    return (await c.get("/readyz")).status_code == 200

                await eventually(ready, interval_s=0.05)
                assert (await c.get("/v1/streams")).json() == {"object": "list", "data": []}
                assert edge.state.hub.readers == 0


async def test_old_key_layout_found_after_start_up_is_a_503_naming_the_fix(
    start_edge: StartEdge, key_prefix: str, keys: Keys
) -> None:
    """Redis answers only after the edge started, and holds layout-1 data: every request is
    refused with the mismatch message (start-up is over, so it cannot stop it)."""
    with EmbeddedRedis() as server:
        first = aredis.Redis.from_url(server.url)
        await first.config_set("requirepass", "sekrit")  # the edge is refused (NOAUTH)
        await first.aclose()
        admin = aredis.Redis.from_url(server.url, password="sekrit")
        try:
            with start_edge(redis_url=server.url) as edge:
                await admin.xadd(keys.layout1_markers()[0], {"r": b"{}"})
                await admin.config_set("requirepass", "")
                await _expect_layout_mismatch(edge, key_prefix)
        finally:
            await admin.aclose()


async def _expect_layout_mismatch(edge: Edge, key_prefix: str) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:

        async def refused() -> dict[str, object] | None:
            err: dict[str, object] = (await c.get("/v1/streams")).json()["error"]
            return err if err["code"] == "layout_mismatch" else None

        err = await eventually(refused, interval_s=0.05)
        assert "migrate" in str(err["message"])
        assert key_prefix in str(err["message"])
