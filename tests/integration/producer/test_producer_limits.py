"""The producer cannot be taken down by a request: caps, bounded work, bounded duration.

Regressions of issue 10: finding 1 (a poison request, ``max_tokens: 1000000000`` with TTFT/ITL
0, blocked every producer that took it, forever) and finding 2 (timing overrides of 1e12 ms
held a producer slot for the one-hour stream timeout).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import BOTH
from tests.integration.producer.conftest import StartProducer
from tests.integration.producer.producerkit import (
    acked,
    chat_request,
    chat_text,
    finished_log,
    publish,
)
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.content import build_chat_completion
from fakeai.limits import MAX_STOP_SEQUENCES, refusal
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.meta import StreamMeta
from fakeai.wire import GenerationRequest, decode_done, decode_error

pytestmark = pytest.mark.redis

CAPS = Settings(max_output_tokens=1000, max_choices=4, max_timing_ms=5000.0)


def _completion(**body: Any) -> GenerationRequest:
    req = chat_request()
    return GenerationRequest(
        stream_id=req.stream_id.replace("chatcmpl", "cmpl"),
        endpoint="completion",
        model="gpt-4o",
        created_ms=req.created_ms,
        accepted_at=req.accepted_at,
        body={"model": "gpt-4o", "prompt": "Once", **body},
    )


@pytest.mark.parametrize(
    ("request_", "param", "names"),
    [
        (chat_request(max_tokens=1_000_000_000), "max_tokens", "max_output_tokens"),
        (chat_request(max_completion_tokens=1001), "max_completion_tokens", "max_output_tokens"),
        (chat_request(max_tokens=10, min_tokens=10**9), "min_tokens", "max_output_tokens"),
        (chat_request(n=5), "n", "max_choices"),
        (chat_request(ttft_ms=1e12), "X-FakeAI-TTFT-Ms", "max_timing_ms"),
        (chat_request(itl_ms=1e300), "X-FakeAI-ITL-Ms", "max_timing_ms"),
        (chat_request(itl_ms=math.inf), "X-FakeAI-ITL-Ms", "finite"),
        (chat_request(ttft_ms=-1.0), "X-FakeAI-TTFT-Ms", ">= 0"),
        (_completion(prompt=["a"] * 5000), "prompt", "max_choices x max_output_tokens"),
        (chat_request(stop=["x"] * (MAX_STOP_SEQUENCES + 1)), "stop", "at most"),
    ],
)
def test_refusal_names_the_cap(request_: GenerationRequest, param: str, names: str) -> None:
    refused = refusal(request_, CAPS)
    assert refused is not None
    assert refused.param == param
    assert names in refused.message


@pytest.mark.parametrize(
    "request_",
    [
        chat_request(max_tokens=1000, n=4, ttft_ms=5000.0, itl_ms=0.0),
        chat_request(max_tokens=None, ttft_ms=None, itl_ms=None),
        _completion(prompt=["a", "b"], n=2, max_tokens=1000),
        _completion(prompt=[1, 2, 3] * 1000, max_tokens=10),  # token ids: one prompt
    ],
)
def test_requests_within_the_caps_are_not_refused(request_: GenerationRequest) -> None:
    assert refusal(request_, CAPS) is None


@BOTH
async def test_poison_request_is_refused_without_stalling_a_concurrent_stream(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    """The request of finding 1 ends at once with ``invalid_request`` naming the cap; a normal
    stream on the same producer finishes, and so does one published after it."""
    normal = chat_request(max_tokens=20, ttft_ms=0, itl_ms=50)  # ~1 s
    poison = chat_request(max_tokens=1_000_000_000, ttft_ms=0, itl_ms=0)
    after = chat_request(max_tokens=5)
    async with start_producer() as p:
        await publish(rc, keys, normal, poison)
        refused = await eventually(lambda: finished_log(rc, keys, poison.stream_id))
        done = await eventually(lambda: finished_log(rc, keys, normal.stream_id), timeout_s=15)
        await publish(rc, keys, after)
        await eventually(lambda: finished_log(rc, keys, after.stream_id))
        await eventually(lambda: acked(rc, keys))
        assert not p.runs
    assert [e.kind for e in refused] == ["e"]
    error = decode_error(refused[0].data).error
    assert (error.code, error.type, error.param) == (
        "invalid_request",
        "invalid_request_error",
        "max_tokens",
    )
    assert "max_output_tokens" in error.message
    assert (await _meta(rc, keys, poison.stream_id)).status == "error"
    assert done[-1].kind == "d"
    assert chat_text(done) == _text(normal)


async def test_request_at_the_caps_streams_without_stalling_a_concurrent_stream(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
) -> None:
    """The largest request the caps allow, at TTFT/ITL 0, is served whole (built in a worker
    thread, its chunks with turns for the loop), and a paced stream beside it finishes; the
    worst lag of the producer's loop is printed."""
    settings = make_settings(max_output_tokens=6000, max_choices=4)
    big = chat_request(max_tokens=6000, n=4, ttft_ms=0, itl_ms=0)
    normal = chat_request(max_tokens=20, ttft_ms=0, itl_ms=50)
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)

    async with start_producer(settings):
        prober = asyncio.create_task(probe())
        await publish(rc, keys, big, normal)
        done = await eventually(lambda: finished_log(rc, keys, normal.stream_id), timeout_s=20)
        # the meta, not the log: reading 24,000 entries per poll would stall this loop too
        await eventually(lambda: _ended(rc, keys, big.stream_id), timeout_s=60, interval_s=0.05)
        stop.set()
        await prober
    log = await finished_log(rc, keys, big.stream_id)
    assert log is not None
    print(f"producer loop: worst lag {max(lags) * 1000:.1f} ms over {len(lags)} probes")
    assert done[-1].kind == "d"
    assert chat_text(done) == _text(normal)
    assert log[-1].kind == "d"
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert decode_done(log[-1].data).completion_tokens == 4 * 6000
    assert len(log) == 4 * 6000 + 4 + 1  # a chunk per token, a finish chunk per choice, done


