"""The chaos run of issue 10 ("Done when"): a real ``fakeai-streams up`` serves 50 concurrent
clients while its producer, edge, metrics consumer and embedded Redis are SIGKILLed in turn.

Every client runs streams back to back (gpt-4o, TTFT 50 ms, ITL 20 ms, 150 tokens each, its
own seed) and resumes from its Last-Event-ID whenever its connection drops or the edge ends
the response early, as a careful client would. After each kill the test waits for ``up`` to
start that process again (a new PID) and for the service to answer a streaming request, then
for the clients to make progress, and kills the next one. At the end:

- every stream in Redis (the clients', the probes' and any a dying edge had accepted) is read
  whole with ``GET /v1/streams/{id}``: it ends with a terminal entry (``done``, or an error
  entry: explicitly failed), its entry seqs run 1, 2, ... with no gap and no duplicate, and a
  completed stream's text equals that of the same request (same seed) served without chaos;
- each client received exactly the events of the whole read, once each, in order;
- ``/v1/metrics/latency`` counts exactly the streams that ended (end-to-end samples);
- after SIGTERM, ``up`` exits 0 and no process it ever started (restarted ones included) is
  left, checked by PID.

``make chaos`` runs the same with ``FAKEAI_CHAOS_ROUNDS=3`` (three rounds of the four kills)
and ``-s``, so the figures (stream counts, resumes, longest wait for a chunk, time until each
killed process is back and the service answers again) are printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aredis
from tests.support.servers import eventually
from tests.support.up import ROLES, Kill, UpProcesses, kill_child, stop_up, up_env

from fakeai.embedded_redis import free_port
from fakeai.services.bench.stack import LocalStack
from fakeai.streams import METRICS_GROUP, Keys

ROUNDS = int(os.environ.get("FAKEAI_CHAOS_ROUNDS", "1"))
CLIENTS = int(os.environ.get("FAKEAI_CHAOS_STREAMS", "50"))
SEEDS = 5
"""Clients share a few seeds, so a handful of reference streams check every text."""

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(150 + 120 * (ROUNDS - 1))]

BODY = {
    "model": "gpt-4o",
    "stream": True,
    "max_tokens": 150,
    "ignore_eos": True,
    "messages": [{"role": "user", "content": "Tell me a long story."}],
}
TIMING = {"X-FakeAI-TTFT-Ms": "50", "X-FakeAI-ITL-Ms": "20"}


# -- the clients --------------------------------------------------------------------------


@dataclass
class Followed:
    """One stream as a client saw it (or as a whole read returned it)."""

    seed: int
    sid: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    """(entry id, data) of every log entry received, in order; the terminal one included
    (its data is ``[DONE]`` for ``done``)."""
    terminal: str | None = None
    """``done``, or the error code of the error entry; None while unfinished."""
    duplicates: int = 0
    gaps: int = 0
    resumes: int = 0
    cuts: Counter[str] = field(default_factory=Counter)
    """Why responses ended early: transport errors, HTTP statuses, the edge's error events."""
    longest_wait_s: float = 0.0
    _last_at: float = 0.0

    @property
    def last_seq(self) -> int:
        return _seq(self.events[-1][0]) if self.events else 0

    def text(self) -> str:
        out = []
        for _, data in self.events:
            if data.startswith("{"):
                for ch in json.loads(data).get("choices", []):
                    out.append(ch.get("delta", {}).get("content") or "")
        return "".join(out)

    def take(self, eid: str, data: str) -> None:
        now = time.monotonic()
        if self._last_at:
            self.longest_wait_s = max(self.longest_wait_s, now - self._last_at)
        self._last_at = now
        seq = _seq(eid)
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        if seq != self.last_seq + 1:
            self.gaps += 1
        self.events.append((eid, data))
        if data == "[DONE]":
            self.terminal = "done"
        elif data.startswith('{"error"'):
            self.terminal = json.loads(data)["error"].get("code") or "error"


def _seq(eid: str) -> int:
    return int(eid.rpartition("-")[2])


async def _read_sse(resp: httpx.Response, s: Followed) -> None:
    """Take the log entries of one SSE response; return at its end (or at the terminal)."""
    eid: str | None = None
    data: list[str] = []
    async for line in resp.aiter_lines():
        if line.startswith("id:"):
            eid = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "":
            if data:
                payload = "\n".join(data)
                if eid is not None:
                    s.take(eid, payload)
                elif payload.startswith('{"error"'):  # the edge ended the response early
                    s.cuts[json.loads(payload)["error"].get("code") or "error"] += 1
                if s.terminal is not None:
                    return
            eid, data = None, []


