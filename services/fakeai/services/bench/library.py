"""In-process benchmark of the streaming library: CPU per chunk and timing accuracy.

Run ``python -m fakeai.services.bench.library [--json]``. It prints figures, it passes or
fails nothing:

1. **overhead**: ``StreamManager.create_stream(CHAT, ...)`` over long responses (default 20
   streams x 1000 tokens) with latency simulation off, metrics trackers attached and every
   chunk formatted with ``SSEFormatter.format``: CPU microseconds per chunk
   (``time.process_time``; target < 20 µs) and chunks per second.
2. **timing**: a 500-token stream at a fixed 15 ms TTFT and ITL (overrides, so no jitter):
   per chunk ``|actual - scheduled|`` median and p99 and the drift of the last chunk (targets:
   p99 < 3 ms, drift < 5 ms); then 100 such streams at once. The schedule is
   ``origin + TTFT + k * ITL`` on the event loop's clock (:mod:`fakeai.timing`).
3. **plan**: ``LatencyProfileManager.plan`` for a 1000-token stream, µs per call.

uvloop is used when installed; the report names the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fakeai.latency_profiles import LatencyProfileManager
from fakeai.metrics import MetricsTracker, summarize
from fakeai.streaming.base import StreamChunk, StreamContext, StreamType
from fakeai.streaming.manager import StreamManager
from fakeai.streaming.sse import SSEFormatter
from fakeai.streaming_metrics import StreamingMetricsTracker

__all__ = ["main", "run"]

MODEL = "gpt-4o"
ENDPOINT = "/v1/chat/completions"


def chat_response(tokens: int, tag: str) -> dict[str, Any]:
    """A full ``chat.completion`` whose content is ``tokens`` tokenizer pieces."""
    return {
        "id": f"chatcmpl-{tag}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " word" * tokens},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": tokens + 10},
    }


# -- 1. overhead ------------------------------------------------------------------------------


async def bench_overhead(streams: int, tokens: int) -> dict[str, Any]:
    manager = StreamManager(
        metrics_tracker=MetricsTracker(),
        streaming_metrics_tracker=StreamingMetricsTracker(),
        latency_manager=LatencyProfileManager(),
        enable_metrics=True,
        enable_latency_simulation=False,
    )
    responses = [chat_response(tokens, f"o{i}") for i in range(streams)]
    counts = [0] * streams
    sizes = [0] * streams

    async def one(i: int) -> None:
        n = size = 0
        async for chunk in manager.create_stream(
            stream_type=StreamType.CHAT,
            model=MODEL,
            full_response=responses[i],
            endpoint=ENDPOINT,
            prompt_tokens=10,
        ):
            size += len(SSEFormatter.format(chunk))
            n += 1
        counts[i], sizes[i] = n, size

    await one(0)  # warm-up: imports, caches
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    chunks = sum(counts)
    return {
        "streams": streams,
        "tokens_per_stream": tokens,
        "chunks": chunks,
        "cpu_us_per_chunk": cpu / chunks * 1e6,
        "chunks_per_s": chunks / wall,
        "avg_event_bytes": sum(sizes) / chunks,
    }


# -- 2. timing accuracy -------------------------------------------------------------------------


def _stream_factory() -> tuple[str, Callable[[StreamContext, dict[str, Any]], AsyncIterator[Any]]]:
    """Chunks through ``StreamManager.create_stream`` with the per-stream overrides."""
    manager = StreamManager(latency_manager=LatencyProfileManager(), enable_latency_simulation=True)

    def via_manager(ctx: StreamContext, full: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        return manager.create_stream(
            stream_type=StreamType.CHAT,
            model=ctx.model,
            full_response=full,
            endpoint=ENDPOINT,
            ttft_ms=ctx.ttft_ms,
            itl_ms=ctx.itl_ms,
            start_time=ctx.start_time,
        )

    return "StreamManager.create_stream", via_manager


async def _timed_stream(
    make: Callable[[StreamContext, dict[str, Any]], AsyncIterator[Any]],
    tag: str,
    tokens: int,
    ttft_ms: float,
    itl_ms: float,
) -> tuple[list[float], float]:
    """Errors |actual - scheduled| (ms) per content chunk, and the last chunk's drift (ms).

    The origin is taken on both clocks at once: the loop's (the generator's deadlines) and
    ``perf_counter`` (what we measure with: uvloop's ``loop.time()`` has 1 ms resolution).
    """
    full = chat_response(tokens, tag)  # built before the origin: input, not library work
    loop = asyncio.get_running_loop()
    origin, origin_perf = loop.time(), time.perf_counter()
    ctx = StreamContext(
        stream_id=f"chatcmpl-{tag}",
        stream_type=StreamType.CHAT,
        model=MODEL,
        endpoint=ENDPOINT,
        start_time=origin,
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
    )
    errors: list[float] = []
    drift = 0.0
    seen = 0
    async for chunk in make(ctx, full):
        now = time.perf_counter()
        count = chunk.token_count if isinstance(chunk, StreamChunk) else 0
        if count <= 0:
            continue
        seen += count
        scheduled = origin_perf + (ttft_ms + (seen - 1) * itl_ms) / 1000.0
        drift = (now - scheduled) * 1000.0
        errors.append(abs(drift))
    return errors, drift


async def bench_timing(streams: int, tokens: int, itl_ms: float) -> dict[str, Any]:
    via, make = _stream_factory()
    results = await asyncio.gather(
        *(_timed_stream(make, f"t{streams}-{i}", tokens, itl_ms, itl_ms) for i in range(streams))
    )
    errors = [e for errs, _ in results for e in errs]
    drifts = [d for _, d in results]
    stats = summarize(errors)
    return {
        "via": via,
        "streams": streams,
        "tokens_per_stream": tokens,
        "itl_ms": itl_ms,
        "chunks": len(errors),
        "abs_error_ms_p50": stats["p50"],
        "abs_error_ms_p99": stats["p99"],
        "abs_error_ms_max": stats["max"],
        "chunks_late_over_3ms": sum(1 for e in errors if e > 3.0),
        "drift_ms_median": statistics.median(drifts) if drifts else 0.0,
        "drift_ms_max_abs": max((abs(d) for d in drifts), default=0.0),
    }


# -- 3. plan --------------------------------------------------------------------------------------


def bench_plan(tokens: int = 1000, calls: int = 2000) -> dict[str, Any]:
    manager = LatencyProfileManager()
    manager.plan(MODEL, output_tokens=tokens)
    t0 = time.perf_counter()
    for _ in range(calls):
        manager.plan(MODEL, output_tokens=tokens, prompt_tokens=500)
    return {"tokens": tokens, "us_per_plan": (time.perf_counter() - t0) / calls * 1e6}


# -- driver ---------------------------------------------------------------------------------------


def _runner() -> tuple[str, asyncio.Runner]:
    try:
        import uvloop
    except ImportError:
        return "asyncio", asyncio.Runner()
    return "uvloop", asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All sections, as one JSON-able dict."""
    loop_name, runner = _runner()
    result: dict[str, Any] = {"loop": loop_name, "python": sys.version.split()[0]}
    with runner:
        result["overhead"] = runner.run(bench_overhead(args.streams, args.tokens))
        result["timing_1"] = runner.run(bench_timing(1, args.timing_tokens, args.itl_ms))
        result["timing_n"] = runner.run(
            bench_timing(args.concurrency, args.timing_tokens, args.itl_ms)
        )
    result["plan"] = bench_plan()
    return result


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fakeai library benchmark ({result['loop']}, Python {result['python']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    o = result["overhead"]
    label = f"CPU per chunk ({o['streams']} x {o['tokens_per_stream']} tokens, SSE, metrics)"
    table.add_row(label, f"{o['cpu_us_per_chunk']:.2f} µs", "< 20 µs")
    table.add_row("chunks per second (one core)", f"{o['chunks_per_s']:,.0f}", "")
    for key in ("timing_1", "timing_n"):
        t = result[key]
        what = f"{t['streams']} x {t['tokens_per_stream']} tokens @ {t['itl_ms']:g} ms"
        table.add_row(f"|actual-scheduled| p50, {what}", f"{t['abs_error_ms_p50']:.3f} ms", "")
        table.add_row(
            f"|actual-scheduled| p99, {what}", f"{t['abs_error_ms_p99']:.3f} ms", "< 3 ms"
        )
        table.add_row(f"chunks off by > 3 ms, {what}", f"{t['chunks_late_over_3ms']}", "")
        table.add_row(f"end drift max |.|, {what}", f"{t['drift_ms_max_abs']:.3f} ms", "< 5 ms")
    table.add_row("timed through", result["timing_1"]["via"], "")
    p = result["plan"]
    table.add_row(f"plan() for {p['tokens']} tokens", f"{p['us_per_plan']:.1f} µs", "< 1000 µs")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakeai.services.bench.library")
    parser.add_argument("--json", action="store_true", help="also print one JSON line at the end")
    parser.add_argument("--streams", type=int, default=20, help="overhead: streams (20)")
    parser.add_argument("--tokens", type=int, default=1000, help="overhead: tokens each (1000)")
    parser.add_argument("--timing-tokens", type=int, default=500, help="timing: tokens (500)")
    parser.add_argument("--itl-ms", type=float, default=15.0, help="timing: TTFT and ITL (15)")
    parser.add_argument("--concurrency", type=int, default=100, help="timing: streams (100)")
    args = parser.parse_args(argv)
    for name in ("streams", "tokens", "timing_tokens", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.itl_ms < 0:
        parser.error("--itl-ms must be >= 0")
    result = run(args)
    _print_table(result)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
