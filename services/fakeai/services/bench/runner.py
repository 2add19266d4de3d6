"""The closed-loop load generator: N workers, each issuing streaming requests back to back.

One request is one :class:`~fakeai.services.bench.stats.Outcome`. Every wait is bounded: the
whole request (resumes and the check replay included) runs under ``asyncio.timeout`` of
``--timeout`` seconds, and the transport's connect and read timeouts are set to the same value.

With ``resume_every`` = K the worker reads ``X-Stream-Id``, closes the connection after K
chunks, and reconnects with ``GET /v1/streams/{id}`` + ``Last-Event-ID`` (the id of the last
event it really handled, not of bytes it read past), again every K chunks, until ``[DONE]``;
with ``resume_delay_ms`` it stays away that long first, so the resume has events to catch up on
(resume latency then measures the server's resume, not the wait for the next token).
Ids are checked across connections (:class:`~fakeai.services.bench.stats.IdCheck`), and with
``verify`` the concatenated text is compared with a fast replay of the whole stream.

The Responses API (``--api responses``): the stream ends with ``response.completed`` or
``response.incomplete`` (no ``[DONE]``), an ``error`` or ``response.failed`` event is an error,
TTFT and ITL time the ``response.output_text.delta`` events; a resume is ``GET
/v1/responses/{id}?stream=true&starting_after=<the last sequence_number handled>``, and the
events are checked by ``sequence_number`` (0, 1, 2, ... across connections, no gap, no repeat);
the check replay is ``GET /v1/responses/{id}?stream=true``.

Transport: :mod:`fakeai.services.bench.http`, one keep-alive connection per worker (a new one
after a drop), for every request: the streaming POST, the resumes and the check replay. Its
protocol's ``data_received`` feeds the body straight to :func:`_reader` (the SSE parser and the
per-event accounting) with one ``perf_counter`` per read: no stream reader, no coroutine resume
per read. Measured 2026-12-03 against ``fakeai-streams up`` on the 2-vCPU project machine
(shared with other work, load average 6-8), 3 runs each, alternating with the aiohttp
transport this replaced: ``nice -n 5 fakeai-streams bench --url ... --duration 15
--max-tokens 100 --json -c 300`` (gpt-4o profile, paced): 12.0-13.1 µs of client CPU per chunk
(aiohttp: 22.8-29.5); the same with ``-c 100 --no-latency``: 9.7-11.3 µs (aiohttp: 13.7-19.7).
Most of what is left per event is ``SSEParser.feed``, ``chunk_info`` and the event loop's read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from fakeai.services.bench import http
from fakeai.services.bench.config import BenchConfig
from fakeai.services.bench.sse import (
    DONE,
    ChunkInfo,
    EventInfo,
    SSEParser,
    chunk_info,
    event_info,
)
from fakeai.services.bench.stats import IdCheck, Outcome, Totals

__all__ = ["run_bench"]

logger = logging.getLogger(__name__)

_CONNECT_BACKOFF_S = 0.05
"""After a connect error in a --duration run, a worker pauses this long so a dead server does
not turn the run into a tight loop of refused connections."""

_Ending = Literal["done", "dropped", "error", "eof"]
_JSON = {"Content-Type": "application/json"}
_encode_json = msgspec.json.Encoder().encode


class _Stream:
    """Per-request reading state that lives across the request's connections."""

    __slots__ = ("decode", "events", "ids", "last_id", "last_seq", "parts", "t0", "usage_tokens")

    def __init__(self, t0: float, *, check_ids: bool, keep_text: bool, events: bool) -> None:
        self.t0 = t0
        self.ids = IdCheck() if check_ids else None
        self.parts: list[str] | None = [] if keep_text else None
        self.last_id: bytes | None = None
        self.last_seq: int | None = None
        """The last Responses API ``sequence_number`` handled."""
        self.usage_tokens: int | None = None
        self.events = events
        self.decode: Callable[[bytes], ChunkInfo | EventInfo] = event_info if events else chunk_info


