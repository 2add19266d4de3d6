"""Redis out of memory (``maxmemory`` reached with ``noeviction``): no stream stays running.

Regression (issue 10, finding 5): with Redis refusing writes ("OOM command not allowed"), a
live stream stopped with no error, stayed ``running`` forever, leaked its ``/v1/streams``
entry, and stayed stuck after memory was freed. Each test starts its own server (a
``maxmemory`` of 1 byte makes it full at once) and never touches the shared one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aredis
from tests.integration.producer.conftest import StartProducer
from tests.integration.producer.producerkit import (
    acked,
    chat_request,
    chat_text,
    finished_log,
    pending,
    publish,
    read_log,
)
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.content import build_chat_completion
from fakeai.embedded_redis import EmbeddedRedis
from fakeai.streams import Keys
from fakeai.streams.meta import StreamMeta
from fakeai.wire import GenerationRequest, decode_error

pytestmark = pytest.mark.redis


@pytest.fixture
async def own_redis() -> AsyncIterator[tuple[EmbeddedRedis, aredis.Redis]]:
    """A Redis of this test only (its memory limit is changed), and a client of it."""
    server = EmbeddedRedis(persistent=False, extra_args=["--maxmemory-policy", "noeviction"])
    server.start()
    client = aredis.Redis.from_url(server.url)
    try:
        yield server, client
    finally:
        await client.aclose()
        server.stop()


async def _full(client: aredis.Redis, full: bool) -> None:
    await client.config_set("maxmemory", 1 if full else 0)


async def _chunks(client: aredis.Redis, keys: Keys, sid: str) -> int:
    return int(await client.xlen(keys.chunks(sid)))


def _text(req: GenerationRequest) -> str:
    full = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    return str(full["choices"][0]["message"]["content"])


@pytest.mark.slow
async def test_redis_out_of_memory_ends_a_live_stream_with_redis_full_once_it_can(
    own_redis: tuple[EmbeddedRedis, aredis.Redis],
    keys: Keys,
    make_settings: Callable[..., Settings],
    start_producer: StartProducer,
) -> None:
    server, client = own_redis
    settings = make_settings(redis_url=server.url)
    live = chat_request(max_tokens=400, ttft_ms=0, itl_ms=25)  # a 10 s stream
    async with start_producer(settings) as p:
        await publish(client, keys, live)
        await eventually(lambda: _at_least(client, keys, live.stream_id, 5), timeout_s=10)
        await _full(client, True)
        try:
            # the writer retries for a few seconds, then the stream leaves the active set
            # (ZREM runs under OOM) although its end cannot be written yet
            await eventually(
                lambda: _inactive(client, keys, live.stream_id), timeout_s=20, interval_s=0.1
            )
            stuck = await read_log(client, keys, live.stream_id)
            assert stuck[-1].kind == "c"  # no end yet: Redis refuses it
            assert await pending(client, keys) == 1  # and the request is not acknowledged
            lease = await client.zscore(keys.producers(), p.consumer)
            assert lease is not None
            assert lease > time.time() * 1000
        finally:
            await _full(client, False)
        # memory is back: the end lands, durable
        log = await eventually(
            lambda: finished_log(client, keys, live.stream_id), timeout_s=15, interval_s=0.1
        )
        await eventually(lambda: acked(client, keys), timeout_s=10)
        # and new streams work
        after = chat_request(max_tokens=8)
        await publish(client, keys, after)
        done = await eventually(lambda: finished_log(client, keys, after.stream_id), timeout_s=10)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))  # no hole, no duplicate
    assert log[: len(stuck)] == stuck
    assert log[-1].kind == "e"
    error = decode_error(log[-1].data).error
    assert error.code == "redis_full"
    assert "out of memory" in error.message
    meta = StreamMeta.from_hash(await client.hgetall(keys.meta(live.stream_id)))
    assert meta.status == "error"
    assert meta.chunks == len(log) - 1
    assert done[-1].kind == "d"
    assert chat_text(done) == _text(after)


@pytest.mark.slow
async def test_short_redis_out_of_memory_costs_a_pause_not_the_stream(
    own_redis: tuple[EmbeddedRedis, aredis.Redis],
    keys: Keys,
    make_settings: Callable[..., Settings],
    start_producer: StartProducer,
) -> None:
    """Memory freed within the writer's retry window (3 s): the stream goes on, whole."""
    server, client = own_redis
    settings = make_settings(redis_url=server.url)
    live = chat_request(max_tokens=60, ttft_ms=0, itl_ms=50)  # a 3 s stream
    async with start_producer(settings):
        await publish(client, keys, live)
        await eventually(lambda: _at_least(client, keys, live.stream_id, 5), timeout_s=10)
        await _full(client, True)
        try:
            await asyncio.sleep(0.5)  # the fault's length, not a synchronization
        finally:
            await _full(client, False)
        log = await eventually(
            lambda: finished_log(client, keys, live.stream_id), timeout_s=15, interval_s=0.1
        )
        await eventually(lambda: acked(client, keys))
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert log[-1].kind == "d"
    assert chat_text(log) == _text(live)


async def _at_least(client: aredis.Redis, keys: Keys, sid: str, n: int) -> bool:
    return await _chunks(client, keys, sid) >= n


async def _inactive(client: aredis.Redis, keys: Keys, sid: str) -> bool:
    return await client.zscore(keys.active(), sid) is None