async def test_json_schema_asking_for_a_billion_items_is_bounded(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    """A schema is client input: ``minItems: 1000000000`` made a billion values before any
    chunk. The values are bounded (``fakeai.content.prose.MAX_SCHEMA_VALUES``), the stream is
    cut at ``max_tokens`` as usual."""
    schema = {"type": "array", "minItems": 1_000_000_000, "items": {"type": "string"}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    req = chat_request(max_tokens=50, response_format=fmt)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id), timeout_s=15)
    assert log[-1].kind == "d"
    assert decode_done(log[-1].data).completion_tokens == 50


@pytest.mark.parametrize("stream", [True, False])
async def test_stream_running_past_max_stream_s_ends_with_timeout(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
    stream: bool,
) -> None:
    """Regression (finding 2): the one-hour stream timeout let a stream of 1e12 ms ITL hold a
    slot for an hour. The invariant: ``max_stream_s`` bounds every stream, streaming or not,
    counted from the request's arrival."""
    settings = make_settings(max_stream_s=1.0)
    req = chat_request(max_tokens=100, ttft_ms=0, itl_ms=100, stream=stream)  # 10 s
    async with start_producer(settings):
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
        await eventually(lambda: acked(rc, keys))
    assert log[-1].kind == "e"
    error = decode_error(log[-1].data).error
    assert error.code == "timeout"
    assert "max_stream_s" in error.message
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert len(log) < 100  # cut short
    assert (await _meta(rc, keys, req.stream_id)).status == "error"


async def _ended(rc: RedisClient, keys: Keys, sid: str) -> bool:
    return (await _meta(rc, keys, sid)).status in ("done", "error")


async def _meta(rc: RedisClient, keys: Keys, sid: str) -> StreamMeta:
    return StreamMeta.from_hash(await rc.hgetall(keys.meta(sid)))


def _text(req: GenerationRequest) -> str:
    full = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    return str(full["choices"][0]["message"]["content"])