def _reader(
    o: Outcome, st: _Stream, *, drop_after: int | None, reconnect_at: float | None
) -> Callable[[bytes, float], _Ending | None]:
    """The sink of one connection's body (:meth:`http.Response.stream`): it accounts the
    events in ``o`` as their bytes arrive, ``now`` being the time of the read that brought
    them, and says how the connection ends (None: read on)."""
    feed = SSEParser().feed
    last_content: float | None = None
    seen = 0
    decode, ids, events = st.decode, st.ids, st.events

    def on_data(data: bytes, now: float) -> _Ending | None:
        nonlocal last_content, seen, reconnect_at
        for ev in feed(data):
            if ev.id is not None:
                st.last_id = ev.id
                if ids is not None and not events:
                    ids.see(ev.id)
            if reconnect_at is not None:
                # The first resumed event, even when it is only [DONE].
                o.resume_latency.append(now - reconnect_at)
                reconnect_at = None
            if ev.data == DONE:
                return "done"
            o.chunks += 1
            seen += 1
            info = decode(ev.data)
            # ChunkInfo's sequence and end are properties (None, False): asked only of events.
            if events and info.sequence is not None:
                st.last_seq = info.sequence
                if ids is not None:
                    ids.see_sequence(info.sequence)
            if info.error:
                o.fail("stream_error", ev.data.decode(errors="replace"))
                return "error"
            if info.text:
                o.tokens += 1
                if o.ttft is None:
                    o.ttft = now - st.t0
                elif last_content is not None:
                    o.itl.append(now - last_content)
                last_content = now
                if st.parts is not None:
                    st.parts.append(info.text)
            if info.completion_tokens is not None:
                st.usage_tokens = info.completion_tokens
            if events and info.end:
                return "done"
            if drop_after is not None and seen >= drop_after:
                return "dropped"
        return None

    return on_data


async def _open_check(resp: http.Response, o: Outcome) -> bool:
    """False (and ``o`` failed) unless the response is a 200 event stream."""
    if resp.status != 200:
        body = (await resp.read(300)).decode(errors="replace")
        o.fail("http_status", f"HTTP {resp.status}: {body}", status=resp.status)
        return False
    ctype = resp.headers.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        o.fail("not_streaming", f"content-type {ctype!r}, expected text/event-stream")
        return False
    return True


async def _replay(
    client: http.Client, cfg: BenchConfig, sid: str
) -> tuple[str, list[bytes]] | None:
    """The whole stream's text and event ids (a response's: its sequence numbers, as
    :meth:`IdCheck.see_sequence` records them), replayed as fast as possible; None on
    failure."""
    feed = SSEParser().feed
    parts: list[str] = []
    ids: list[bytes] = []
    decode: Callable[[bytes], ChunkInfo | EventInfo] = event_info if cfg.events else chunk_info
    if cfg.events:
        url, params = cfg.response_url(sid), {"stream": "true"}
    else:
        url, params = cfg.stream_url(sid), {"pace": "fast"}

    def on_data(data: bytes, now: float) -> Literal[True] | None:
        for ev in feed(data):
            if ev.id is not None and not cfg.events:
                ids.append(ev.id)
            if ev.data == DONE:
                return True
            info = decode(ev.data)
            if info.sequence is not None:  # a Responses API event
                ids.append(b"%d" % info.sequence)
            parts.append(info.text)
            if info.end:
                return True
        return None

    resp = await client.request("GET", http.target(url, params), cfg.headers())
    if resp.status != 200:
        resp.drop()
        return None
    if await resp.stream(on_data) is None:
        return None
    return "".join(parts), ids


def _resume_request(
    cfg: BenchConfig, st: _Stream, sid: str, headers: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, str]] | None:
    """URL, query and headers that resume ``sid`` after the last event handled; None when no
    event carried a position to resume from."""
    if st.events:
        if st.last_seq is None:
            return None
        query = {"stream": "true", "starting_after": str(st.last_seq)}
        return cfg.response_url(sid), query, headers
    if st.last_id is None:
        return None
    return cfg.stream_url(sid), {}, {**headers, "Last-Event-ID": st.last_id.decode()}


