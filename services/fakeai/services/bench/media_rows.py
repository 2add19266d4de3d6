"""S10 and S11: speech streams and realtime sessions at 100 concurrent, at the models' profiles.

S10: ``POST /v1/audio/speech`` with ``stream_format: "sse"`` (``tts-1``): closed loop, each
worker reads its stream to ``speech.audio.done`` and sends the next request. S11: one
``/v1/realtime?model=gpt-realtime`` WebSocket session per worker; each sends
``response.create`` and reads to ``response.done``, again and again on the same session.
Latency simulation is on: the point is fidelity to the profile at that load.

Per row: events/s delivered, server CPU per event (every process of the stack, Redis
included), and fidelity: the observed time from request to the last event of a stream
against the profile's plan for the same output tokens (``LatencyProfileManager.plan`` at the
load the producers carried: streams in flight per producer), as medians and p99s, and the
time to the first ``*.delta`` event. The output tokens of each stream come from its own
``usage`` (``speech.audio.done``, ``response.done``).
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import websockets

from fakeai.latency_profiles import LatencyProfileManager
from fakeai.services.bench.driver import Driver, cores_by_role, measure_run, stack_meter
from fakeai.services.bench.report import md_table
from fakeai.services.bench.sse import SSEParser

__all__ = ["REALTIME_MODEL", "SPEECH_MODEL", "run_media", "s10", "s11"]

SPEECH_MODEL = "tts-1"
REALTIME_MODEL = "gpt-realtime"
SPEECH_TEXT = "Durable streams keep every word, so a listener can come back."
CONCURRENCY = 100
DURATION_S = 5.0
_TIMEOUT_S = 60.0


@dataclass
class _Stream:
    """One stream as the client saw it: seconds from its request to the first delta and to
    its last event, its events, and its output and input tokens (from its usage)."""

    first_delta_s: float
    last_s: float
    events: int
    output_tokens: int
    input_tokens: int


@dataclass
class _Run:
    streams: list[_Stream] = field(default_factory=list)
    errors: int = 0


def _usage(event: dict[str, Any]) -> tuple[int, int]:
    usage = event.get("usage") or (event.get("response") or {}).get("usage") or {}
    return int(usage.get("output_tokens") or 0), int(usage.get("input_tokens") or 0)


async def _speech(session: aiohttp.ClientSession, url: str) -> _Stream:
    body = {
        "model": SPEECH_MODEL,
        "voice": "alloy",
        "input": SPEECH_TEXT,
        "stream_format": "sse",
    }
    sent = time.perf_counter()
    first = 0.0
    events = 0
    parser = SSEParser()
    async with session.post(f"{url}/v1/audio/speech", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        async for chunk in resp.content.iter_any():
            for e in parser.feed(chunk):
                events += 1
                now = time.perf_counter() - sent
                event = json.loads(e.data)
                if not first and event["type"].endswith(".delta"):
                    first = now
                if event["type"] == "speech.audio.done":
                    return _Stream(first, now, events, *_usage(event))
    raise RuntimeError("the stream ended without speech.audio.done")


async def _realtime_session(ws_url: str, until: float, out: _Run) -> None:
    async with websockets.connect(ws_url, max_size=None) as ws:
        await asyncio.wait_for(ws.recv(), _TIMEOUT_S)  # session.created
        while time.monotonic() < until:
            sent = time.perf_counter()
            await ws.send('{"type":"response.create"}')
            first, events = 0.0, 0
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), _TIMEOUT_S))
                events += 1
                now = time.perf_counter() - sent
                if not first and event["type"].endswith(".delta"):
                    first = now
                if event["type"] == "error":
                    out.errors += 1
                    break
                if event["type"] == "response.done":
                    out.streams.append(_Stream(first, now, events, *_usage(event)))
                    break


async def run_media(kind: str, url: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    """``kind`` ``speech`` or ``realtime`` streams from ``concurrency`` workers for
    ``duration_s`` (a stream started before the end runs to its end); the client's view."""
    out = _Run()
    started = time.monotonic()
    until = started + duration_s
    if kind == "realtime":
        ws_url = url.replace("http://", "ws://") + f"/v1/realtime?model={REALTIME_MODEL}"

        async def session(_: int) -> None:
            try:
                await _realtime_session(ws_url, until, out)
            except (OSError, TimeoutError, websockets.WebSocketException):
                out.errors += 1

        await asyncio.gather(*(session(i) for i in range(concurrency)))
    else:
        timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=concurrency + 4)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:

            async def worker() -> None:
                while time.monotonic() < until:
                    try:
                        out.streams.append(await _speech(http, url))
                    except (OSError, TimeoutError, RuntimeError, aiohttp.ClientError):
                        out.errors += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.monotonic() - started
    return {"wall_s": wall, "streams": out.streams, "errors": out.errors}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))] if ordered else math.nan


