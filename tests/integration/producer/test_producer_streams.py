"""The producer against a real Redis: requests in, complete logs, meta and firehose out."""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Awaitable, Callable

import pytest
from tests.conftest import BOTH
from tests.integration.producer.conftest import StartProducer
from tests.integration.producer.producerkit import (
    acked,
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
from fakeai.services.producer.service import Producer
from fakeai.streams import Keys
from fakeai.streams.client import LayoutMismatch, RedisClient
from fakeai.streams.log.firehose import firehose_events
from fakeai.streams.meta import StreamMeta
from fakeai.timing import Ticker
from fakeai.wire import decode_done, decode_error, encode

pytestmark = pytest.mark.redis


async def _meta(rc: RedisClient, keys: Keys, sid: str) -> StreamMeta:
    return StreamMeta.from_hash(await rc.hgetall(keys.meta(sid)))


@BOTH
async def test_chat_stream_is_logged_complete_with_deterministic_ids(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=12)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
        await eventually(lambda: acked(rc, keys))

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
    meta = await _meta(rc, keys, req.stream_id)
    assert meta.status == "done"
    assert meta.chunks == len(log) - 1
    assert meta.finish_reason == "length"
    assert meta.completion_tokens == 12
    assert meta.producer
    assert meta.finished_at
    assert meta.first_chunk_at
    assert await rc.zscore(keys.active(), req.stream_id) is None
    # t fields: producer append times in µs, non-decreasing, between acceptance and now
    ts = [e.t_us for e in log]
    assert ts == sorted(ts)
    assert req.accepted_at <= ts[0] / 1e6 <= ts[-1] / 1e6 <= time.time()


@BOTH
async def test_usage_chunk_only_with_include_usage(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    with_usage = chat_request(max_tokens=5, include_usage=True)
    without = chat_request(max_tokens=5)
    async with start_producer():
        await publish(rc, keys, with_usage, without)
        log_u = await eventually(lambda: finished_log(rc, keys, with_usage.stream_id))
        log_n = await eventually(lambda: finished_log(rc, keys, without.stream_id))
    last = log_u[-2].json()
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 5
    assert all(e.json().get("usage") is None for e in log_n[:-1])
    assert len(log_u) == len(log_n) + 1


async def test_max_tokens_gives_finish_reason_length_and_natural_end_stop(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    capped = chat_request(max_tokens=4)
    natural = chat_request(max_tokens=None, ignore_eos=False)
    async with start_producer():
        await publish(rc, keys, capped, natural)
        log_c = await eventually(lambda: finished_log(rc, keys, capped.stream_id))
        log_n = await eventually(lambda: finished_log(rc, keys, natural.stream_id))
    finish_c = [c["finish_reason"] for e in log_c[:-1] for c in e.json()["choices"]]
    assert finish_c[-1] == "length"
    assert set(finish_c[:-1]) == {None}
    assert decode_done(log_c[-1].data).finish_reason == "length"
    assert decode_done(log_n[-1].data).finish_reason == "stop"


async def test_completion_stream_text_equals_the_whole_response(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    req = completion_request(max_tokens=9)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    expected = build_text_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    text = "".join(c["text"] for e in log[:-1] for c in e.json()["choices"])
    assert text == expected["choices"][0]["text"]
    assert all(e.json()["object"] == "text_completion" for e in log[:-1])


async def test_non_streaming_request_gets_one_response_entry_then_done(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=6, stream=False, ttft_ms=100, itl_ms=10)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    assert [(e.seq, e.kind) for e in log] == [(1, "r"), (2, "d")]
    expected = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    assert log[0].json() == expected
    # due when the last token would have been: 100 ms + 5 x 10 ms after acceptance
    assert log[0].t_us / 1e6 - req.accepted_at >= 0.14


async def test_timing_overrides_show_in_append_times(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=8, ttft_ms=400, itl_ms=30)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    content = [e for e in log if e.kind == "c"]
    at = [e.t_us / 1e6 - req.accepted_at for e in content[:8]]
    # Never early: token k is due 400 ms + k x 30 ms after acceptance. (Not "never late": a
    # loaded machine delays any append by any amount.)
    assert all(t >= 0.4 + k * 0.03 - 0.01 for k, t in enumerate(at)), at
    # Paced by the ITL, not the TTFT: after a stall the overdue tokens go out at once, so the
    # median gap stays near 30 ms on a loaded machine; a TTFT per token would make it 400 ms.
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert statistics.median(gaps) < 0.2, gaps


async def test_latency_simulation_off_streams_at_once(
    rc: RedisClient, keys: Keys, start_producer: StartProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At once means not one token waits for a deadline: counted where every paced stream
    waits (the loop's shared ticker), not timed, since a loaded machine slows the writes too."""
    waits: list[float] = []
    wait = Ticker.wait

    def counted(ticker: Ticker, deadline: float) -> Awaitable[None]:
        waits.append(deadline)
        return wait(ticker, deadline)

    monkeypatch.setattr(Ticker, "wait", counted)
    req = chat_request(max_tokens=20, ttft_ms=None, itl_ms=None)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    assert len(log) == 20 + 2  # 20 content chunks, the finish chunk, the terminal
    assert waits == []


async def test_a_coarse_tick_wakes_paced_streams_together_on_its_multiples(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FAKEAI_PRODUCER_TICK_MS 25 with tokens 5 ms apart: every wake-up falls on a multiple of
    25 ms of the loop's clock, about five tokens to a wake-up, and the stream is whole."""
    buckets: set[int] = set()
    wait = Ticker.wait

    def recorded(ticker: Ticker, deadline: float) -> Awaitable[None]:
        fut = wait(ticker, deadline)
        buckets.update(ticker._buckets)
        return fut

    monkeypatch.setattr(Ticker, "wait", recorded)
    tokens = 60
    req = chat_request(max_tokens=tokens, ttft_ms=0, itl_ms=5)
    async with start_producer(make_settings(producer_tick_ms=25)):
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    assert len(log) == tokens + 2
    assert buckets
    assert all(b % 25 == 0 for b in buckets), sorted(buckets)
    assert len(buckets) <= tokens * 5 / 25 + 2, sorted(buckets)
    expected = build_chat_completion(
        req.body, completion_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    )
    assert chat_text(log) == expected["choices"][0]["message"]["content"]


async def test_a_stream_that_completes_logs_at_debug_one_that_does_not_at_info(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hundreds of streams a second must not mean hundreds of INFO lines: a stream's start and
    its completion are DEBUG; an end that is not a completion (here a cap refused) is INFO."""
    fine = chat_request(max_tokens=3)
    refused = chat_request(max_tokens=2000)  # beyond max_output_tokens
    caplog.set_level(logging.INFO, logger="fakeai.services.producer")
    async with start_producer(make_settings(max_output_tokens=1000)):
        for req in (fine, refused):
            await publish(rc, keys, req)
        for req in (fine, refused):
            await eventually(lambda r=req: finished_log(rc, keys, r.stream_id))
    told = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [m for m in told if fine.stream_id in m], told
    assert [m for m in told if refused.stream_id in m and "invalid_request" in m], told


@BOTH
async def test_cancel_mid_stream_ends_with_cancelled_entry_promptly(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    tokens = 400  # 20 s at 50 ms
    req = chat_request(max_tokens=tokens, ttft_ms=0, itl_ms=50)
    async with start_producer():
        await publish(rc, keys, req)
        await eventually(lambda: _has_chunks(rc, keys, req.stream_id, 3))
        await cancel(rc, keys, req.stream_id)
        before = await rc.xlen(keys.chunks(req.stream_id))  # once the signal is in Redis
        # Past the natural end: an ignored cancel shows as a "d" entry, not as a slow poll.
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id), timeout_s=30)
        await eventually(lambda: acked(rc, keys))
    assert log[-1].kind == "e"
    assert decode_error(log[-1].data).error.code == "cancelled"
    # Promptly, counted in chunks rather than timed: fewer than a quarter of what was left when
    # the cancel was sent went out after it (~5 s of the stream: far more than load delays it).
    after = len(log) - 1 - before
    assert after < (tokens - before) / 4, (before, after)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    meta = await _meta(rc, keys, req.stream_id)
    assert meta.status == "cancelled"
    assert meta.error_code == "cancelled"


async def _has_chunks(rc: RedisClient, keys: Keys, sid: str, n: int) -> bool:
    return bool(await rc.xlen(keys.chunks(sid)) >= n)


async def test_cancel_before_start_is_seen_in_meta(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(max_tokens=10)
    await rc.hset(keys.meta(req.stream_id), "cancel_requested", "1")
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    assert [(e.seq, e.kind) for e in log] == [(1, "e")]
    assert decode_error(log[0].data).error.code == "cancelled"


async def test_bad_request_body_ends_with_invalid_request_naming_the_field(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    req = chat_request(n=0)
    async with start_producer():
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
        await eventually(lambda: acked(rc, keys))
    assert [e.kind for e in log] == ["e"]
    error = decode_error(log[0].data).error
    assert (error.code, error.type, error.param) == (
        "invalid_request",
        "invalid_request_error",
        "n",
    )
    assert (await _meta(rc, keys, req.stream_id)).status == "error"


async def test_retention_sets_expire_or_persists(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
) -> None:
    default = chat_request(max_tokens=3)
    forever = chat_request(max_tokens=3, retention_s=0)
    async with start_producer(make_settings(retention_s=120)):
        await publish(rc, keys, default, forever)
        await eventually(lambda: finished_log(rc, keys, default.stream_id))
        await eventually(lambda: finished_log(rc, keys, forever.stream_id))
        await eventually(lambda: acked(rc, keys))
    for key in (keys.chunks(default.stream_id), keys.meta(default.stream_id)):
        assert 0 < await rc.ttl(key) <= 120
    for key in (keys.chunks(forever.stream_id), keys.meta(forever.stream_id)):
        assert await rc.ttl(key) == -1


@BOTH
async def test_firehose_gets_every_entry_and_is_trimmed_by_age(
    rc: RedisClient,
    keys: Keys,
    start_producer: StartProducer,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(firehose_partitions=1, firehose_retention_s=60)
    part = keys.events(0)
    old = rc.pipeline(transaction=False)
    for i in range(1, 301):
        old.xadd(part, {"f": b"old"}, id=f"1000-{i}")
    await old.execute()
    req = chat_request(max_tokens=6)
    async with start_producer(settings):
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
        await eventually(lambda: acked(rc, keys))
    rows = await rc.xrange(part)
    events = [e for _, f in rows if f.get(b"f") != b"old" for e in firehose_events(f)]
    assert [e.entry_id for e in events] == [e.id for e in log]
    assert [e.kind for e in events] == [e.kind for e in log]
    assert all(e.stream_id == req.stream_id and e.model == "gpt-4o" for e in events)
    assert events[-1].tokens == 6
    assert sum(e.tokens for e in events[:-1]) == 6
    old_left = sum(1 for _, f in rows if f.get(b"f") == b"old")
    assert old_left < 300  # MINID ~ dropped the old nodes (approximate: whole nodes only)


async def test_cancel_listener_reconnects_after_its_connection_is_killed(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    async with start_producer():
        listening = await eventually(lambda: _blocked_xreads(rc))
        for client_id in listening:  # as a server restart or a failover would cut it
            await rc.client_kill_filter(_id=client_id)
        req = chat_request(max_tokens=400, ttft_ms=0, itl_ms=50)
        await publish(rc, keys, req)
        await eventually(lambda: _has_chunks(rc, keys, req.stream_id, 3))
        await cancel(rc, keys, req.stream_id)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    assert decode_error(log[-1].data).error.code == "cancelled"


async def _blocked_xreads(rc: RedisClient) -> list[str]:
    """Ids of the connections blocked in an XREAD (the cancel listener's)."""
    clients = await rc.client_list()
    return [c["id"] for c in clients if c.get("cmd") == "xread" and "b" in c.get("flags", "")]


@BOTH
async def test_producer_refuses_data_of_key_layout_1_with_a_message_naming_the_fix(
    rc: RedisClient, keys: Keys, make_settings: Callable[..., Settings]
) -> None:
    await rc.xadd(keys.layout1_markers()[0], {"r": b"old"})  # layout 1's requests stream
    with pytest.raises(LayoutMismatch, match="FAKEAI_KEY_PREFIX"):
        await Producer.create(make_settings())


@BOTH
async def test_requests_published_before_the_producer_starts_are_served_at_once(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    """Regression: a batch read before the intake accepted stayed pending until a producer
    took it over after its idle time (reclaim_idle_s, 30 s here): a backlog at start waited."""
    reqs = [chat_request(max_tokens=3) for _ in range(8)]  # every partition, near certainly
    for req in reqs:
        await publish(rc, keys, req)
    async with start_producer(reclaim_idle_s=30.0):
        for req in reqs:
            assert await eventually(lambda r=req: finished_log(rc, keys, r.stream_id))


async def test_cancel_signal_seen_before_the_request_cancels_it(
    rc: RedisClient, keys: Keys, start_producer: StartProducer
) -> None:
    """The edge writes the meta flag and the signal at once: the producer may read the
    request after the signal and the flag before it is set. Here the flag never comes."""
    req = chat_request(max_tokens=400, ttft_ms=0, itl_ms=50)
    async with start_producer() as producer:
        signal_id = await rc.xadd(
            keys.cancels(), {"c": encode({"stream_id": req.stream_id, "reason": "test"})}
        )

        async def signal_read() -> bool:
            return producer.cancels.last_id == signal_id

        await eventually(signal_read)
        await publish(rc, keys, req)
        log = await eventually(lambda: finished_log(rc, keys, req.stream_id))
    assert [(e.seq, e.kind) for e in log] == [(1, "e")]
    assert decode_error(log[0].data).error.code == "cancelled"