async def follow(client: httpx.AsyncClient, seed: int, deadline: Callable[[], float]) -> Followed:
    """One stream from POST to its terminal entry, resuming after every cut until
    ``deadline()`` (``time.monotonic()``)."""
    s = Followed(seed)
    headers = {**TIMING, "X-FakeAI-Seed": str(seed)}
    while s.terminal is None and time.monotonic() < deadline():
        if s.sid is None:
            request = client.stream("POST", "/v1/chat/completions", json=BODY, headers=headers)
        else:
            s.resumes += 1
            resume = {"Last-Event-ID": s.events[-1][0]} if s.events else {}
            request = client.stream("GET", f"/v1/streams/{s.sid}", headers=resume)
        try:
            async with request as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    s.cuts[f"HTTP {resp.status_code}"] += 1
                else:
                    s.sid = s.sid or resp.headers["x-stream-id"]
                    await _read_sse(resp, s)
        except httpx.TransportError as e:
            s.cuts[type(e).__name__] += 1
        if s.terminal is None:
            await asyncio.sleep(0.2)  # a client's pause before it tries again
    return s


async def _client(client: httpx.AsyncClient, i: int, stop: asyncio.Event,
                  deadline: Callable[[], float], out: list[Followed]) -> None:  # fmt: skip
    """Streams back to back until ``stop``."""
    n = 0
    while not stop.is_set():
        out.append(await follow(client, (i + n) % SEEDS, deadline))
        n += 1


async def read_whole(client: httpx.AsyncClient, sid: str) -> Followed:
    s = Followed(seed=-1, sid=sid)
    async with client.stream("GET", f"/v1/streams/{sid}", params={"pace": "fast"}) as resp:
        assert resp.status_code == 200, (sid, resp.status_code, await resp.aread())
        await _read_sse(resp, s)
    return s


async def _stream_ids(redis_url: str, keys: Keys) -> set[str]:
    """Every stream id with a meta hash under the test's prefix."""
    r = aredis.Redis.from_url(redis_url)
    try:
        found = set()
        async for raw in r.scan_iter(match=keys.scan_pattern(), count=1000):
            key = raw.decode()
            if key.endswith(":meta"):
                sid = key.rsplit(":", 2)[-2]
                if keys.meta(sid) == key:
                    found.add(sid)
        return found
    finally:
        await r.aclose()


async def _metrics_backlog(redis_url: str, keys: Keys, env: dict[str, str]) -> list[str]:
    """Per firehose partition: the metrics group's pending and lag, and its consumers."""
    partitions = int(env.get("FAKEAI_FIREHOSE_PARTITIONS") or 4)
    r = aredis.Redis.from_url(redis_url)
    try:
        out = []
        for key in keys.all_events(partitions):
            for g in await r.xinfo_groups(key):
                if g["name"] == METRICS_GROUP.encode():
                    out.append(f"{key}: pending {g['pending']}, lag {g['lag']}, "
                               f"consumers {g['consumers']}")  # fmt: skip
        return out
    finally:
        await r.aclose()


def _metrics_lines(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if "metrics" in ln][-20:]


async def _metrics_count(client: httpx.AsyncClient) -> int:
    res = await client.get("/v1/metrics/latency", params={"window": "3600"})
    if res.status_code != 200:
        return -1
    return int(res.json()["all"]["e2e"]["count"])


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    try:
        await eventually(check, timeout_s=timeout_s, interval_s=0.2)
    except AssertionError:
        return False
    return True


# -- the run ------------------------------------------------------------------------------


