"""Soak probe: many short streaming requests with unique prompts, RSS per role along the way.

What it checks: no process keeps memory per *finished* request beyond bounded, recent state
(the Redis retention holds the streams themselves). Upstream FakeAI 0.3.2 grows 4-6 KiB per
request with unique prompts (``notes/perf-anchors.md`` §1c); here RSS should level off.

The load is closed-loop (``cfg.concurrency`` clients, each starting its next request when its
last one ended) in segments of ``sample_every`` requests; between segments no request is in
flight, and ``rss()`` is sampled then, so the curve shows retained memory, not work in progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fakeai.services.bench.config import BenchConfig
from fakeai.services.bench.runner import run_bench

__all__ = ["growth_per_1k", "segments", "soak"]


def segments(requests: int, sample_every: int) -> list[int]:
    """Segment sizes: ``sample_every`` requests each, the last one shorter if need be."""
    if requests < 0 or sample_every < 1:
        raise ValueError(
            f"need requests >= 0 and sample_every >= 1; got {requests}, {sample_every}"
        )
    full, rest = divmod(requests, sample_every)
    return [sample_every] * full + ([rest] if rest else [])


def growth_per_1k(samples: list[dict[str, Any]], *, skip: float = 0.25) -> dict[str, float]:
    """Least-squares slope of RSS (KiB per 1,000 requests) per role.

    ``samples`` are ``{"requests": n, "rss": {role: bytes}}``; the first ``skip`` fraction of
    the run is warm-up (pools, caches and bounded histories filling up) and is left out. A role
    needs two samples after it to have a slope.
    """
    if not samples:
        return {}
    last = samples[-1]["requests"]
    tail = [s for s in samples if s["requests"] >= skip * last]
    roles = sorted({r for s in tail for r in s["rss"]})
    out: dict[str, float] = {}
    for role in roles:
        pts = [(float(s["requests"]), float(s["rss"][role])) for s in tail if role in s["rss"]]
        if len(pts) < 2:
            continue
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        var = sum((x - mx) ** 2 for x, _ in pts)
        if var == 0:
            continue
        slope = sum((x - mx) * (y - my) for x, y in pts) / var  # bytes per request
        out[role] = round(slope * 1000 / 1024, 2)
    return out


async def soak(
    cfg: BenchConfig,
    requests: int,
    sample_every: int,
    rss: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    """Run ``requests`` streaming requests (``cfg``'s concurrency, model, max_tokens and
    timing headers; a fresh prompt each) and sample ``rss()`` (bytes per role) before the
    first one and after every ``sample_every``.

    Returns ``samples`` (``{"requests", "rss", "elapsed_s"}``), ``errors`` (requests that
    failed), ``requests_per_s`` and ``growth_kib_per_1k`` (:func:`growth_per_1k`).
    """
    samples: list[dict[str, Any]] = [{"requests": 0, "rss": rss(), "elapsed_s": 0.0}]
    done = errors = 0
    t0 = time.perf_counter()
    busy = 0.0
    for size in segments(requests, sample_every):
        seg = replace(cfg, requests=size, duration_s=None, warmup=0)
        res = await run_bench(seg)
        busy += float(res.get("wall_s") or 0.0)
        done += size
        errors += int(res.get("errors") or 0)
        samples.append(
            {"requests": done, "rss": rss(), "elapsed_s": round(time.perf_counter() - t0, 1)}
        )
    return {
        "requests": done,
        "concurrency": cfg.concurrency,
        "max_tokens": cfg.max_tokens,
        "errors": errors,
        "requests_per_s": round(done / busy, 1) if busy else None,
        "samples": samples,
        "growth_kib_per_1k": growth_per_1k(samples),
    }