def _expected(model: str, streams: list[_Stream], load: int) -> list[float]:
    """Per stream, the profile's time to the last token (s) for its tokens at ``load``."""
    manager = LatencyProfileManager()
    out = []
    for s in streams:
        plan = manager.plan(
            model,
            output_tokens=max(1, s.output_tokens),
            prompt_tokens=s.input_tokens,
            current_load=load,
        )
        out.append(plan.ttft_s + sum(plan.itl_s))
    return out


def _row(driver: Driver, kind: str, model: str) -> tuple[list[Any], int]:
    stack = driver.stack(f"media-{kind}")
    producers = max(1, len(stack.pids("producer")))
    try:
        res, cpu = measure_run(
            stack_meter(stack), run_media(kind, stack.url, CONCURRENCY, DURATION_S)
        )
    finally:
        stack.stop()
    streams: list[_Stream] = res["streams"]
    events = sum(s.events for s in streams)
    obs = [s.last_s for s in streams]
    exp = _expected(model, streams, math.ceil(CONCURRENCY / producers))
    first = [s.first_delta_s * 1000 for s in streams]
    tokens = statistics.median(s.output_tokens for s in streams) if streams else 0
    e50, e99 = statistics.median(exp) if exp else math.nan, _p(exp, 0.99)
    o50, o99 = statistics.median(obs) if obs else math.nan, _p(obs, 0.99)
    row = [
        f"{kind} ({model})",
        CONCURRENCY,
        len(streams),
        res["errors"],
        f"{events / res['wall_s']:,.0f}",
        f"{1e6 * sum(cpu.values()) / events:.0f}" if events else "-",
        f"{tokens:g} / {events / max(1, len(streams)):.0f}",
        f"{1000 * o50:.0f} / {1000 * e50:.0f} ({o50 / e50 - 1:+.1%})",
        f"{1000 * o99:.0f} / {1000 * e99:.0f} ({o99 / e99 - 1:+.1%})",
        f"{statistics.median(first):.0f} / {_p(first, 0.99):.0f}" if first else "-",
        cores_by_role(cpu, res, client=False),
    ]
    return row, producers


_HEAD = [
    "streams of",
    "concurrent",
    "streams done",
    "errors",
    "events/s",
    "server µs CPU/event",
    "tokens / events per stream",
    "to last event p50 obs / exp ms",
    "p99 obs / exp",
    "first delta p50 / p99 ms",
    "cores by role",
]


def _section(title: str, text: str, row: list[Any]) -> list[str]:
    return [title, "", text, "", *md_table(_HEAD, [row]), ""]


def s10(driver: Driver) -> list[str]:
    """Speech streams (SSE events) at :data:`CONCURRENCY`, at ``tts-1``'s profile."""
    row, producers = _row(driver, "speech", SPEECH_MODEL)
    return _section(
        f"## S10 speech streams ({SPEECH_MODEL} profile)",
        f"{CONCURRENCY} workers, closed loop for {DURATION_S:g} s: `POST /v1/audio/speech` "
        f'with `stream_format: "sse"`, a {len(SPEECH_TEXT)}-character input, read to '
        f"`speech.audio.done`. Expected = `LatencyProfileManager.plan` for each stream's "
        f"output tokens at {math.ceil(CONCURRENCY / producers)} streams per producer "
        f"({producers} producer{'s' if producers > 1 else ''}); obs = request sent -> last "
        "event received.",
        row,
    )


def s11(driver: Driver) -> list[str]:
    """Realtime sessions at :data:`CONCURRENCY`, at ``gpt-realtime``'s profile."""
    row, producers = _row(driver, "realtime", REALTIME_MODEL)
    return _section(
        f"## S11 realtime sessions ({REALTIME_MODEL} profile)",
        f"{CONCURRENCY} WebSocket sessions at once (`/v1/realtime`), each sending "
        f"`response.create` and reading to `response.done`, again and again for "
        f"{DURATION_S:g} s (default session: text and audio output). Expected as in S10, at "
        f"{math.ceil(CONCURRENCY / producers)} sessions per producer; obs = "
        "`response.create` sent -> `response.done` received.",
        row,
    )
