"""Producer, firehose and metrics consumer together, checked against the streams' own logs.

A known set of streams (completed, length-capped, cancelled, failed by timeout with its client
gone) runs through a real producer, edge and metrics consumer; then every ``/metrics`` family
the README lists is compared with what the logs and meta hashes in Redis say happened: counts
and sums of every histogram, every bucket of the exact per-request histograms, every counter
and gauge. A Responses stream's TTFT and ITL count only entries that carry tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import StartStack
from tests.support.servers import eventually

from fakeai.streams import Keys
from fakeai.streams.log import Kind, parse_entry
from fakeai.timeseries.histograms import E2E_BUCKETS, N_BUCKETS, TOKEN_BUCKETS

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

MODEL = "gpt-4o"
_FAST = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}
_SLOW = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "200"}
_EDGE_TTFT = "fakeai_edge_time_to_first_token_seconds"


def _chat(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me about durable streams."}],
        "max_tokens": max_tokens,
        "stream": True,
        **extra,
    }


async def _run(
    c: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], *, then: str = "read"
) -> str:
    """One streamed chat; ``then``: ``read`` to the end, ``cancel`` it after its first chunk
    (and read to the end), or ``leave`` after the first chunk. Returns the stream id."""
    async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status_code == 200
        sid = resp.headers["x-stream-id"]
        async for line in resp.aiter_lines():
            if line.startswith("data: {") and then == "cancel":
                res = await c.post(f"/v1/streams/{sid}/cancel")
                assert res.json()["cancel_requested"] is True
                then = "read"
            elif line.startswith("data: {") and then == "leave":
                break
    return sid


@dataclass(frozen=True)
class _Truth:
    """One stream, as its meta hash and log tell (microseconds)."""

    accepted: int
    started: int
    tokens_at: list[int]
    """Append times of the log entries whose chunk carries text."""
    terminal: int
    prompt_tokens: int
    completion_tokens: int
    status: str
    finish_reason: str

    @property
    def first(self) -> int:
        return self.tokens_at[0]

    @property
    def last(self) -> int:
        return self.tokens_at[-1]


def _has_text(data: bytes) -> bool:
    chunk = msgspec.json.decode(data)
    return any((ch.get("delta") or {}).get("content") for ch in chunk["choices"])


def _truth(store: Any, keys: Keys, sid: str) -> _Truth:
    meta = {k.decode(): v.decode() for k, v in store.hgetall(keys.meta(sid)).items()}
    log = [parse_entry(i, f) for i, f in store.xrange(keys.chunks(sid))]
    assert log[-1].terminal
    return _Truth(
        accepted=int(float(meta["accepted_at"]) * 1_000_000),  # as the producer's records do
        started=round(float(meta["started_at"]) * 1_000_000),
        tokens_at=[e.t_us for e in log if e.kind == Kind.CHUNK and _has_text(e.data)],
        terminal=log[-1].t_us,
        prompt_tokens=int(meta["prompt_tokens"]),
        completion_tokens=int(meta["completion_tokens"]),
        status=meta["status"],
        finish_reason=meta.get("finish_reason", ""),
    )


def _samples(fams: dict[str, Any], name: str) -> dict[tuple[str, str | None], float]:
    """``{(sample name, le): value}`` of one family's ``gpt-4o`` samples."""
    return {
        (s.name, s.labels.get("le")): s.value
        for s in fams[name].samples
        if s.labels.get("model_name", s.labels.get("model")) == MODEL
    }


def _check_histogram(
    fams: dict[str, Any],
    name: str,
    values: list[float],
    bounds: tuple[float, ...] | None = None,
) -> None:
    """Count and sum (to the microsecond); with ``bounds``, every bucket exactly."""
    got = _samples(fams, name)
    assert got[(f"{name}_count", None)] == len(values), name
    assert got[(f"{name}_sum", None)] == pytest.approx(sum(values), abs=1e-6 * len(values)), name
    if bounds is None:
        return
    for b in bounds:
        expected = sum(v <= b for v in values)
        assert got[(f"{name}_bucket", repr(float(b)))] == expected, (name, b)
    assert got[(f"{name}_bucket", "+Inf")] == len(values), name


