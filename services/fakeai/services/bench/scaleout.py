"""S7 scale-out: the same load on one redis-server and on a 3-master Redis Cluster.

Rows: {one redis-server, a 3-master :class:`~fakeai.embedded_cluster.EmbeddedCluster`} x
{1 edge + 1 producer, 2 edges + 2 producers}, one metrics consumer each. Every row gets a fresh
Redis (no persistence, like the cluster's nodes) and a fresh stack: ``fakeai-streams up
--edge-workers N --producer-workers N`` with ``FAKEAI_REDIS_URL`` naming the server or one
cluster node, so the stack detects the cluster by itself. The load is S1's closed loop: 50
streams of 200 tokens, latency off, for the scale's row length, after a 50-request warm-up.

Per row: chunks/s, errors, server CPU per chunk (every stack process from ``/proc``, plus every
Redis node's ``INFO cpu``), Redis CPU and commands per chunk on each node (``INFO stats``
``total_commands_processed`` deltas), keys on each node at the end (``DBSIZE``). Then
:func:`estimate` states on paper, from those per-chunk costs, what N nodes would carry and what
fills up first. The decisions are pure functions of :class:`Row` (tested without servers).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.embedded_redis import EmbeddedRedis, free_port
from fakeai.services.bench import procs
from fakeai.services.bench.driver import measure_run, run
from fakeai.services.bench.procs import CpuMeter, RedisNode
from fakeai.services.bench.report import md_table
from fakeai.services.bench.runner import run_bench
from fakeai.services.bench.stack import LocalStack
from fakeai.streams.keys import STREAM_BUCKETS

if TYPE_CHECKING:
    from fakeai.services.bench.driver import Driver

__all__ = ["NodeDelta", "Row", "estimate", "node_deltas", "report", "s7"]

logger = logging.getLogger(__name__)

RedisKind = Literal["single", "cluster"]
STREAMS = 50
TOKENS = 200
MASTERS = 3
SETUPS: tuple[tuple[RedisKind, int], ...] = (
    ("single", 1),
    ("single", 2),
    ("cluster", 1),
    ("cluster", 2),
)
"""(Redis, edges = producers) of each row, in the order they run."""


@dataclass(frozen=True)
class NodeDelta:
    """What one Redis node did during a row's measured run (keys: at its end)."""

    address: str
    cpu_s: float
    commands: int
    keys: int
    usec_by_command: dict[str, int]


def node_deltas(before: Sequence[RedisNode], after: Sequence[RedisNode]) -> list[NodeDelta]:
    """Per node ``after - before``; a node missing from ``before`` counts from zero."""
    old = {n.address: n for n in before}
    out = []
    for n in after:
        b = old.get(n.address)
        out.append(
            NodeDelta(
                address=n.address,
                cpu_s=n.cpu_s - (b.cpu_s if b else 0.0),
                commands=n.commands - (b.commands if b else 0),
                keys=n.keys,
                usec_by_command={
                    k: v - (b.usec_by_command.get(k, 0) if b else 0)
                    for k, v in n.usec_by_command.items()
                },
            )
        )
    return out


@dataclass(frozen=True)
class Row:
    redis: RedisKind
    workers: int
    """Edge processes, and as many producer processes."""
    res: dict[str, Any]
    """The bench result (``chunks``, ``chunks_per_s``, ``errors``, ``machine_busy``, ...)."""
    cpu: dict[str, float]
    """CPU seconds of the stack's processes by role (edge, producer, metrics)."""
    processes: dict[str, int]
    """The stack's processes by role."""
    nodes: list[NodeDelta]

    @property
    def name(self) -> str:
        return f"{self.redis}, {self.workers}+{self.workers}"

    @property
    def chunks(self) -> int:
        return int(self.res.get("chunks") or 0)

    def us(self, seconds: float) -> float:
        """CPU microseconds per delivered chunk."""
        return 1e6 * seconds / self.chunks if self.chunks else math.nan

    @property
    def server_us(self) -> float:
        return self.us(sum(self.cpu.values()) + sum(n.cpu_s for n in self.nodes))

    @property
    def node_us(self) -> list[float]:
        return [self.us(n.cpu_s) for n in self.nodes]

    @property
    def node_commands(self) -> list[float]:
        return [n.commands / self.chunks if self.chunks else math.nan for n in self.nodes]

    def cells(self) -> list[Any]:
        roles = sorted(self.cpu)
        by_role = ", ".join(f"{r} {self.us(self.cpu[r]):.1f}" for r in roles)
        by_role += f", redis {self.us(sum(n.cpu_s for n in self.nodes)):.1f}"
        busy = self.res.get("machine_busy")
        return [
            self.name,
            len(self.nodes),
            self.res.get("chunks_per_s"),
            self.res.get("errors"),
            self.server_us,
            by_role,
            " / ".join(f"{v:.2f}" for v in self.node_us),
            " / ".join(f"{v:.2f}" for v in self.node_commands),
            " / ".join(str(n.keys) for n in self.nodes),
            f"{100 * busy:.0f} %" if busy is not None else None,
        ]


