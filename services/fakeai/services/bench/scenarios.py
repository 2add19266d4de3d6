"""The standard benchmark scenarios, written as Markdown: ``make bench``.

    python -m fakeai.services.bench.scenarios --out BENCHMARKS.md [--only S1,S3] [--quick]

Each scenario starts a fresh local stack (``fakeai-streams up`` on a free port, its own state
directory), measures from the client side with the bench (:mod:`.runner`), reads the CPU of
every stack process (``/proc``) and of Redis (``INFO cpu``), and stops every process by PID.

S1 throughput (latency off), S2 latency fidelity against the gpt-4o profile, S3 resume every 20
chunks, S4 fan-out of one stream to many readers, S5 edge memory per idle connection, S6 the
upstream ``fakeai`` package on the same machine (skipped with a note when it cannot be
installed), S7 scale-out: one redis-server against a 3-master Redis Cluster, with 1 and 2 edges
and producers (:mod:`.scaleout`); S1R and S3R are S1 and S3 against the Responses API
(``POST /v1/responses``, :mod:`.responses_rows`); S8 is the AIPerf recipe (:mod:`.aiperf`);
S10 and S11 are speech streams and realtime sessions at 100 concurrent, at their models'
profiles (:mod:`.media_rows`). The report names
the machine, the date and the exact command. Figures only: no scenario passes or fails,
except that S2 says where client-observed latency stops matching the profile (median within
5 %, p99 within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from fakeai.embedded_redis import free_port
from fakeai.latency_profiles import LatencyProfileManager
from fakeai.services.bench import aiperf, floor, media_rows, procs, responses_rows, scaleout
from fakeai.services.bench.driver import (
    QUICK,
    Driver,
    Scale,
    core_projection,
    cores_by_role,
    header,
    measure_run,
    run,
    server_latency,
    stack_meter,
)
from fakeai.services.bench.probes import fan_out, hold_open
from fakeai.services.bench.procs import CpuMeter
from fakeai.services.bench.report import md_table
from fakeai.services.bench.runner import run_bench
from fakeai.services.bench.soak import soak
from fakeai.services.bench.stack import PeerServer

__all__ = ["main"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S1R", "S3R", "S10", "S11")


def _floor_paragraph(m: dict[str, Any]) -> str:
    """What a chunk's steps cost this machine (:mod:`.floor`), measured before S2's stack."""
    wake = m["wakeup"]
    alone, read, bell = m["append"]
    xread = ", ".join(
        f"{x['blocking_us_per_call']:,.0f} µs over {x['keys']:,} keys" for x in m["xread"]
    )
    return (
        "The machine's floor, measured before this section's stack started "
        "(`python -m fakeai.services.bench.floor`): a 250-byte loopback TCP message to a "
        f"process asleep in `recv` costs {wake['cpu_us_per_message']:.1f} µs of CPU, both ends "
        f"and the kernel included (round trip {wake['round_trip_us']:.0f} µs); the same message "
        f"between two busy sockets {m['nowake_cpu_us_per_message']:.1f} µs. A paced chunk at a "
        "light load wakes each process it passes (producer, Redis, edge, client, and the "
        "metrics consumer per batch), so its cost there is mostly these wake-ups. Redis's CPU "
        f"per blocking XREAD: {xread} (the edge's hub reads every watched key of a slot with one "
        "XREAD, re-issued after every reply: its Redis cost per wake-up grows with the streams "
        f"it watches). Redis's whole CPU per appended entry, {alone['keys']:,} keys in turn, "
        f"{floor.APPEND_BATCH} per pipelined write: {alone['redis_cpu_us_per_entry']:.1f} µs "
        f"alone, {read['redis_cpu_us_per_entry']:.1f} µs with one blocking XREAD over those keys "
        f"reading them back, {bell['redis_cpu_us_per_entry']:.1f} µs when a doorbell entry per "
        "write names the keys it changed and only those are read. Python: "
        f"{m['python_loop_additions']:,} additions in a loop take "
        f"{m['python_loop_s']:.2f} s."
    )


class Scenarios(Driver):
    def s1(self) -> None:
        stack = self.stack("s1")
        notes: list[str] = []
        try:
            rows = self.throughput_rows(stack.url, stack_meter(stack), self.scale.s1, notes)
        finally:
            stack.stop()
        self.s1_rows = rows
        self.lines += [
            "## S1 throughput (latency off)",
            "",
            f"Closed loop, {self.scale.duration_s:g} s per row, 200-token streams, "
            "`X-FakeAI-TTFT-Ms: 0`, `X-FakeAI-ITL-Ms: 0`, unique prompts. Server CPU = every "
            "stack process (`/proc/<pid>/stat`) plus Redis (`INFO cpu`), divided by the chunks "
            "delivered to successful requests. S6 runs the same load against the upstream "
            "`fakeai` package.",
            "",
            *md_table(self.THROUGHPUT_HEAD, rows),
            "What limits it. Every process of the stack, Redis and the load generator share "
            "this machine's cores. Per chunk, the producer generates, encodes and appends it "
            "(pipelined XADDs to the stream's log and, batched, to the firehose), Redis runs those "
            "commands and the edge's blocking reads, the edge writes the chunk's bytes to the "
            "client's socket, and the metrics consumer folds its timing. Each process is one "
            "thread, so the rate is bounded by the cores when they are full, else by the "
            "busiest process or by the hops a chunk takes from producer to socket:",
            "",
            *[f"- {n}" for n in notes],
            "",
        ]

    def s2(self) -> None:
        manager = LatencyProfileManager()
        profile = manager.get_profile(self.model)
        machine = floor.measure(quick=self.scale.quick)
        stack = self.stack("s2")
        producers = max(1, len(stack.pids("producer")))
        meter = stack_meter(stack)
        rows, first_off, where = [], None, ""
        runs: list[tuple[int, dict[str, float], dict[str, Any], bool]] = []
        try:
            for c in self.scale.s2:
                n = max(self.scale.s2_requests, 3 * c)
                cfg = self.cfg(
                    stack.url,
                    c,
                    requests=n,
                    duration_s=None,
                    max_tokens=100,
                    timeout_s=300.0,
                    ramp_s=self.S2_RAMP_S,
                )
                res, cpu = measure_run(meter, run_bench(cfg))
                exp_ttft, exp_itl = self._expected(manager, res["in_flight_at_send"], producers)
                server = server_latency(stack.url, self.model, window_s=res["wall_s"] + 2)
                missed: list[str] = []
                row: list[Any] = [c, n, res["errors"]]
                for name, obs, exp in (
                    ("TTFT", res["ttft_ms"], exp_ttft),
                    ("ITL", res["itl_ms"], exp_itl),
                ):
                    e50 = statistics.median(exp)
                    e99 = exp[int(0.99 * (len(exp) - 1))]
                    d50, d99 = obs["p50"] / e50 - 1, obs["p99"] / e99 - 1
                    missed += [f"{name} p50 ({d50:+.0%})"] if abs(d50) > 0.05 else []
                    missed += [f"{name} p99 ({d99:+.0%})"] if abs(d99) > 0.10 else []
                    row += [
                        f"{obs['p50']:.1f} / {e50:.1f} ({d50:+.1%})",
                        f"{obs['p99']:.1f} / {e99:.1f} ({d99:+.1%})",
                    ]
                edge = server.get("edge_ttft") or {}  # seconds
                row.append(
                    f"{1000 * (edge.get('p50') or 0):.1f} / {1000 * (edge.get('p99') or 0):.1f}"
                )
                heads = res["headers_ms"]
                row.append(f"{heads['p50'] or 0:.1f} / {heads['p99'] or 0:.1f}")
                chunks = max(1, res["chunks"])
                client_s = (res.get("client_cpu_util") or 0.0) * res["wall_s"]
                row.append(
                    f"{1e6 * sum(cpu.values()) / chunks:.1f} / {1e6 * client_s / chunks:.1f}"
                )
                row.append(cores_by_role(cpu, res))
                row.append("**no**" if missed else "yes")
                runs.append((c, cpu, res, not missed))
                if missed and first_off is None:
                    first_off = c
                    ttft50 = statistics.median(exp_ttft)
                    edge50 = 1000 * (edge.get("p50") or 0)
                    where = f"There it missed on {', '.join(missed)}, with the machine " + (
                        f"{100 * res['machine_busy']:.0f} % busy. "
                    )
                    if any(m.startswith("ITL") for m in missed):
                        where += "Chunks reach the client late and in bunches as the cores fill. "
                    if any(m.startswith("TTFT") for m in missed):
                        where += (
                            f"The server's own edge TTFT (p50 {edge50:.1f} ms) is within 5 % of "
                            f"the profile's ({ttft50:.1f} ms): the extra TTFT lies outside the "
                            "server's clock (the client, the kernel, or the edge's loop before "
                            "it reads the request)."
                            if edge50 and abs(edge50 / ttft50 - 1) <= 0.05
                            else f"The server's own edge TTFT (p50 {edge50:.1f} ms, profile "
                            f"{ttft50:.1f} ms) is late too: the server falls behind."
                        )
                rows.append(row)
        finally:
            stack.stop()
        verdict = (
            f"Client-observed latency stops matching the profile at **{first_off} "
            f"concurrent streams**. {where}"
            if first_off
            else "Client-observed latency matched the profile at every level measured."
        )
        self.lines += [
            f"## S2 latency fidelity ({self.model} profile)",
            "",
            f"Profile: TTFT {profile.ttft_ms:g}±{profile.ttft_std_ms:g} ms, ITL "
            f"{profile.itl_ms:g}±{profile.itl_std_ms:g} ms; ITL grows with the streams a "
            f"producer runs, x{profile.load_itl_factor:g} at {profile.max_concurrency_knee} "
            "streams. Closed loop, 100-token streams, at least 3 requests per worker, the "
            f"workers' starts spread over {self.S2_RAMP_S:g} s (`--ramp-s`; all at once, the "
            "first round is one burst of N requests that queues in the client and the edge). "
            f"Expected = {self.PLANS_PER_REQUEST} plans from `LatencyProfileManager.plan` per "
            "request, each at the load that request met (requests in flight when it was "
            "sent, per producer); match = median within 5 % and p99 within 10 %, for TTFT "
            "and ITL. Server edge TTFT = the edge's own arrival-to-first-write time "
            "(`GET /v1/metrics/latency`): the part of the client's TTFT the server controls. "
            "Client to headers = request sent -> response headers received: the time the "
            "request took to reach the edge and be accepted.",
            "",
            *md_table(
                [
                    "streams",
                    "requests",
                    "errors",
                    "TTFT p50 obs / exp ms",
                    "TTFT p99 obs / exp",
                    "ITL p50 obs / exp",
                    "ITL p99 obs / exp",
                    "server edge TTFT p50 / p99",
                    "client to headers p50 / p99",
                    "µs CPU per chunk server / client",
                    "cores by role",
                    "match",
                ],
                rows,
            ),
            verdict,
            "",
            *self._projection(runs),
            _floor_paragraph(machine),
            "",
            "What limits it: the cores. While the server and the client together use less than "
            "the machine's cores, chunks leave on their planned deadlines (the producer's "
            "timing error is ~1 ms p99, `python -m fakeai.services.bench.library`) and the "
            "client sees the profile. Once they are full, chunks fall due faster than the "
            "pipeline can deliver them: they reach the client late and in bunches (ITL p50 "
            "falls towards 0 while p99 grows) and new requests queue before their first "
            "token. The server's edge TTFT shows which side the delay is on: close to the "
            "profile's TTFT when the queueing happens before the request reaches the server "
            "(in the client or the kernel), larger when the server itself is late. The "
            "server's CPU per chunk falls as the load grows (the µs column): at a light load "
            "most of it is wake-ups (the floor above), at a heavy one each wake-up carries "
            "many chunks and what is left is the work per chunk and its socket write to the "
            "client.",
            "",
        ]

    PROJECT_TO = (10_000, 100_000)

    def _projection(
        self, runs: list[tuple[int, dict[str, float], dict[str, Any], bool]]
    ) -> list[str]:
        """The cores each role would need for :data:`PROJECT_TO` streams, twice: from the
        largest level that matched the profile (when one did), and from the largest level.
        The cost per chunk falls as the load grows (one wake-up of a process carries more
        chunks), so the first is an upper bound and the second, from a full machine, a lower
        one."""
        if not runs:
            return []
        matched = [r for r in runs if r[3]]
        sources = matched[-1:]
        if not sources or runs[-1][0] != sources[0][0]:
            sources.append(runs[-1])
        out = [
            "Cores for more streams, projected from a row's µs of CPU per delivered chunk by "
            "role times the chunks per second that many streams make at that row's rate per "
            "stream (the profile's ITL at that load). The cost per chunk is not constant: it "
            "falls as the load grows, because a process woken for one chunk at a light load "
            "is woken for many at a heavy one (`python -m fakeai.services.bench.floor` prints "
            "what a wake-up costs this machine). So the largest row that still matched the "
            "profile gives an upper bound and the heaviest row, whose machine was full, a "
            "lower one. "
            "Each edge and producer process is one thread, and one Redis process uses at most "
            "one core, so a role's cores are that many processes (for Redis, masters of a "
            "cluster: S7).",
            "",
        ]
        for level, cpu, res, ok in sources:
            why = "the largest that matched the profile" if ok else "the heaviest"
            lines = core_projection(cpu, res, level, self.PROJECT_TO)
            if not lines:
                continue
            per_chunk = ", ".join(
                f"{role} {1e6 * v / res['chunks']:.1f}"
                for role, v in sorted(cpu.items(), key=lambda kv: -kv[1])
            )
            out += [
                f"From the {level}-stream row ({why}; µs per chunk: {per_chunk}):",
                "",
                *[f"- {line}" for line in lines],
                "",
            ]
        return out if len(out) > 2 else []

    PLANS_PER_REQUEST = 4
    S2_RAMP_S = 3.0
    """About one request's length (TTFT + 100 tokens at the loaded ITL): workers start spread
    over it, as a steady load would arrive, not as one burst of N requests."""

    def _expected(
        self, manager: LatencyProfileManager, loads: list[list[int]], producers: int
    ) -> tuple[list[float], list[float]]:
        """Sorted TTFT and ITL (ms) the profile gives for requests that met these loads."""
        ttft: list[float] = []
        itl: list[float] = []
        for load, count in loads:
            per_producer = max(1, math.ceil(load / producers))
            for _ in range(count * self.PLANS_PER_REQUEST):
                plan = manager.plan(
                    self.model, output_tokens=100, prompt_tokens=12, current_load=per_producer
                )
                ttft.append(plan.ttft_s * 1000)
                itl.extend(g * 1000 for g in plan.itl_s)
        return sorted(ttft), sorted(itl)

    def s3(self) -> None:
        n = self.scale.s3
        stack = self.stack("s3")
        try:
            rows = self.resume_rows(stack.url, stack_meter(stack))
        finally:
            stack.stop()
        self.lines += [
            "## S3 resume",
            "",
            f"{n} concurrent 200-token streams; every client drops its connection every 20 "
            f"chunks, stays away {self.S3_DELAY_MS:g} ms (so the resume has events to catch up "
            "on), and resumes with `GET /v1/streams/{id}` + `Last-Event-ID`; afterwards each "
            "stream's text is compared with a full replay. Resume latency = reconnect sent -> "
            "first resumed event. The stress row makes 100 streams at 5 ms ITL (20,000 chunks/s) "
            "plus 1,000 resumes/s: the machine's two cores are busy.",
            "",
            *md_table(self.RESUME_HEAD, rows),
            "What limits it: a resume is one HTTP request. The edge parses it, checks the id "
            "against the stream's meta, reads the missed entries with one XRANGE, writes them, "
            "then follows the live stream. At the profile's pace that takes a few ms; in the "
            "stress row the cores are full and the resume waits in the edge's event loop "
            "behind the writes of every other stream.",
            "",
        ]

    def s4(self) -> None:
        rows = []
        for n in self.scale.s4:
            stack = self.stack(f"s4-{n}")
            try:
                cfg = self.cfg(stack.url, 1)
                meter = stack_meter(stack)
                probe = fan_out(cfg, n, tokens=300, itl_ms=10.0, timeout_s=120.0)
                res, cpu = meter.measure(functools.partial(run, probe))
            finally:
                stack.stop()
            per = 1e6 * sum(cpu.values()) / res["deliveries"] if res["deliveries"] else None
            rows.append(
                [
                    n,
                    res["events_per_reader"],
                    res["complete_readers"],
                    res["reader_errors"],
                    res["deliveries_per_s"],
                    res["lag_ms"]["p50"],
                    res["lag_ms"]["p99"],
                    res["lag_ms"]["max"],
                    per,
                ]
            )
        self.lines += [
            "## S4 fan-out",
            "",
            "One 300-token stream (ITL 10 ms) read live by N extra clients through "
            "`GET /v1/streams/{id}`. Lag = a reader's arrival time of an event minus the "
            "generating client's arrival time of the same event.",
            "",
            *md_table(
                [
                    "readers",
                    "events each",
                    "complete readers",
                    "reader errors",
                    "deliveries/s",
                    "lag p50 ms",
                    "lag p99 ms",
                    "lag max ms",
                    "server µs CPU/delivery",
                ],
                rows,
            ),
            "What limits it: the edge's socket writes. The edge reads the stream from Redis "
            "once per edge process and fans each event out in memory, so Redis and the "
            "producer cost the same for 1 or 1,000 readers; what grows is one socket write per "
            "reader per event, done one after another on the edge's event loop. The fixed cost "
            "per event is shared by more readers at 1,000 (less CPU per delivery), and the lag "
            "of the last reader is the time to write one event to all of them.",
            "",
        ]

    def s5(self) -> None:
        n = self.scale.s5
        # The client and the edge each hold one descriptor per connection: raise this
        # process's soft limit as far as the hard limit allows (``up`` inherits it).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n + 1024
        if soft != resource.RLIM_INFINITY and soft < want:
            top = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
            n = min(n, top - 1024)
        # Every stream runs at once (a producer takes at most 5,000 by default).
        stack = self.stack("s5", {"FAKEAI_MAX_STREAMS_PER_PRODUCER": str(max(n + 100, 5000))})
        roles = ("edge", "producer", "metrics")
        pids = {role: stack.pids(role) for role in roles}

        def rss_all() -> dict[str, float]:
            return {role: rss(pids[role]) for role in roles}

        def rss(role_pids: list[int]) -> float:
            samples = []
            for _ in range(5):
                samples.append(sum(procs.rss_bytes(p) or 0 for p in role_pids))
                time.sleep(0.2)
            return statistics.median(samples)

        try:
            cfg = self.cfg(stack.url, 1, timeout_s=120.0)
            run(run_bench(replace(cfg, requests=20, duration_s=None, ttft_ms=0.0, itl_ms=0.0)))
            base_edge, base_prod = rss(pids["edge"]), rss(pids["producer"])

            async def measure() -> dict[str, Any]:
                loop = asyncio.get_running_loop()
                e, p = await loop.run_in_executor(
                    None, lambda: (rss(pids["edge"]), rss(pids["producer"]))
                )
                return {"edge": e, "producer": p}

            res = run(hold_open(cfg, n, measure=measure, timeout_s=max(180.0, n / 20)))
        finally:
            stack.stop()
        # The soak gets a fresh stack: memory freed by the idle streams would otherwise hide
        # growth below the high-water mark they left.
        stack = self.stack("s5-soak")
        pids = {role: stack.pids(role) for role in roles}
        try:
            soak_cfg = self.cfg(stack.url, 50, max_tokens=16, ttft_ms=0.0, itl_ms=0.0)
            soaked = run(
                soak(soak_cfg, self.scale.s5_soak, max(1, self.scale.s5_soak // 4), rss_all)
            )
        finally:
            stack.stop()
        kib = 1024.0
        mib = kib * kib
        self.lines += [
            "## S5 idle capacity",
            "",
            f"{n} connected clients on slow streams (1 token per second); RSS is the median of "
            "5 samples, summed over the edge (and producer) processes, after every client had "
            "its first event, minus the RSS after a 20-request warm-up. Upstream FakeAI 0.3.2: "
            "~82 KiB per open stream (`notes/perf-anchors.md` §1c).",
            "",
            *md_table(
                [
                    "open streams",
                    "edge RSS before MiB",
                    "edge RSS open MiB",
                    "edge KiB/connection",
                    "producer KiB/stream",
                ],
                [
                    [
                        res["connected"],
                        base_edge / mib,
                        res["edge"] / mib,
                        (res["edge"] - base_edge) / kib / n,
                        (res["producer"] - base_prod) / kib / n,
                    ]
                ],
            ),
            "Soak on a fresh stack: "
            f"{soaked['requests']} streaming requests with unique prompts, "
            f"{soaked['concurrency']} closed-loop clients, max_tokens {soaked['max_tokens']}, "
            f"latency off ({soaked['requests_per_s']} req/s, {soaked['errors']} errors). RSS "
            "(MiB, median of 5 samples) with no request in flight; the last row is the slope "
            "over the last three quarters (KiB per 1,000 requests; upstream FakeAI 0.3.2 keeps "
            "4-6 KiB per request, `notes/perf-anchors.md` §1c).",
            "",
            *md_table(
                ["requests done", *(f"{r} RSS MiB" for r in roles)],
                [
                    [smp["requests"], *(smp["rss"][r] / mib for r in roles)]
                    for smp in soaked["samples"]
                ]
                + [
                    [
                        "growth KiB/1k req",
                        *(soaked["growth_kib_per_1k"].get(r, float("nan")) for r in roles),
                    ]
                ],
            ),
            "What limits it: per open connection the edge keeps uvicorn's protocol and "
            "transport objects with their buffers, the response's task and its disconnect "
            "watcher, and a hub subscription; the routing stack (request, body, endpoint "
            "frames) is released before the first byte, heartbeats and stall checks share one "
            "timer per event loop. Per open stream the producer keeps the response text and "
            "its token boundaries (a few bytes per token) and makes each chunk when it is "
            "due. After a request, what stays is bounded by count: the last 100 finished "
            "streams in the producer's StreamManager and the last 10,000 finished stream ids "
            "in the metrics consumer; everything else lives in Redis until its retention.",
            "",
        ]

    PEER_TTFT_MS, PEER_ITL_MS = 20.0, 5.0
    """The peer's default simulated TTFT and ITL (± 10 %, the same for every model)."""

    def s6(self) -> None:
        peer = PeerServer(self.peer_venv, free_port(), self.work / "peer.log")
        self.lines += ["## S6 peer: upstream `fakeai` 0.3.2", ""]
        error = peer.install()
        if error:
            self.lines += [f"Skipped: {error}.", ""]
            return
        try:
            peer.start()
            meter = CpuMeter({pid: "fakeai" for pid in peer.pids()}, None)
            rows = self.throughput_rows(peer.url, meter, self.scale.s6)
        finally:
            peer.stop()
        fidelity = []
        peer = PeerServer(self.peer_venv, free_port(), self.work / "peer-latency.log")
        try:
            peer.start(latency=True)
            for c in self.scale.s2[:2]:
                n = max(self.scale.s2_requests, 3 * c)
                cfg = self.cfg(
                    peer.url, c, requests=n, duration_s=None, max_tokens=100, timeout_s=300.0
                )
                res = run(run_bench(cfg))
                cells: list[Any] = [c, res["errors"]]
                for obs, exp in (
                    (res["ttft_ms"], self.PEER_TTFT_MS),
                    (res["itl_ms"], self.PEER_ITL_MS),
                ):
                    cells.append(f"{obs['p50']:.2f} / {exp:g} ({obs['p50'] / exp - 1:+.1%})")
                    cells.append(f"{obs['p99']:.2f}")
                fidelity.append(cells)
        finally:
            peer.stop()
        ours = {row[0]: row for row in self.s1_rows}
        side = [
            [
                row[0],
                ours[row[0]][2],
                row[2],
                f"{ours[row[0]][2] / row[2]:.2f}x" if row[2] else "-",
                ours[row[0]][6],
                row[6],
                f"{row[6] / ours[row[0]][6]:.2f}x" if ours[row[0]][6] else "-",
            ]
            for row in rows
            if row[0] in ours and ours[row[0]][6] is not None and row[6] is not None
        ]
        self.lines += [
            "The same load as S1 against `fakeai server` (PyPI 0.3.2, its own venv, "
            "`FAKEAI_GENERATION__TTFT_MS=0`, `FAKEAI_GENERATION__ITL_MS=0`) on loopback. It "
            "serves from one process (one core) and has no resume.",
            "",
            *md_table(self.THROUGHPUT_HEAD, rows),
        ]
        if side:
            self.lines += [
                "Side by side with S1 (latency off):",
                "",
                *md_table(
                    [
                        "streams",
                        "ours chunks/s",
                        "peer chunks/s",
                        "throughput ours/peer",
                        "ours µs CPU/chunk",
                        "peer µs CPU/chunk",
                        "CPU per chunk peer/ours",
                    ],
                    side,
                ),
            ]
        self.lines += [
            f"Latency fidelity of the peer at its defaults (TTFT {self.PEER_TTFT_MS:g} ms, ITL "
            f"{self.PEER_ITL_MS:g} ms, ± 10 %, for every model: its per-model profiles are not "
            "applied), the same closed loop as S2: observed median / configured. Its role "
            "chunk goes out before the TTFT wait, and each token waits one ITL, so its first "
            "content token comes one ITL after the configured TTFT.",
            "",
            *md_table(
                [
                    "streams",
                    "errors",
                    "TTFT p50 obs / configured ms",
                    "TTFT p99 ms",
                    "ITL p50 obs / configured ms",
                    "ITL p99 ms",
                ],
                fidelity,
            ),
        ]

    def s7(self) -> None:
        """Its own edge and producer counts per row: ``--edge-workers`` and
        ``--producer-workers`` do not apply."""
        self.lines += scaleout.s7(self)

    def s1r(self) -> None:
        self.lines += responses_rows.s1r(self)

    def s3r(self) -> None:
        self.lines += responses_rows.s3r(self)

    def s8(self) -> None:
        self.lines += aiperf.s8(self, (16,) if self.scale.quick else (16, 128, 512))

    def s10(self) -> None:
        self.lines += media_rows.s10(self)

    def s11(self) -> None:
        self.lines += media_rows.s11(self)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fakeai.services.bench.scenarios",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down levels, 3 s rows")
    parser.add_argument(
        "--producer-workers",
        type=int,
        default=1,
        help="producer processes of each stack (fakeai-streams up --producer-workers)",
    )
    parser.add_argument(
        "--edge-workers",
        type=int,
        default=1,
        help="edge processes of each stack (fakeai-streams up --edge-workers)",
    )
    parser.add_argument("--model", default="gpt-4o")
    parser.add_argument(
        "--s2-levels",
        default=None,
        help="S2's concurrency levels, comma-separated (default 10,100,200,300,500,1000,2000)",
    )
    parser.add_argument(
        "--peer-venv",
        type=Path,
        default=Path.home() / ".cache" / "fakeai-streams" / "peer-venv",
        help="venv for the upstream fakeai package (S6), reused when present",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    bad = [s for s in chosen if s not in SCENARIOS]
    if args.producer_workers < 1 or args.edge_workers < 1:
        parser.error("--producer-workers and --edge-workers: must be >= 1")
    if bad or not chosen:
        parser.error(f"--only: expected names from {','.join(SCENARIOS)}, got {args.only!r}")
    s2_levels: tuple[int, ...] | None = None
    if args.s2_levels is not None:
        try:
            s2_levels = tuple(int(x) for x in args.s2_levels.split(",") if x.strip())
        except ValueError:
            s2_levels = ()
        if not s2_levels or min(s2_levels) < 1:
            parser.error(
                f"--s2-levels: expected positive integers like 500,1000, got {args.s2_levels!r}"
            )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    command = " ".join(["python -m fakeai.services.bench.scenarios", *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="fakeai-bench-") as tmp:
        up_args = [
            "--producer-workers",
            str(args.producer_workers),
            "--edge-workers",
            str(args.edge_workers),
        ]
        scale = QUICK if args.quick else Scale()
        if s2_levels is not None:
            scale = replace(scale, s2=s2_levels)
        driver = Scenarios(scale, Path(tmp), args.model, args.peer_venv, up_args)
        driver.lines = header(command)
        failed = 0
        for name in chosen:
            logger.info("scenario %s", name)
            started = len(driver.lines)
            try:
                getattr(driver, name.lower())()
            except Exception as e:  # one broken scenario must not lose the others' figures
                logger.exception("scenario %s failed", name)
                del driver.lines[started:]
                driver.lines += [f"## {name}", "", f"Failed: `{e!r}`", ""]
                failed += 1
            args.out.write_text("\n".join(driver.lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