async def _one(client: http.Client, cfg: BenchConfig, o: Outcome) -> None:
    resume = cfg.resume_every
    st = _Stream(
        time.perf_counter(),
        check_ids=bool(resume),
        keep_text=bool(resume and cfg.verify),
        events=cfg.events,
    )
    headers = cfg.headers()
    body = _encode_json(cfg.body())
    resp = await client.request("POST", http.target(cfg.generate_url), {**headers, **_JSON}, body)
    o.headers = resp.at - st.t0
    if not await _open_check(resp, o):
        return
    sid = resp.headers.get("x-stream-id")
    if resume and not sid:
        o.fail("resume_unsupported", "the response has no X-Stream-Id header")
        return
    ending = await resp.stream(_reader(o, st, drop_after=resume, reconnect_at=None)) or "eof"
    if ending == "dropped":
        resp.drop()  # drop the connection itself, not only the response
    while ending == "dropped":
        again = _resume_request(cfg, st, sid, headers) if sid is not None else None
        if again is None:
            o.fail(
                "resume_unsupported", "the events carry no id: (nor sequence_number) to resume from"
            )
            return
        url, query, h = again
        if cfg.resume_delay_ms:
            await asyncio.sleep(cfg.resume_delay_ms / 1000.0)  # the simulated time away
        reconnect_at = time.perf_counter()
        resp = await client.request("GET", http.target(url, query), h)
        if not await _open_check(resp, o):
            return
        sink = _reader(o, st, drop_after=resume, reconnect_at=reconnect_at)
        ending = await resp.stream(sink) or "eof"
        if ending == "dropped":
            resp.drop()
    if ending == "error":
        return
    if ending == "eof":
        end = "response.completed" if cfg.events else "[DONE]"
        o.fail("no_done", f"the stream ended after {o.chunks} chunks without {end}")
        return
    o.e2e = time.perf_counter() - st.t0
    if st.usage_tokens is not None:
        o.tokens = st.usage_tokens
    if st.ids is not None:
        o.gaps, o.duplicates = st.ids.gaps, st.ids.duplicates
    if st.parts is not None and sid:
        replay = await _replay(client, cfg, sid)
        if replay is None:
            o.fail("integrity", "the check replay of the whole stream failed")
            return
        text, ids = replay
        o.text_mismatch = text != "".join(st.parts)
        if st.ids is not None:
            o.gaps = max(o.gaps, len(set(ids) - set(st.ids.ids)))
    if o.gaps or o.duplicates or o.text_mismatch:
        o.fail(
            "integrity",
            f"{o.gaps} gap(s), {o.duplicates} duplicate(s), text "
            f"{'differs' if o.text_mismatch else 'matches'}",
        )
        return
    o.ok = True


async def _request(client: http.Client, cfg: BenchConfig) -> Outcome:
    """One request; every exception becomes an error kind."""
    o = Outcome()
    try:
        async with asyncio.timeout(cfg.timeout_s):
            await _one(client, cfg, o)
    except http.ConnectError as e:  # refused, unreachable, DNS
        o.fail("connect", f"{type(e).__name__}: {e}")
    except TimeoutError as e:  # ours, or the transport's connect/read timeouts (subclasses)
        o.fail("timeout", f"no end within {cfg.timeout_s:g}s after {o.chunks} chunks ({e!r})")
    except http.PayloadError as e:
        # The server closed the connection mid-body (a truncated chunked response).
        o.fail("no_done", f"{type(e).__name__} after {o.chunks} chunks: {e}")
    except http.HTTPError as e:
        o.fail("other", f"{type(e).__name__}: {e}")
    return o


def _client(cfg: BenchConfig) -> http.Client:
    """A worker's connection: connect and read timeouts are the request's deadline."""
    return http.Client(cfg.base, connect_timeout_s=cfg.timeout_s, read_timeout_s=cfg.timeout_s)


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run_bench(
    cfg: BenchConfig, progress: Callable[[Totals, float], None] | None = None
) -> dict[str, Any]:
    """Run the load and return the result object (see ``Totals.result``).

    ``progress(totals, elapsed_s)`` is called about four times a second while the run lasts.
    """
    totals = Totals()
    clients: list[http.Client] = []
    try:
        warm = _client(cfg)
        clients.append(warm)
        for _ in range(cfg.warmup):
            w = await _request(warm, cfg)
            if not w.ok:
                logger.warning("warm-up request failed: %s %s", w.error, w.detail)
        warm.close()
        remaining = [cfg.requests] if cfg.requests is not None else None
        stop = asyncio.Event()
        t0 = time.perf_counter()
        deadline = t0 + cfg.duration_s if cfg.duration_s is not None else None
        cpu0 = _cpu_s()
        in_flight = [0]

        async def worker(index: int) -> None:
            client = _client(cfg)
            clients.append(client)
            if cfg.ramp_s:
                # A staggered start: closed-loop workers that all start at once send one burst
                # of N requests, which is the load generator's shape, not a steady load.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(index * cfg.ramp_s / cfg.concurrency):
                        await stop.wait()
            while not stop.is_set():
                if remaining is not None:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                elif deadline is not None and time.perf_counter() >= deadline:
                    return
                in_flight[0] += 1
                load = in_flight[0]
                try:
                    o = await _request(client, cfg)
                finally:
                    in_flight[0] -= 1
                o.in_flight = load
                totals.add(o)
                if o.error == "resume_unsupported":
                    stop.set()  # the server cannot resume: more requests cannot either
                elif o.error == "connect" and deadline is not None:
                    await asyncio.sleep(_CONNECT_BACKOFF_S)

        async def ticker() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await stop.wait()
                if progress is not None:
                    progress(totals, time.perf_counter() - t0)
                if stop.is_set():
                    return

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(worker(i) for i in range(cfg.concurrency)))
        finally:
            wall = time.perf_counter() - t0
            cpu = _cpu_s() - cpu0
            stop.set()
            await tick
    finally:
        for c in clients:
            c.close()
    return totals.result(wall_s=wall, cpu_s=cpu, config=cfg.describe())
