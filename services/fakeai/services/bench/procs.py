"""Process and machine facts from ``/proc`` (Linux): CPU seconds, RSS, descendants, hardware.

``/proc/<pid>/stat`` (utime + stime, fields 14-15, proc(5)) and ``/proc/<pid>/status``
(``VmRSS``) give what psutil would, without a dependency. Redis's own figures come from each
node: CPU from ``INFO cpu`` (``used_cpu_sys`` + ``used_cpu_user``), which also works for a
server that is not our child, commands from ``INFO stats`` and ``INFO commandstats``, keys from
``DBSIZE``. Behind a URL of a Redis Cluster node they are read from every node the cluster
lists (``CLUSTER NODES``), so a figure "of Redis" is the sum over the nodes.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fakeai.cluster_topology import parse_cluster_nodes

__all__ = [
    "CpuMeter",
    "ProcInfo",
    "RedisNode",
    "alive",
    "cpu_seconds",
    "cpu_times",
    "descendants",
    "machine",
    "redis_cpu_seconds",
    "redis_nodes",
    "rss_bytes",
]

T = TypeVar("T")

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (exited, waiting to be reaped)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident set size; None when the process is gone."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    role: str
    """edge, producer, metrics, redis, or the program name."""


def _role(cmd: list[str]) -> str:
    for role in ("edge", "producer", "metrics"):
        if role in cmd[1:]:
            return role
    exe = Path(cmd[0]).name if cmd else "?"
    if "redis" in exe or "valkey" in exe:
        return "redis"
    return exe


def descendants(root: int) -> list[ProcInfo]:
    """Every live descendant of ``root`` (children, grandchildren, ...), with its role."""
    parents: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[ProcInfo] = []
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(ProcInfo(pid, _role(_cmdline(pid))))
        todo.extend(parents.get(pid, []))
    return sorted(out, key=lambda p: p.pid)


@dataclass(frozen=True)
class RedisNode:
    """One Redis server's counters at one moment."""

    address: str
    """``host:port``"""
    role: str
    """``single``, or ``master`` / ``replica`` in a cluster"""
    cpu_s: float
    commands: int
    """``total_commands_processed`` (every command, the edge's blocking reads included)"""
    keys: int
    usec_by_command: dict[str, int] = field(default_factory=dict)
    """CPU microseconds spent per command (``INFO commandstats``), e.g. ``{"xadd": 1200}``"""


def _node(address: str, role: str, client: Any) -> RedisNode:
    info = client.info("all")
    usec = {
        k.removeprefix("cmdstat_"): int(v["usec"])
        for k, v in info.items()
        if k.startswith("cmdstat_") and isinstance(v, dict)
    }
    return RedisNode(
        address=address,
        role=role,
        cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        commands=int(info["total_commands_processed"]),
        keys=int(client.dbsize()),
        usec_by_command=usec,
    )


def redis_nodes(url: str) -> list[RedisNode]:
    """The server at ``url``, or every node of its Redis Cluster (those not flagged failing),
    sorted by address; empty when it does not answer."""
    import redis

    host = urlsplit(url).hostname or "127.0.0.1"
    seed = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    try:
        if not int(seed.info("cluster").get("cluster_enabled", 0) or 0):
            port = seed.connection_pool.connection_kwargs.get("port", 6379)
            return [_node(f"{host}:{port}", "single", seed)]
        lines = parse_cluster_nodes(seed.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
    except (redis.RedisError, KeyError, ValueError):
        return []
    finally:
        seed.close()
    out = []
    down = {"fail", "fail?", "handshake", "noaddr"}
    for line in lines:
        if line.flags & down:
            continue
        ip, port = line.address
        client = redis.Redis(host=ip or host, port=port, socket_timeout=5, decode_responses=True)
        try:
            role = "replica" if "slave" in line.flags else "master"
            out.append(_node(f"{ip or host}:{port}", role, client))
        except (redis.RedisError, KeyError, ValueError):
            continue
        finally:
            client.close()
    return sorted(
        out, key=lambda n: (n.address.rpartition(":")[0], int(n.address.rpartition(":")[2]))
    )


def redis_cpu_seconds(url: str) -> float | None:
    """Redis's CPU seconds from ``INFO cpu``, summed over a cluster's nodes; None when it does
    not answer."""
    nodes = redis_nodes(url)
    return sum(n.cpu_s for n in nodes) if nodes else None


def cpu_times() -> tuple[float, float]:
    """``(busy, total)`` jiffies of the whole machine (``/proc/stat``): all processes and the
    kernel's own work (network interrupts included), which per-process figures miss."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, OS and Python: the header of a benchmark report."""
    model = "?"
    try:
        for line in (_PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib: float | None = None
    try:
        for line in (_PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }


class CpuMeter:
    """CPU seconds of a set of processes (``/proc``) plus Redis (``INFO cpu``), by role."""

    def __init__(self, pids: dict[int, str], redis_url: str | None) -> None:
        self.pids, self.redis_url = pids, redis_url

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, role in self.pids.items():
            if role != "redis" or self.redis_url is None:
                out[role] = out.get(role, 0.0) + (cpu_seconds(pid) or 0.0)
        if self.redis_url is not None:
            out["redis"] = redis_cpu_seconds(self.redis_url) or 0.0
        return out

    def measure(self, fn: Callable[[], T]) -> tuple[T, dict[str, float]]:
        before = self.sample()
        result = fn()
        after = self.sample()
        return result, {k: after[k] - before.get(k, 0.0) for k in after}