async def test_chaos_every_stream_ends_whole_and_counted(tmp_path: Path, key_prefix: str) -> None:
    t_start = time.monotonic()
    # Entries of a killed metrics consumer are reclaimed after 2 s of idleness (default 30 s).
    env = up_env(key_prefix, FAKEAI_METRICS_CLAIM_IDLE_S="2")
    stack = LocalStack(free_port(), tmp_path, env=env)
    await asyncio.to_thread(stack.start, 60.0)
    procs = UpProcesses(stack)
    keys = Keys(key_prefix)
    followed: list[Followed] = []
    kills: list[Kill] = []
    left: list[str] = []
    backlog: list[str] = []
    limits = httpx.Limits(max_connections=CLIENTS * 2 + 20)
    timeout = httpx.Timeout(30.0, connect=10.0)
    try:
        async with httpx.AsyncClient(base_url=stack.url, limits=limits, timeout=timeout) as c:
            stop = asyncio.Event()
            finish_by = [time.monotonic() + 3600.0]
            tasks = [
                asyncio.create_task(_client(c, i, stop, lambda: finish_by[0], followed))
                for i in range(CLIENTS)
            ]

            def received() -> int:
                return sum(len(f.events) for f in followed)

            async def progressed(since: int) -> bool:
                return received() >= since + CLIENTS * 5

            await eventually(lambda: progressed(0), timeout_s=30)
            for _ in range(ROUNDS):
                for role in ROLES:
                    kills.append(await kill_child(stack, procs, role))
                    mark = received()
                    assert await _until(lambda m=mark: progressed(m), 60), (
                        f"no progress after {role}"
                    )
            stop.set()
            finish_by[0] = time.monotonic() + 60.0
            done, pending = await asyncio.wait(tasks, timeout=75)
            assert not pending, "clients did not finish"
            for t in done:
                t.result()

            references = {}
            for seed in range(SEEDS):
                ends = time.monotonic() + 30
                ref = await follow(c, seed, lambda e=ends: e)
                assert ref.terminal == "done", ref
                references[seed] = ref.text()

            assert stack.redis_url is not None
            sids = await _stream_ids(stack.redis_url, keys)
            whole = {sid: await read_whole(c, sid) for sid in sorted(sids)}
            ended = sum(1 for w in whole.values() if w.terminal is not None)

            async def counted() -> bool:
                return await _metrics_count(c) >= ended

            await _until(counted, 30)
            metrics_count = await _metrics_count(c)
            backlog = await _metrics_backlog(stack.redis_url, keys, env)
    finally:
        left = await stop_up(stack, procs) if stack.proc and stack.proc.poll() is None else []
        stack.stop()

    problems = _check(followed, whole, references)
    _report(t_start, followed, whole, kills, metrics_count, ended, procs, left)
    assert not problems, "\n".join(problems[:20])
    assert metrics_count == ended, (
        f"/v1/metrics/latency counts {metrics_count}, {ended} ended; metrics group: {backlog}; "
        f"metrics log: {_metrics_lines(stack.log_path)}"
    )
    assert not left, f"left behind after SIGTERM: {left}"


def _check(
    followed: list[Followed], whole: dict[str, Followed], references: dict[int, str]
) -> list[str]:
    problems = []
    for sid, w in whole.items():
        seqs = [_seq(eid) for eid, _ in w.events]
        if w.terminal is None:
            problems.append(f"{sid}: no terminal entry (read {len(seqs)} entries)")
        if seqs != list(range(1, len(seqs) + 1)) or w.gaps or w.duplicates:
            problems.append(f"{sid}: seqs not 1..n: {seqs[:5]}...{seqs[-5:]}")
    for f in followed:
        if f.sid is None:
            problems.append(f"a client never got a stream id: {dict(f.cuts)}")
            continue
        w = whole.get(f.sid)
        if w is None:
            problems.append(f"{f.sid}: not in Redis")
            continue
        if f.terminal is None:
            problems.append(f"{f.sid}: the client got no terminal entry ({dict(f.cuts)})")
        if f.duplicates or f.gaps:
            problems.append(f"{f.sid}: the client got {f.duplicates} duplicates, {f.gaps} gaps")
        if f.events != w.events:
            problems.append(f"{f.sid}: the client's events differ from the whole read")
        if f.terminal == "done" and f.text() != references[f.seed]:
            problems.append(f"{f.sid}: text differs from the same request without chaos")
    return problems


def _report(
    t_start: float,
    followed: list[Followed],
    whole: dict[str, Followed],
    kills: list[Kill],
    metrics_count: int,
    ended: int,
    procs: UpProcesses,
    left: list[str],
) -> None:
    ends = Counter(w.terminal or "unfinished" for w in whole.values())
    cuts: Counter[str] = Counter()
    for f in followed:
        cuts.update(f.cuts)
    waits = sorted(f.longest_wait_s for f in followed) or [0.0]
    print(f"\nchaos: {ROUNDS} round(s) of {', '.join(ROLES)} killed (SIGKILL); "
          f"{CLIENTS} concurrent clients; {time.monotonic() - t_start:.0f} s in all")  # fmt: skip
    print(f"streams in Redis: {len(whole)} ({dict(ends)}); by the clients: {len(followed)}")
    print(f"gaps: {sum(f.gaps for f in followed) + sum(w.gaps for w in whole.values())}, "
          f"duplicates: {sum(f.duplicates for f in followed)}")  # fmt: skip
    print(f"client resumes: {sum(f.resumes for f in followed)}; why: {dict(cuts)}")
    print(f"longest wait for the next entry, per stream: median {waits[len(waits) // 2]:.1f} s, "
          f"max {waits[-1]:.1f} s")  # fmt: skip
    for k in kills:
        print(f"  {k.role:8} pid {k.old} -> {k.new}: running again after {k.back_s:.1f} s, "
              f"answering after {k.answers_s:.1f} s")  # fmt: skip
    print(f"metrics: /v1/metrics/latency e2e count {metrics_count}, streams ended {ended}")
    print(f"processes: {len(procs.seen)} seen under up, {len(left)} left after SIGTERM")
