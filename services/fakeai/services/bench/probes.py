"""Special loads for the scenarios: many readers of one stream, and many idle open streams.

Both use the project's HTTP contract (``X-Stream-Id``, ``GET /v1/streams/{id}``,
``POST /v1/streams/{id}/cancel``, the ``X-FakeAI-*`` timing headers), so they run against
FakeAI Streams only. Every wait is bounded by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fakeai.services.bench.config import BenchConfig
from fakeai.services.bench.sse import DONE, SSEParser
from fakeai.services.bench.stats import summarize

__all__ = ["fan_out", "hold_open"]


def _session(n: int, timeout_s: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=n + 4, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s),
    )


@dataclass
class _Reader:
    times: dict[bytes, float] = field(default_factory=dict)
    connected_at: float | None = None
    done: bool = False
    error: str | None = None


async def _read_ids(resp: aiohttp.ClientResponse, into: _Reader) -> None:
    parser = SSEParser()
    async for data in resp.content.iter_any():
        now = time.perf_counter()
        for ev in parser.feed(data):
            if ev.data == DONE:
                into.done = True
                return
            if ev.id is not None:
                into.times[ev.id] = now


async def fan_out(
    cfg: BenchConfig, readers: int, *, tokens: int, itl_ms: float, timeout_s: float
) -> dict[str, Any]:
    """One generation, ``readers`` extra clients reading it live through ``GET /v1/streams``.

    Delivery lag = a reader's arrival time of an event minus the origin client's arrival
    time of the same event (one clock, one process), counted for events generated after that
    reader had connected (earlier ones are catch-up, not fan-out).
    """
    headers = cfg.headers()
    # A TTFT long enough for the readers to connect before the first token.
    headers.update({"X-FakeAI-TTFT-Ms": "1000", "X-FakeAI-ITL-Ms": f"{itl_ms:g}"})
    body = {**cfg.body(), "max_tokens": tokens}
    origin = _Reader()
    others = [_Reader() for _ in range(readers)]
    async with _session(readers + 1, timeout_s) as session:

        async def read_one(r: _Reader, sid: str) -> None:
            try:
                async with session.get(cfg.stream_url(sid), headers=cfg.headers()) as resp:
                    r.connected_at = time.perf_counter()
                    if resp.status != 200:
                        r.error = f"HTTP {resp.status}"
                        return
                    await _read_ids(resp, r)
            except (aiohttp.ClientError, TimeoutError) as e:
                r.error = type(e).__name__

        t0 = time.perf_counter()
        async with asyncio.timeout(timeout_s):
            async with session.post(cfg.generate_url, json=body, headers=headers) as resp:
                sid = resp.headers.get("x-stream-id")
                if resp.status != 200 or not sid:
                    raise RuntimeError(f"fan-out origin failed: HTTP {resp.status}, id {sid}")
                tasks = [asyncio.create_task(read_one(r, sid)) for r in others]
                await _read_ids(resp, origin)
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    lags: list[float] = []
    complete = 0
    for r in others:
        if r.done and r.times.keys() == origin.times.keys():
            complete += 1
        start = r.connected_at or 0.0
        for eid, t in r.times.items():
            o = origin.times.get(eid)
            if o is not None and o > start:
                lags.append(t - o)
    delivered = sum(len(r.times) for r in others)
    return {
        "readers": readers,
        "events_per_reader": len(origin.times),
        "complete_readers": complete,
        "reader_errors": sum(1 for r in others if r.error),
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / wall, 1),
        "lag_ms": summarize(lags),
        "wall_s": round(wall, 3),
    }


async def hold_open(
    cfg: BenchConfig,
    streams: int,
    *,
    measure: Callable[[], Awaitable[dict[str, Any]]],
    timeout_s: float,
    opening: int = 500,
) -> dict[str, Any]:
    """Open ``streams`` slow streams (1 token/s), wait until each has its first event, call
    ``measure()`` while all are connected, then close them and cancel their generations.

    At most ``opening`` streams are being opened at a time (request sent, first event not yet
    in): the probe measures connections held open, not a thundering herd of 10,000 requests
    queueing for the edge's Redis pool.
    """
    headers = {**cfg.headers(), "X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "1000"}
    body = {**cfg.body(), "max_tokens": 600}
    sids: list[str] = []
    ready = 0
    all_ready = asyncio.Event()
    release = asyncio.Event()
    gate = asyncio.Semaphore(max(1, opening))
    async with _session(streams, timeout_s) as session:

        async def one() -> None:
            nonlocal ready
            async with gate:
                resp = await session.post(cfg.generate_url, json=body, headers=headers)
                try:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status} opening an idle stream")
                    sids.append(resp.headers.get("x-stream-id", ""))
                    await resp.content.readuntil(b"\n\n")
                except BaseException:
                    resp.release()
                    raise
            async with resp:
                ready += 1
                if ready == streams:
                    all_ready.set()
                await release.wait()

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        try:
            async with asyncio.timeout(timeout_s):
                waiter = asyncio.create_task(all_ready.wait())
                # Only the waiter finishes normally; a stream task that ends early failed.
                done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    failed = next(iter(done))
                    exc = failed.exception()
                    raise RuntimeError(f"opening idle streams failed: {exc!r}")
            figures = await measure()
        finally:
            release.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # A disconnect is not a cancel (the contract): stop the generations explicitly.
            async with asyncio.timeout(timeout_s):
                for i in range(0, len(sids), 100):
                    await asyncio.gather(
                        *(
                            _cancel(session, cfg.stream_url(s) + "/cancel", cfg)
                            for s in sids[i : i + 100]
                            if s
                        )
                    )
    return {"streams": streams, "connected": ready, **figures}


async def _cancel(session: aiohttp.ClientSession, url: str, cfg: BenchConfig) -> None:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.post(url, headers=cfg.headers()) as resp:
            await resp.read()
