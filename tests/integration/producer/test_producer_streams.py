"""The producer against a real Redis: requests in, complete logs, meta and firehose out."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aredis
from tests.integration.producer.conftest import StartProducer
from tests.integration.producer.producerkit import (
    cancel,
    chat_request,
    chat_text,
    completion_request,
    finished_log,
    publish,
)
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.content import build_chat_completion, build_text_completion
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.meta import StreamMeta
from fakeai.wire import decode_done, decode_error, firehose_events

pytestmark = pytest.mark.redis


async def _meta(r: aredis.Redis, keys: Keys, sid: str) -> StreamMeta:
    return StreamMeta.from_hash(await r.hgetall(keys.meta(sid)))


async def _pending(r: aredis.Redis, keys: Keys) -> int:
    info = await r.xpending(keys.requests(), PRODUCERS_GROUP)
    return int(info["pending"])


async def test_chat_stream_is_logged_complete_with_deterministic_ids(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=12)
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
        await eventually(lambda: _acked(r, keys))

    expected = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    # ids <created_ms>-1..n, then the terminal entry
    assert [e.id for e in log] == [f"{req.created_ms}-{i}" for i in range(1, len(log) + 1)]
    assert [e.kind for e in log[:-1]] == ["c"] * (len(log) - 1)
    assert log[-1].kind == "d"
    assert chat_text(log) == expected["choices"][0]["message"]["content"]
    chunks = [e.json() for e in log[:-1]]
    assert all(c["id"] == req.stream_id and c["created"] == req.created_ms // 1000 for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("usage" not in c or c["usage"] is None for c in chunks)  # no include_usage
    done = decode_done(log[-1].data)
    assert done.finish_reason == "length"  # ignore_eos + max_tokens caps the output
    assert done.chunks == len(log) - 1
    assert done.completion_tokens == 12
    meta = await _meta(r, keys, req.stream_id)
    assert meta.status == "done"
    assert meta.chunks == len(log) - 1
    assert meta.finish_reason == "length"
    assert meta.completion_tokens == 12
    assert meta.producer
    assert meta.finished_at
    assert meta.first_chunk_at
    assert await r.zscore(keys.active(), req.stream_id) is None
    # t fields: producer append times in µs, non-decreasing, around now
    ts = [e.t_us for e in log]
    assert ts == sorted(ts)
    assert abs(ts[0] / 1e6 - time.time()) < 30


async def _acked(r: aredis.Redis, keys: Keys) -> bool:
    """Every request read by the group has been acknowledged."""
    return await _pending(r, keys) == 0


async def test_usage_chunk_only_with_include_usage(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    with_usage = chat_request(max_tokens=5, include_usage=True)
    without = chat_request(max_tokens=5)
    async with start_producer():
        await publish(r, keys, with_usage, without)
        log_u = await eventually(lambda: finished_log(r, keys, with_usage.stream_id))
        log_n = await eventually(lambda: finished_log(r, keys, without.stream_id))
    last = log_u[-2].json()
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 5
    assert all(e.json().get("usage") is None for e in log_n[:-1])
    assert len(log_u) == len(log_n) + 1


async def test_max_tokens_gives_finish_reason_length_and_natural_end_stop(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    capped = chat_request(max_tokens=4)
    natural = chat_request(max_tokens=None, ignore_eos=False)
    async with start_producer():
        await publish(r, keys, capped, natural)
        log_c = await eventually(lambda: finished_log(r, keys, capped.stream_id))
        log_n = await eventually(lambda: finished_log(r, keys, natural.stream_id))
    finish_c = [c["finish_reason"] for e in log_c[:-1] for c in e.json()["choices"]]
    assert finish_c[-1] == "length"
    assert set(finish_c[:-1]) == {None}
    assert decode_done(log_c[-1].data).finish_reason == "length"
    assert decode_done(log_n[-1].data).finish_reason == "stop"


async def test_completion_stream_text_equals_the_whole_response(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = completion_request(max_tokens=9)
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
    expected = build_text_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    text = "".join(c["text"] for e in log[:-1] for c in e.json()["choices"])
    assert text == expected["choices"][0]["text"]
    assert all(e.json()["object"] == "text_completion" for e in log[:-1])


async def test_non_streaming_request_gets_one_response_entry_then_done(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=6, stream=False, ttft_ms=100, itl_ms=10)
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
    assert [(e.seq, e.kind) for e in log] == [(1, "r"), (2, "d")]
    expected = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    assert log[0].json() == expected
    # due when the last token would have been: 100 ms + 5 x 10 ms after acceptance
    assert log[0].t_us / 1e6 - req.accepted_at >= 0.14


async def test_timing_overrides_show_in_append_times(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=8, ttft_ms=200, itl_ms=30)
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
    content = [e for e in log if e.kind == "c"]
    first = content[0].t_us / 1e6 - req.accepted_at
    assert 0.19 <= first < 1.5, first
    gaps = [(b.t_us - a.t_us) / 1e6 for a, b in itertools.pairwise(content[:8])]
    assert all(g >= 0.02 for g in gaps), gaps
    total = content[7].t_us / 1e6 - req.accepted_at
    assert 0.2 + 7 * 0.03 - 0.01 <= total < 2.5, total


async def test_latency_simulation_off_streams_at_once(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=20, ttft_ms=None, itl_ms=None)
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
    assert (log[-1].t_us - log[0].t_us) / 1e6 < 1.0
    assert len(log) == 20 + 2  # 20 content chunks, the finish chunk, the terminal


async def test_cancel_mid_stream_ends_with_cancelled_entry_promptly(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=400, ttft_ms=0, itl_ms=50)
    async with start_producer():
        await publish(r, keys, req)
        await eventually(lambda: _has_chunks(r, keys, req.stream_id, 3))
        sent = time.time()
        await cancel(r, keys, req.stream_id)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id), timeout_s=3)
        await eventually(lambda: _acked(r, keys))
    assert log[-1].kind == "e"
    assert decode_error(log[-1].data).error.code == "cancelled"
    assert log[-1].t_us / 1e6 - sent < 1.0
    assert len(log) < 100
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    meta = await _meta(r, keys, req.stream_id)
    assert meta.status == "cancelled"
    assert meta.error_code == "cancelled"


async def _has_chunks(r: aredis.Redis, keys: Keys, sid: str, n: int) -> bool:
    return bool(await r.xlen(keys.chunks(sid)) >= n)


async def test_cancel_before_start_is_seen_in_meta(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=10)
    await r.hset(keys.meta(req.stream_id), "cancel_requested", "1")
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
    assert [(e.seq, e.kind) for e in log] == [(1, "e")]
    assert decode_error(log[0].data).error.code == "cancelled"


async def test_bad_request_body_ends_with_generation_error(
    r: aredis.Redis, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(n=0)
    async with start_producer():
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
        await eventually(lambda: _acked(r, keys))
    assert [e.kind for e in log] == ["e"]
    assert decode_error(log[0].data).error.code == "generation_error"
    assert (await _meta(r, keys, req.stream_id)).status == "error"


async def test_retention_sets_expire_or_persists(
    r: aredis.Redis,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
) -> None:
    default = chat_request(max_tokens=3)
    forever = chat_request(max_tokens=3, retention_s=0)
    async with start_producer(make_settings(retention_s=120)):
        await publish(r, keys, default, forever)
        await eventually(lambda: finished_log(r, keys, default.stream_id))
        await eventually(lambda: finished_log(r, keys, forever.stream_id))
        await eventually(lambda: _acked(r, keys))
    for key in (keys.chunks(default.stream_id), keys.meta(default.stream_id)):
        assert 0 < await r.ttl(key) <= 120
    for key in (keys.chunks(forever.stream_id), keys.meta(forever.stream_id)):
        assert await r.ttl(key) == -1


async def test_firehose_gets_every_entry_and_is_trimmed_by_age(
    r: aredis.Redis,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(firehose_partitions=1, firehose_retention_s=60)
    part = keys.events(0)
    old = r.pipeline(transaction=False)
    for i in range(1, 301):
        old.xadd(part, {"f": b"old"}, id=f"1000-{i}")
    await old.execute()
    req = chat_request(max_tokens=6)
    async with start_producer(settings):
        await publish(r, keys, req)
        log = await eventually(lambda: finished_log(r, keys, req.stream_id))
        await eventually(lambda: _acked(r, keys))
    rows = await r.xrange(part)
    events = [e for _, f in rows if f.get(b"f") != b"old" for e in firehose_events(f)]
    assert [e.entry_id for e in events] == [e.id for e in log]
    assert [e.kind for e in events] == [e.kind for e in log]
    assert all(e.stream_id == req.stream_id and e.model == "gpt-4o" for e in events)
    assert events[-1].tokens == 6
    assert sum(e.tokens for e in events[:-1]) == 6
    old_left = sum(1 for _, f in rows if f.get(b"f") == b"old")
    assert old_left < 300  # MINID ~ dropped the old nodes (approximate: whole nodes only)
