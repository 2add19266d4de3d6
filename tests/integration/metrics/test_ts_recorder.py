"""SampleRecorder and the bucket layout against a real Redis (and a 3-master cluster): writes,
expiry, flush on cancel, a failed flush."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from tests.conftest import BOTH
from tests.support.docker import docker_available
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries import Fold, SampleRecorder
from fakeai.timeseries.native import NativeSeries
from fakeai.timeseries.query import query_latency
from fakeai.timeseries.store import COARSE, FINE, TOTAL

pytestmark = pytest.mark.redis


@BOTH
async def test_flush_writes_fine_coarse_and_total(
    store_url: str, keys: Keys, rc: RedisClient
) -> None:
    r = rc
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix)
    rec = SampleRecorder(r, keys, settings)
    at = time.time() - 1
    for v in (0.1, 0.2, 0.3, 0.0):
        rec.add("pipeline_lag", "m", v, at=at)
    rec.add("pipeline_lag", "m", float("nan"), at=at)  # ignored
    rec.incr("client_disconnects", "m")
    assert rec.pending
    await rec.flush()
    assert not rec.pending
    fb, cb = int(at), int(at) // 60 * 60
    for res, b in ((FINE, fb), (COARSE, cb), (TOTAL, 0)):
        h = await r.hgetall(keys.ts_bucket("pipeline_lag", "m", res, b))
        assert int(h[b"n"]) == 4, res
        assert float(h[b"sum"]) == pytest.approx(0.6)
        assert int(h[b"z"]) == 1
    mm = await r.zrange(keys.ts_minmax("pipeline_lag", "m", FINE, fb), 0, -1, withscores=True)
    assert dict(mm) == {b"min": 0.0, b"max": pytest.approx(0.3)}
    assert await r.ttl(keys.ts_bucket("pipeline_lag", "m", TOTAL, 0)) == -1
    ttl = await r.ttl(keys.ts_bucket("pipeline_lag", "m", FINE, fb))
    assert 0 < ttl <= settings.ts_fine_keep_s + settings.ts_fine_s
    assert await r.smembers(keys.ts_models()) == {b"m"}
    out = await query_latency(r, keys, settings, model="m", window_s=30)
    assert out["all"]["pipeline_lag"]["count"] == 4
    assert out["all"]["pipeline_lag"]["min"] == 0.0
    assert out["all"]["pipeline_lag"]["max"] == pytest.approx(0.3)


async def test_buckets_expire_after_their_keep(redis_url: str, keys: Keys, r: aredis.Redis) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix, ts_fine_keep_s=1,
                        ts_coarse_s=2, ts_coarse_keep_s=2)  # fmt: skip
    rec = SampleRecorder(r, keys, settings)
    at = time.time()
    rec.add("edge_ttft", "m", 0.05, at=at)
    await rec.flush()
    fine = keys.ts_bucket("edge_ttft", "m", FINE, int(at))
    coarse = keys.ts_bucket("edge_ttft", "m", COARSE, int(at) // 2 * 2)
    assert await r.exists(fine, coarse) == 2
    assert 0 < await r.ttl(fine) <= 2

    async def gone() -> bool:
        return await r.exists(fine, coarse, keys.ts_minmax("edge_ttft", "m", FINE, int(at))) == 0

    await eventually(gone, interval_s=0.1)
    assert await r.exists(keys.ts_bucket("edge_ttft", "m", TOTAL, 0)) == 1


@BOTH
async def test_run_flushes_on_cancel(store_url: str, keys: Keys, rc: RedisClient) -> None:
    r = rc
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix)
    rec = SampleRecorder(r, keys, settings)
    task = asyncio.create_task(rec.run(interval_s=3600))
    await asyncio.sleep(0)  # let the loop start
    rec.add("edge_ttft", "m", 0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await r.hget(keys.ts_bucket("edge_ttft", "m", TOTAL, 0), "n") == b"1"


async def test_failed_flush_keeps_data_for_the_next(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    # No retries: redis-py's default ones take seconds to give up on a closed port.
    dead = aredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                        retry=Retry(NoBackoff(), 0))  # fmt: skip
    rec = SampleRecorder(dead, keys, settings)
    rec.add("edge_ttft", "m", 0.01)
    with pytest.raises(Exception):  # noqa: B017 - ConnectionError, by redis-py version
        await rec.flush()
    assert rec.pending
    await dead.aclose()


@BOTH
async def test_a_model_whose_write_failed_is_written_once_by_the_next_flush(
    store_url: str, keys: Keys, rc: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each model is its own pipeline (its own node on a cluster): when one fails, the others
    stay written and only the failed one is written again."""
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix)
    rec = SampleRecorder(rc, keys, settings)
    at = time.time() - 1
    for model in ("a", "b"):
        rec.add("edge_ttft", model, 0.01, at=at)
        rec.incr("client_disconnects", model)
    write_model = SampleRecorder._write_model
    failed: list[str] = []

    async def flaky(self: SampleRecorder, fold: Fold, model: str) -> None:
        if model == "b" and not failed:
            failed.append(model)
            raise RedisConnectionError("injected: the node of b went away")
        await write_model(self, fold, model)

    monkeypatch.setattr(SampleRecorder, "_write_model", flaky)
    with pytest.raises(RedisConnectionError):
        await rec.flush()
    assert rec.pending
    await rec.flush()
    assert not rec.pending
    for model in ("a", "b"):
        total = keys.ts_bucket("edge_ttft", model, TOTAL, 0)
        assert await rc.hget(total, "n") == b"1", model
        assert await rc.hget(keys.counters(model), "client_disconnects|") == b"1", model
    assert await rc.smembers(keys.ts_models()) == {b"a", b"b"}


async def test_native_backend_absent_without_the_module(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    info = await r.info("modules")
    if any("timeseries" in str(m).lower() for m in info.get("modules", [])):
        pytest.skip("this Redis has RedisTimeSeries")
    assert await NativeSeries.detect(r, keys, settings) is None


@pytest.mark.docker
@pytest.mark.skipif(not docker_available(), reason="no reachable Docker engine")
async def test_native_backend_writes_series(container_redis_url: str, keys: Keys) -> None:
    r = aredis.Redis.from_url(container_redis_url)
    try:
        settings = Settings(redis_url=container_redis_url, key_prefix=keys.prefix)
        native = await NativeSeries.detect(r, keys, settings)
        assert native is not None
        fold = Fold()
        at = time.time()
        for v in (0.1, 0.3):
            fold.add("ttft", "m", v, at)
        await native.write(fold)
        await native.write(fold)  # same bucket again: DUPLICATE_POLICY SUM / MAX
        got = await r.execute_command("TS.GET", keys.ts_native("ttft", "m", "count"))
        assert float(got[1]) == 4
        got = await r.execute_command("TS.GET", keys.ts_native("ttft", "m", "max"))
        assert float(got[1]) == pytest.approx(0.3)
        rules = await r.execute_command("TS.INFO", keys.ts_native("ttft", "m", "count"))
        assert b"rules" in rules
    finally:
        await r.aclose()
