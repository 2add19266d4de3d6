"""What every scenario needs: scale, a fresh stack per scenario, bench runs, the report header."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fakeai.embedded_redis import free_port
from fakeai.services.bench import procs
from fakeai.services.bench.config import BenchConfig, Endpoint
from fakeai.services.bench.procs import CpuMeter
from fakeai.services.bench.runner import run_bench
from fakeai.services.bench.stack import LocalStack

__all__ = [
    "QUICK",
    "Driver",
    "Scale",
    "core_projection",
    "cores_by_role",
    "cpu_note",
    "header",
    "measure_run",
    "run",
    "server_latency",
    "stack_meter",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Scale:
    """Concurrency levels and row length of the scenarios (``--quick`` scales them down)."""

    duration_s: float = 10.0
    s1: tuple[int, ...] = (1, 10, 100, 1000)
    s2: tuple[int, ...] = (10, 100, 200, 300, 500, 1000, 2000)
    s2_requests: int = 200
    """Requests per S2 level at least (TTFT percentiles need samples)."""
    s3: int = 100
    s4: tuple[int, ...] = (100, 1000)
    s5: int = 10_000
    """Idle connections held open at once (S5 targets 10,000)."""
    s5_soak: int = 100_000
    """Short requests of S5's soak (RSS sampled every quarter)."""
    s6: tuple[int, ...] = (1, 10, 100)
    quick: bool = False
    """``--quick``: probes and S8 scaled down too (stays set when ``--s2-levels`` replaces
    the S2 levels)."""


QUICK = Scale(
    duration_s=3.0,
    s1=(1, 10, 100),
    s2=(10, 100),
    s2_requests=60,
    s3=20,
    s4=(20, 100),
    s5=200,
    s5_soak=2000,
    s6=(1, 10),
    quick=True,
)


def run(coro: Awaitable[T]) -> T:
    """Run one awaitable on a fresh uvloop event loop (the bench's loop)."""
    import uvloop

    async def wrap() -> T:
        return await coro

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(wrap())


def server_latency(url: str, model: str, *, window_s: float) -> dict[str, Any]:
    """The server's own latency summaries for ``model`` over the last ``window_s`` seconds.

    ``GET /v1/metrics/latency``; waits up to 5 s for the metrics consumer to fold the last
    streams (the count stops growing). Empty when the endpoint does not answer.
    """
    query = urllib.parse.urlencode({"model": model, "window": f"{math.ceil(window_s)}"})
    deadline, last, count = time.monotonic() + 5.0, {}, -1
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/metrics/latency?{query}", timeout=5) as resp:
                body = json.load(resp)
        except (OSError, ValueError):
            return {}
        last = body.get("models", {}).get(model, {})
        now = (last.get("e2e") or {}).get("count") or 0
        if now == count:
            break
        count = now
        time.sleep(0.5)
    return dict(last)


def stack_meter(stack: LocalStack) -> CpuMeter:
    """CPU of every process ``up`` started, Redis's from ``INFO cpu``."""
    return CpuMeter({c.pid: c.role for c in stack.children}, stack.redis_url)


class Driver:
    """Shared state and helpers; the scenarios are its subclass's ``s1`` ... ``s6``."""

    def __init__(
        self,
        scale: Scale,
        work: Path,
        model: str,
        peer_venv: Path,
        up_args: list[str] | None = None,
    ) -> None:
        self.scale, self.work, self.model, self.peer_venv = scale, work, model, peer_venv
        self.up_args = up_args or []
        """Extra ``fakeai-streams up`` arguments for every stack (e.g. more workers)."""
        self.lines: list[str] = []
        self.s1_rows: list[list[Any]] = []
        """S1's rows, kept for S6's side-by-side ratios."""

    def stack(self, name: str, env: dict[str, str] | None = None) -> LocalStack:
        return LocalStack(free_port(), self.work / name, self.up_args, env).start()

    def cfg(self, url: str, concurrency: int, **kw: Any) -> BenchConfig:
        base: dict[str, Any] = {"requests": None, "duration_s": self.scale.duration_s}
        base.update(kw)
        return BenchConfig(url=url, concurrency=concurrency, model=self.model, **base)

    def throughput_rows(
        self,
        url: str,
        meter: CpuMeter,
        levels: tuple[int, ...],
        notes: list[str] | None = None,
        endpoint: Endpoint = "chat",
    ) -> list[Any]:
        """One row per level; with ``notes``, a sentence per level on where the CPU went."""
        rows = []
        for c in levels:
            cfg = self.cfg(
                url,
                c,
                max_tokens=200,
                ttft_ms=0.0,
                itl_ms=0.0,
                timeout_s=120.0,
                endpoint=endpoint,
            )
            run(run_bench(replace(cfg, requests=c, duration_s=None)))  # warm-up
            res, cpu = measure_run(meter, run_bench(cfg))
            total = sum(cpu.values())
            per = 1e6 * total / res["chunks"] if res["chunks"] else None
            split = cores_by_role(cpu, res, client=False)
            if notes is not None and res["chunks"]:
                notes.append(cpu_note(c, cpu, res))
            rows.append(
                [
                    c,
                    res["requests_per_s"],
                    res["chunks_per_s"],
                    res["ttft_ms"]["p50"],
                    res["ttft_ms"]["p99"],
                    res["errors"],
                    per,
                    split,
                    res["client_cpu_us_per_chunk"],
                ]
            )
        return rows

    S3_DELAY_MS = 50.0
    S3_EVERY = 20

    def resume_rows(self, url: str, meter: CpuMeter, endpoint: Endpoint = "chat") -> list[Any]:
        """S3's rows: ``scale.s3`` streams of 200 tokens, each dropped every
        :attr:`S3_EVERY` events and resumed after :attr:`S3_DELAY_MS`, at the profile's pace
        and at a stress pace."""
        n = self.scale.s3
        loads: list[tuple[str, float | None, float | None]] = [
            (f"{self.model} profile", None, None),
            ("TTFT 50 ms, ITL 5 ms (stress)", 50.0, 5.0),
        ]
        rows = []
        for label, ttft_ms, itl_ms in loads:
            cfg = self.cfg(
                url,
                n,
                requests=n,
                duration_s=None,
                max_tokens=200,
                ttft_ms=ttft_ms,
                itl_ms=itl_ms,
                resume_every=self.S3_EVERY,
                resume_delay_ms=self.S3_DELAY_MS,
                timeout_s=120.0,
                endpoint=endpoint,
            )
            res, cpu = measure_run(meter, run_bench(cfg))
            r = res["resume"]
            rows.append(
                [
                    label,
                    res["requests_ok"],
                    res["errors"],
                    r["resumes"],
                    r["latency_ms"]["p50"],
                    r["latency_ms"]["p99"],
                    r["latency_ms"]["max"],
                    r["gaps"],
                    r["duplicates"],
                    r["text_mismatches"],
                    cores_by_role(cpu, res),
                ]
            )
        return rows

    RESUME_HEAD: ClassVar[list[str]] = [
        "timing",
        "streams ok",
        "errors",
        "resumes",
        "resume p50 ms",
        "resume p99 ms",
        "resume max ms",
        "gaps",
        "duplicates",
        "text mismatches",
        "cores by role",
    ]

    THROUGHPUT_HEAD: ClassVar[list[str]] = [
        "streams",
        "req/s",
        "chunks/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "errors",
        "server µs CPU/chunk (all processes)",
        "cores used by role",
        "client µs/chunk",
    ]