HEAD = [
    "row (Redis, edges+producers)",
    "Redis nodes",
    "chunks/s",
    "errors",
    "server µs CPU/chunk (all processes, all nodes)",
    "µs CPU/chunk by role",
    "Redis µs CPU/chunk per node",
    "Redis commands/chunk per node",
    "keys per node",
    "machine busy",
]


def _best(rows: Sequence[Row], kind: RedisKind) -> Row | None:
    """The row of that Redis with the most workers among those that delivered chunks."""
    found = [r for r in rows if r.redis == kind and r.chunks]
    return max(found, key=lambda r: r.workers) if found else None


def _hot_commands(row: Row, busiest: int) -> str:
    """The commands that make the busiest node's CPU exceed the others' mean."""
    others = [n for i, n in enumerate(row.nodes) if i != busiest]
    if not others:
        return ""
    hot = row.nodes[busiest].usec_by_command
    extra = {
        cmd: usec - sum(o.usec_by_command.get(cmd, 0) for o in others) / len(others)
        for cmd, usec in hot.items()
    }
    top = sorted(((v, k) for k, v in extra.items() if v > 0), reverse=True)[:3]
    return ", ".join(f"{k.upper()} {row.us(v / 1e6):.2f} µs" for v, k in top)


def estimate(
    rows: Sequence[Row], sizes: Sequence[int] = (3, 6, 12), nproc: int | None = None
) -> list[str]:
    """On paper, from the measured per-chunk costs: the chunks/s N masters would carry, and the
    first bottleneck. Every figure names the row it comes from. ``nproc``: the cores the rows
    ran on (default: this machine's)."""
    c = _best(rows, "cluster")
    if c is None:
        return ["No cluster row delivered chunks, so there is no per-node cost to scale."]
    per_node = c.node_us
    total = sum(per_node)
    busiest = max(range(len(per_node)), key=per_node.__getitem__)
    others = [v for i, v in enumerate(per_node) if i != busiest]
    # The busiest node's excess over the others' mean stays on one node; the rest spreads.
    # At the measured N, spread / N + hot is exactly the busiest node's cost.
    hot = per_node[busiest] - sum(others) / len(others) if others else 0.0
    spread = total - hot
    where = f'(row "{c.name}")'
    node = c.nodes[busiest].address

    def redis_rate(n: int) -> float:
        return 1e6 / (spread / n + hot)

    out = [
        f"Redis spent {total:.1f} µs of CPU per chunk over its {len(per_node)} masters "
        f"{where}, {per_node[busiest]:.1f} µs on the busiest ({node}) and "
        f"{min(per_node):.1f} µs on the least busy; {sum(c.node_commands):.2f} commands per "
        "chunk in all. A Redis node runs commands on one thread, so a node is full at one core. "
        f"Spreading the {spread:.1f} µs the nodes share over N masters and keeping the busiest "
        f"node's extra {hot:.1f} µs over the others' mean on one node"
        + (f" (by command: {hc})" if (hc := _hot_commands(c, busiest)) else "")
        + ", N masters carry "
        + ", ".join(f"{redis_rate(n):,.0f} chunks/s at N = {n}" for n in sizes)
        + (f", and never more than {1e6 / hot:,.0f} chunks/s" if hot > 0 else "")
        + f" before one node's core is full. Stream logs and metas spread over {STREAM_BUCKETS} "
        "bucket tags; what does not spread is per model: one model's time series, counters and "
        "per-stream `ts_seen` keys share the tag `{<model>}` (`fakeai.streams.keys`), and this "
        "load uses one model, so one node takes all of the metrics consumer's time-series "
        f"writes (keys per node {' / '.join(str(n.keys) for n in c.nodes)} in row "
        f'"{c.name}"): that slot is the hot key. '
        "Cost per chunk is taken as constant; batching (more chunks per pipeline and per read "
        "as load grows) lowers it, so these lean low.",
    ]
    s = _best(rows, "single")
    if s is not None:
        s_us = sum(s.node_us)
        out.append(
            f'One redis-server spent {s_us:.1f} µs per chunk (row "{s.name}"): alone it is full '
            f"at {1e6 / s_us:,.0f} chunks/s. The cluster costs {total / s_us:.2f}x as much Redis "
            f"CPU per chunk ({sum(c.node_commands):.2f} vs {sum(s.node_commands):.2f} commands "
            "per chunk): writes split into one pipeline per node and reads into one per node "
            "and bucket. "
            + (
                f'Measured here, row "{c.name}" delivered {c.res["chunks_per_s"]:,.0f} chunks/s, '
                f'{c.res["chunks_per_s"] / s.res["chunks_per_s"]:.0%} of row "{s.name}".'
                if s.workers == c.workers and s.res.get("chunks_per_s")
                else ""
            )
        )
    limits = {f"the busiest Redis node ({node})": 1e6 / per_node[busiest]}
    for role in sorted(c.cpu):
        us, n = c.us(c.cpu[role]), max(1, c.processes.get(role, 1))
        if us > 0:
            what = {
                "edge": "edges (reading the logs, and the socket writes to every client)",
                "producer": "producers",
                "metrics": "metrics consumer" + ("s" if n > 1 else ""),
            }.get(role, role)
            limits[f"the {n} {what}"] = n * 1e6 / us
    first, rate = min(limits.items(), key=lambda kv: kv[1])
    out.append(
        f'With the processes of row "{c.name}", each on a core of its own, the first to fill '
        f"up is {first}, at {rate:,.0f} chunks/s; then "
        + ", ".join(f"{k} at {v:,.0f}" for k, v in sorted(limits.items(), key=lambda kv: kv[1])[1:])
        + ". The services scale by adding processes (edges and producers are stateless, "
        "metrics consumers share one consumer group), so past them Redis bounds the rate, "
        "first at the busiest node. On this machine every "
        f"process of a row shares {nproc or procs.machine()['nproc']} cores with the load "
        "generator, so "
        "the measured rates above are bounded by those cores, not by the cluster."
    )
    return out