def _value(fams: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of a family's ``gpt-4o`` samples that carry ``labels``."""
    return sum(
        s.value
        for s in fams[name].samples
        if s.labels.get("model_name", s.labels.get("model")) == MODEL
        and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_every_metrics_family_matches_the_streams(
    start_stack: StartStack, key_prefix: str, store: Any
) -> None:
    keys = Keys(key_prefix)
    with start_stack(metrics=True, max_stream_s=2.0) as stack:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as c:
            done = await _run(c, _chat(1000, n=2), _FAST)
            capped = await _run(c, _chat(4, ignore_eos=True), _FAST)
            cancelled = await _run(c, _chat(100, ignore_eos=True), _SLOW, then="cancel")
            failed = await _run(c, _chat(100, ignore_eos=True), _SLOW, then="leave")
            sids = [done, capped, cancelled, failed]

            async def scraped() -> dict[str, Any] | None:
                text = (await c.get("/metrics")).text
                fams = {f.name: f for f in text_string_to_metric_families(text)}
                finished = _value(fams, "vllm:request_success")
                edge = _samples(fams, _EDGE_TTFT).get((f"{_EDGE_TTFT}_count", None))
                disconnects = _value(fams, "fakeai_client_disconnects")
                # Every stream folded by the consumer, the edge's samples flushed.
                return fams if (finished, disconnects, edge) == (4, 1, 4) else None

            fams = await eventually(scraped, timeout_s=30)
    truths = [_truth(store, keys, sid) for sid in sids]
    t_done, t_capped, t_cancelled, t_failed = truths
    assert (t_done.status, t_done.finish_reason) == ("done", "stop")
    assert (t_capped.status, t_capped.finish_reason) == ("done", "length")
    assert t_cancelled.status == "cancelled"
    assert t_failed.status == "error"
    assert all(t.tokens_at for t in truths), "every stream produced a token"

    s = 1e-6
    # Latency histograms of the consumer (log-bin buckets: count and sum exact).
    for prefix in ("fakeai_", "vllm:"):
        _check_histogram(fams, f"{prefix}time_to_first_token_seconds",
                         [(t.first - t.accepted) * s for t in truths])  # fmt: skip
        _check_histogram(fams, f"{prefix}e2e_request_latency_seconds",
                         [(t.terminal - t.accepted) * s for t in truths])  # fmt: skip
    itl = [(b - a) * s for t in truths for a, b in zip(t.tokens_at, t.tokens_at[1:], strict=False)]
    _check_histogram(fams, "fakeai_inter_token_latency_seconds", itl)
    _check_histogram(fams, "vllm:inter_token_latency_seconds", itl)
    tpot = [
        (t.last - t.first) * s / (t.completion_tokens - 1)
        for t in truths
        if t.completion_tokens > 1 and t.last > t.first
    ]
    _check_histogram(fams, "vllm:request_time_per_output_token_seconds", tpot)
    # Exact per-request histograms: every bucket.
    exact = {
        "vllm:request_queue_time_seconds": [(t.started - t.accepted) * s for t in truths],
        "vllm:request_prefill_time_seconds": [(t.first - t.started) * s for t in truths],
        "vllm:request_decode_time_seconds": [(t.last - t.first) * s for t in truths],
        "vllm:request_inference_time_seconds": [(t.last - t.started) * s for t in truths],
    }
    for name, values in exact.items():
        _check_histogram(fams, name, values, E2E_BUCKETS)
    prompt = [float(t.prompt_tokens) for t in truths]
    generation = [float(t.completion_tokens) for t in truths]
    _check_histogram(fams, "vllm:request_prompt_tokens", prompt, TOKEN_BUCKETS)
    _check_histogram(fams, "vllm:request_generation_tokens", generation, TOKEN_BUCKETS)
    _check_histogram(fams, "vllm:request_params_n", [2.0, 1.0, 1.0, 1.0], N_BUCKETS)
    _check_histogram(fams, "vllm:request_params_max_tokens", [1000.0, 4.0, 100.0, 100.0],
                     TOKEN_BUCKETS)  # fmt: skip
    # Edge samples: one edge TTFT per client that got a token; a lag sample per write.
    assert _samples(fams, _EDGE_TTFT)[(f"{_EDGE_TTFT}_count", None)] == 4
    lag = _samples(fams, "fakeai_pipeline_lag_seconds")
    assert lag[("fakeai_pipeline_lag_seconds_count", None)] >= 4
    # Counters.
    assert _value(fams, "fakeai_requests") == 4
    assert _value(fams, "fakeai_output_tokens") == sum(generation)
    assert _value(fams, "vllm:generation_tokens") == sum(generation)
    assert _value(fams, "vllm:prompt_tokens") == sum(prompt)
    assert _value(fams, "fakeai_cancels") == 1
    errors = {s.labels["code"]: s.value for s in fams["fakeai_errors"].samples}
    assert errors == {"cancelled": 1, "timeout": 1}
    assert _value(fams, "fakeai_client_disconnects") == 1
    assert fams["fakeai_invalid_events"].samples == []
    success = {
        s.labels["finished_reason"]: s.value
        for s in fams["vllm:request_success"].samples
        if s.labels["model_name"] == MODEL
    }
    assert success == {"stop": 1, "length": 1, "abort": 1, "error": 1}
    # Gauges: per model, nothing left running or waiting.
    for name in (
        "fakeai_running_streams",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
    ):
        assert _samples(fams, name) == {(name, None): 0}, name


async def test_responses_ttft_and_itl_count_only_entries_with_tokens(
    start_stack: StartStack,
) -> None:
    """A Responses stream's first events (``response.created``, ``in_progress``, the item and
    part openings) are due at acceptance with no tokens: TTFT waits for the first delta, and
    ITL has one sample per pair of consecutive deltas."""
    body = {"model": MODEL, "input": "Say something.", "stream": True, "max_output_tokens": 24}
    headers = {"X-FakeAI-TTFT-Ms": "300", "X-FakeAI-ITL-Ms": "20"}
    with start_stack(metrics=True) as stack:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as c:
            output_tokens = None
            async with c.stream("POST", "/v1/responses", json=body, headers=headers) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = msgspec.json.decode(line[6:])
                    if event["type"] in ("response.completed", "response.incomplete"):
                        output_tokens = event["response"]["usage"]["output_tokens"]
            assert output_tokens is not None
            assert output_tokens > 1

            async def latency() -> dict[str, Any] | None:
                res = await c.get("/v1/metrics/latency", params={"model": MODEL})
                got: dict[str, Any] = res.json()["models"].get(MODEL, {})
                return got if got.get("ttft", {}).get("count") == 1 else None

            got = await eventually(latency, timeout_s=20)
    assert got["ttft"]["min"] >= 0.295  # the first delta, not response.created
    assert got["itl"]["count"] == output_tokens - 1