def measure_run(
    meter: CpuMeter, coro: Awaitable[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run a bench coroutine; its result (plus ``machine_busy``, the whole machine's busy
    fraction over the run) and the CPU seconds of the metered processes by role."""
    busy0, total0 = procs.cpu_times()
    res, cpu = meter.measure(functools.partial(run, coro))
    busy1, total1 = procs.cpu_times()
    res["machine_busy"] = (busy1 - busy0) / max(1.0, total1 - total0)
    return res, cpu


def cores_by_role(cpu: dict[str, float], res: dict[str, Any], *, client: bool = True) -> str:
    """``edge 0.31, producer 0.52, ...``: cores each role used over a bench run."""
    cores = {k: v / res["wall_s"] for k, v in cpu.items()}
    if client:
        cores["client"] = res.get("client_cpu_util") or 0.0
    text = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items()))
    busy = res.get("machine_busy")
    return text if busy is None or not client else f"{text}; machine {100 * busy:.0f} % busy"


def cpu_note(level: int, cpu: dict[str, float], res: dict[str, Any]) -> str:
    """Where one run's CPU went: µs per delivered chunk by role, and the cores in use."""
    per_role = sorted(cpu.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{role} {1e6 * s / res['chunks']:.1f}" for role, s in per_role)
    server = sum(cpu.values()) / res["wall_s"]
    client = res.get("client_cpu_util") or 0.0
    nproc = procs.machine()["nproc"]
    busy = res.get("machine_busy")
    busiest, busiest_s = per_role[0]
    if (busy is not None and busy >= 0.9) or server + client >= 0.9 * nproc:
        verdict = "the cores are full: CPU bounds the rate"
    elif busiest_s / res["wall_s"] >= 0.9:
        verdict = f"the {busiest} process has a core to itself and bounds the rate"
    else:
        verdict = (
            "cores are left over: the hops of each chunk (producer batch, Redis, the edge's "
            "read and write) bound the rate, not the CPU"
        )
    return (
        f"At {level} stream{'' if level == 1 else 's'}: µs per chunk by role: {parts}; cores "
        f"in use: server {server:.2f} + client {client:.2f} of {nproc}"
        + (f" (machine {100 * busy:.0f} % busy, kernel included)" if busy is not None else "")
        + f": {verdict}."
    )


def core_projection(
    cpu: dict[str, float], res: dict[str, Any], streams: int, targets: tuple[int, ...]
) -> list[str]:
    """How many cores each role would need for ``targets`` concurrent streams, from one run at
    ``streams``: its CPU seconds per delivered chunk by role times the chunks per second the
    targets would make at the same rate per stream. One line per target, e.g.
    ``10,000 streams (335,000 chunks/s): edge 4.5, producer 5.0, redis 2.3, metrics 1.3 cores``.

    The rate per stream is the run's (its profile's ITL at the load it ran); the cost per chunk
    is taken as constant, which holds while each process has a core of its own (no CPU
    contention) and nothing is shared beyond Redis."""
    chunks = res["chunks"]
    if not chunks or not streams:
        return []
    per_stream = chunks / res["wall_s"] / streams
    lines = []
    for n in targets:
        rate = per_stream * n
        roles = ", ".join(
            f"{role} {s / chunks * rate:.1f}"
            for role, s in sorted(cpu.items(), key=lambda kv: -kv[1])
        )
        total = sum(cpu.values()) / chunks * rate
        lines.append(f"{n:,} streams ({rate:,.0f} chunks/s): {roles}; {total:.1f} cores in all")
    return lines


def header(command: str) -> list[str]:
    m = procs.machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.2f}" for x in m["loadavg"])
    return [
        "# FakeAI Streams benchmarks",
        "",
        f"- Date: {now}",
        f"- Command: `{command}`",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"{m['os']}, Python {m['python']}; load average at start {load}",
        "- Client and servers share this machine; figures are from one run each.",
        "",
    ]