def report(rows: Sequence[Row], failures: Sequence[str], duration_s: float) -> list[str]:
    lines = [
        "## S7 scale-out (one redis-server vs a 3-master cluster)",
        "",
        f"Closed loop, {STREAMS} streams, {TOKENS}-token streams, latency off, "
        f"{duration_s:g} s per row after a {STREAMS}-request warm-up; each row on a fresh Redis "
        "(no persistence) and a fresh `fakeai-streams up --edge-workers N --producer-workers N` "
        "with one metrics consumer and `FAKEAI_REDIS_URL` naming the server or one cluster node "
        "(the stack detects the cluster). Server CPU = every stack process (`/proc`) plus every "
        "Redis node (`INFO cpu`) per chunk delivered; commands = `total_commands_processed` "
        "deltas per node; keys = `DBSIZE` per node at the end. Per-node figures are in node "
        "address order.",
        "",
        *md_table(HEAD, [r.cells() for r in rows]),
    ]
    for r in rows:
        if r.res.get("errors"):
            kinds = ", ".join(f"{k} {n}" for k, n in r.res.get("errors_by_kind", {}).items())
            sample = next(iter(r.res.get("error_samples", {}).values()), "")
            lines += [f'Errors of row "{r.name}": {kinds}; first: `{sample}`', ""]
    for f in failures:
        lines += [f"Row failed: {f}", ""]
    lines += ["On paper:", "", *estimate(rows), ""]
    return lines


class _Server(Protocol):
    def start(self, timeout_s: float = ...) -> str: ...
    def stop(self, timeout_s: float = ...) -> None: ...


def _row(driver: Driver, kind: RedisKind, workers: int) -> Row:
    server: _Server = (
        EmbeddedRedis(persistent=False) if kind == "single" else EmbeddedCluster(MASTERS)
    )
    url = server.start()
    try:
        up_args = ["--edge-workers", str(workers), "--producer-workers", str(workers)]
        work = driver.work / f"s7-{kind}-{workers}"
        stack = LocalStack(free_port(), work, up_args, {"FAKEAI_REDIS_URL": url}).start()
        try:
            cfg = driver.cfg(
                stack.url, STREAMS, max_tokens=TOKENS, ttft_ms=0.0, itl_ms=0.0, timeout_s=120.0
            )
            run(run_bench(replace(cfg, requests=STREAMS, duration_s=None)))  # warm-up
            meter = CpuMeter({c.pid: c.role for c in stack.children}, None)
            before = procs.redis_nodes(url)
            res, cpu = measure_run(meter, run_bench(cfg))
            after = procs.redis_nodes(url)
            counts: dict[str, int] = {}
            for child in stack.children:
                counts[child.role] = counts.get(child.role, 0) + 1
        finally:
            stack.stop()
    finally:
        server.stop()
    return Row(kind, workers, res, cpu, counts, node_deltas(before, after))


def s7(driver: Driver) -> list[str]:
    """Run every row (a row that fails is reported, the others still run); the report."""
    rows, failures = [], []
    for kind, workers in SETUPS:
        logger.info("S7 row %s, %d+%d", kind, workers, workers)
        try:
            rows.append(_row(driver, kind, workers))
        except Exception as e:  # one broken row must not lose the others' figures
            logger.exception("S7 row %s, %d+%d failed", kind, workers, workers)
            failures.append(f'"{kind}, {workers}+{workers}": `{e!r}`')
    return report(rows, failures, driver.scale.duration_s)
