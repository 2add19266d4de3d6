"""/metrics and /v1/metrics/latency on a minimal Starlette app under real uvicorn, on one Redis
and on a 3-master cluster."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aredis
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from tests.conftest import BOTH
from tests.support.servers import run_asgi

from fakeai.config import Settings
from fakeai.services.edge.metrics_routes import routes
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, connect
from fakeai.timeseries import SampleRecorder
from fakeai.timeseries.prometheus import PrometheusRenderer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def _app(redis_url: str, keys: Keys, settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = await connect(redis_url)
        app.state.keys = keys
        app.state.settings = settings
        yield
        await app.state.redis.aclose()

    return Starlette(routes=routes, lifespan=lifespan)


async def _seed(r: RedisClient, keys: Keys, settings: Settings) -> None:
    rec = SampleRecorder(r, keys, settings)
    now = time.time()
    for i in range(1, 101):
        rec.add("ttft", "m1", i / 100, at=now - 1)
        rec.add("itl", "m1", 0.02, at=now - 1)
        rec.add("e2e", "m1", 2.0, at=now - 1)
        rec.add("edge_ttft", "m2", i / 1000, at=now - 1)
    rec.incr("requests", "m1", 100)
    rec.incr("output_tokens", "m1", 1000)
    rec.incr("client_disconnects", "m2", 3)
    await rec.flush()


@BOTH
async def test_latency_endpoint(store_url: str, keys: Keys, rc: RedisClient) -> None:
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix)
    await _seed(rc, keys, settings)
    with run_asgi(_app(store_url, keys, settings)) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            res = await c.get("/v1/metrics/latency", params={"window": "60"})
            assert res.status_code == 200
            body = res.json()
            assert body["all"]["ttft"]["count"] == 100
            assert body["all"]["ttft"]["p50"] == pytest.approx(0.50, rel=0.02)
            assert body["all"]["edge_ttft"]["count"] == 100
            assert body["models"]["m1"]["edge_ttft"]["count"] == 0

            res = await c.get("/v1/metrics/latency", params={"model": "m2"})
            assert set(res.json()["models"]) == {"m2"}

            res = await c.get("/v1/metrics/latency", params={"model": "nope"})
            assert res.status_code == 200
            assert res.json()["models"] == {}
            assert res.json()["all"]["ttft"]["count"] == 0

            for bad in ("-1", "0", "NaN", "abc", "inf", str(settings.ts_coarse_keep_s + 1)):
                res = await c.get("/v1/metrics/latency", params={"window": bad})
                assert res.status_code == 400, bad
                err = res.json()["error"]
                assert err["param"] == "window"
                assert err["type"] == "invalid_request_error"


@BOTH
async def test_prometheus_endpoint_parses(store_url: str, keys: Keys, rc: RedisClient) -> None:
    settings = Settings(redis_url=store_url, key_prefix=keys.prefix)
    empty = await PrometheusRenderer(rc, keys).render()  # before any traffic
    assert b"vllm:num_requests_running" in empty
    await _seed(rc, keys, settings)
    # Active streams, by the model and status of their meta: m1 runs 2 and has 1 waiting, m3
    # (no finished stream yet) has 2 waiting; a stream whose meta is gone counts nowhere.
    for sid, model, status in (("s1", "m1", "running"), ("s2", "m1", "running"),
                               ("s3", "m1", "queued"), ("s4", "m3", "queued"),
                               ("s5", "m3", "queued")):  # fmt: skip
        await rc.hset(keys.meta(sid), mapping={"model": model, "status": status})
    await rc.zadd(keys.active(), {f"s{i}": i for i in range(1, 7)})
    with run_asgi(_app(store_url, keys, settings)) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            res = await c.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(res.text)}
    ttft = fams["vllm:time_to_first_token_seconds"]
    samples = {(s.name, s.labels.get("le")): s.value for s in ttft.samples}
    assert samples[("vllm:time_to_first_token_seconds_count", None)] == 100
    assert samples[("vllm:time_to_first_token_seconds_sum", None)] == pytest.approx(50.5)
    # bins are ≈4 % wide: values up to 0.25 land at or below le=0.25, give or take one bin
    assert 24 <= samples[("vllm:time_to_first_token_seconds_bucket", "0.25")] <= 25
    assert samples[("vllm:time_to_first_token_seconds_bucket", "+Inf")] == 100
    assert all(s.labels["model_name"] == "m1" for s in ttft.samples)
    ours = {s.name: s for s in fams["fakeai_time_to_first_token_seconds"].samples}
    assert ours["fakeai_time_to_first_token_seconds_count"].labels["model"] == "m1"
    req = fams["fakeai_requests"].samples[0]
    assert (req.name, req.value, req.labels) == ("fakeai_requests_total", 100, {"model": "m1"})
    gen = fams["vllm:generation_tokens"].samples[0]
    assert gen.value == 1000
    disc = fams["fakeai_client_disconnects"].samples[0]
    assert (disc.value, disc.labels) == (3, {"model": "m2"})
    gauges = {
        name: {s.labels.get("model_name", s.labels.get("model")): s.value for s in fam.samples}
        for name, fam in fams.items()
        if fam.type == "gauge"
    }
    assert gauges == {
        "vllm:num_requests_running": {"m1": 2, "m2": 0, "m3": 0},
        "fakeai_running_streams": {"m1": 2, "m2": 0, "m3": 0},
        "vllm:num_requests_waiting": {"m1": 1, "m2": 0, "m3": 2},
    }


async def test_prometheus_never_fails_on_odd_data(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    """Regression (the seed's /metrics/prometheus returned 500 once traffic existed)."""
    await r.sadd(keys.ts_models(), "weird|model", "m")
    k = keys.ts_bucket("ttft", "m", "total", 0)
    await r.hset(
        k, mapping={"n": "3", "sum": "nan", "bx": "2", "b12": "oops", "b-50": "7", "z": "1"}
    )
    await r.hset(keys.counters("m"), mapping={"garbage": "1", "requests|": "x", "errors|E": "2"})
    await r.hset(keys.counters("weird|model"), mapping={"|": "1", "cancels|": "y"})
    await r.set(keys.active(), "not a zset")  # ZRANGE fails: no active stream
    text = (await PrometheusRenderer(r, keys, cache_s=0).render()).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    h = {
        s.name: s.value
        for s in fams["fakeai_time_to_first_token_seconds"].samples
        if s.labels.get("le") in (None, "+Inf")
    }
    assert h["fakeai_time_to_first_token_seconds_count"] == 3
    assert math.isnan(h["fakeai_time_to_first_token_seconds_sum"])
    buckets = [
        s.value
        for s in fams["fakeai_time_to_first_token_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert max(buckets) <= 3
    assert fams["fakeai_errors"].samples[0].labels == {"model": "m", "code": "E"}


async def test_vllm_families_carry_the_engine_and_every_finished_reason(
    redis_url: str, keys: Keys, r: aredis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    rec = SampleRecorder(r, keys, settings)
    rec.add("ttft", "m2", 0.1, at=time.time() - 1)  # m2: no request finished yet
    await rec.flush()
    await r.sadd(keys.ts_models(), "m1")
    counters = {
        "success|stop": 3,
        "success|tool_calls": 2,
        "success|length": 1,
        "success|abort": 4,
        "errors|cancelled": 4,  # the cancels: counted as abort already
        "errors|timeout": 5,
    }
    await r.hset(keys.counters("m1"), mapping=counters)
    text = (await PrometheusRenderer(r, keys, cache_s=0).render()).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    success = {
        (s.labels["model_name"], s.labels["finished_reason"]): s.value
        for s in fams["vllm:request_success"].samples
    }
    assert success == {
        ("m1", "stop"): 5,
        ("m1", "length"): 1,
        ("m1", "abort"): 4,
        ("m1", "error"): 5,
        ("m2", "stop"): 0,
        ("m2", "length"): 0,
        ("m2", "abort"): 0,
        ("m2", "error"): 0,
    }
    for name, fam in fams.items():
        if name.startswith("vllm:"):
            assert all(s.labels.get("engine") == "0" for s in fam.samples), name
        else:
            assert all("engine" not in s.labels for s in fam.samples), name


async def test_openmetrics_when_the_scraper_asks(
    redis_url: str, keys: Keys, rc: RedisClient
) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=keys.prefix)
    await _seed(rc, keys, settings)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    with run_asgi(_app(redis_url, keys, settings)) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            om = await c.get("/metrics", headers={"Accept": accept})
            plain = await c.get("/metrics")
    assert om.status_code == 200
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    fams = {f.name: f for f in openmetrics_families(om.text)}
    count = [
        s for s in fams["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_count")
    ]
    assert [s.value for s in count] == [100]
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# EOF" not in plain.text
