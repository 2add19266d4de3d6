"""What every scenario needs: scale, a fresh stack per scenario, bench runs, the report header."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fakeai.embedded_redis import free_port
from fakeai.services.bench import procs
from fakeai.services.bench.config import BenchConfig
from fakeai.services.bench.procs import CpuMeter
from fakeai.services.bench.runner import run_bench
from fakeai.services.bench.stack import LocalStack

__all__ = ["QUICK", "Driver", "Scale", "header", "run", "stack_meter"]

T = TypeVar("T")


@dataclass(frozen=True)
class Scale:
    """Concurrency levels and row length of the scenarios (``--quick`` scales them down)."""

    duration_s: float = 10.0
    s1: tuple[int, ...] = (1, 10, 100, 1000)
    s2: tuple[int, ...] = (10, 100, 300, 1000)
    s3: int = 100
    s4: tuple[int, ...] = (100, 1000)
    s5: int = 1000
    s6: tuple[int, ...] = (1, 10, 100)


QUICK = Scale(
    duration_s=3.0, s1=(1, 10, 100), s2=(10, 100), s3=20, s4=(20, 100), s5=200, s6=(1, 10)
)


def run(coro: Awaitable[T]) -> T:
    """Run one awaitable on a fresh uvloop event loop (the bench's loop)."""
    import uvloop

    async def wrap() -> T:
        return await coro

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(wrap())


def stack_meter(stack: LocalStack) -> CpuMeter:
    """CPU of every process ``up`` started, Redis's from ``INFO cpu``."""
    return CpuMeter({c.pid: c.role for c in stack.children}, stack.redis_url)


class Driver:
    """Shared state and helpers; the scenarios are its subclass's ``s1`` ... ``s6``."""

    def __init__(self, scale: Scale, work: Path, model: str, peer_venv: Path) -> None:
        self.scale, self.work, self.model, self.peer_venv = scale, work, model, peer_venv
        self.lines: list[str] = []

    def stack(self, name: str) -> LocalStack:
        return LocalStack(free_port(), self.work / name).start()

    def cfg(self, url: str, concurrency: int, **kw: Any) -> BenchConfig:
        base: dict[str, Any] = {"requests": None, "duration_s": self.scale.duration_s}
        base.update(kw)
        return BenchConfig(url=url, concurrency=concurrency, model=self.model, **base)

    def throughput_rows(self, url: str, meter: CpuMeter, levels: tuple[int, ...]) -> list[Any]:
        rows = []
        for c in levels:
            cfg = self.cfg(url, c, max_tokens=200, ttft_ms=0.0, itl_ms=0.0, timeout_s=120.0)
            run(run_bench(replace(cfg, requests=c, duration_s=None)))  # warm-up
            res, cpu = meter.measure(functools.partial(run, run_bench(cfg)))
            total = sum(cpu.values())
            per = 1e6 * total / res["chunks"] if res["chunks"] else None
            split = ", ".join(f"{k} {v / res['wall_s']:.2f}" for k, v in sorted(cpu.items()))
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
