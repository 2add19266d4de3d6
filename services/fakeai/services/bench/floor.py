"""What this machine charges for the steps every chunk takes, whatever the code does: the floor
under the per-chunk figures of BENCHMARKS.md.

    python -m fakeai.services.bench.floor [--json] [--quick]

It prints figures; it passes or fails nothing:

1. **python**: a pure-Python loop of ten million additions, in seconds: how fast this machine
   runs Python today (per-chunk CPU figures scale with it).
2. **wakeup**: a 250-byte message on a loopback TCP connection to a process that sleeps in
   ``recv`` until it arrives, answered with one byte the sender sleeps for: CPU µs per message
   (both processes, kernel included) and the round trip's wall time. Every hop of a paced
   chunk pays this when its receiver is idle: producer -> Redis, Redis -> edge, edge -> client.
3. **nowake**: the same message written and read in one process that never sleeps: the
   system calls alone (loopback TCP does the receiver's protocol work in the sender's call).
4. **xread**: Redis's own CPU (``INFO commandstats``) per ``XREAD`` over K stream keys, for
   K = 10, 100, 1000: non-blocking, and blocking (``BLOCK``) while one writer appends to a
   random key every millisecond. The edge's hub reads every watched key of a slot with one
   blocking XREAD (:mod:`fakeai.services.edge.hub`), so this is its Redis cost per wake-up.
5. **append**: Redis's whole CPU (``INFO cpu``: commands, network, event loop) per entry when
   :data:`APPEND_BATCH` 250-byte entries go to keys of 1,000 in turn in one pipelined write
   every millisecond (as fast as this client can, up to 32,000 entries/s, about 1,000 paced
   gpt-4o streams): alone, then with one blocking XREAD over the 1,000 keys reading them back
   as the hub does; and with a doorbell instead: each write also appends one entry naming
   the keys it wrote to a stream of its own (:data:`BELL`, as the producer's firehose batch
   names a flush's streams), the reader blocks on that stream alone and reads the named keys
   with one pipeline of XRANGEs. The first is what Redis charges per chunk for the
   producer's append; the second adds the hub's read; the third, a read whose cost follows
   the keys that changed rather than the keys watched.

The Redis is a scratch server on a free loopback port (:class:`fakeai.embedded_redis.
EmbeddedRedis`), stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import redis.asyncio as aredis

from fakeai.embedded_redis import EmbeddedRedis

__all__ = ["main", "measure"]

MESSAGE = b"x" * 250
"""About one chat chunk's SSE event."""
APPEND_BATCH = 32
"""Entries per pipelined write in the append figure (module docstring, 5)."""
BELL = "floor:bell"
"""The doorbell stream of the append figure's third reading (module docstring, 5)."""
Reading = Literal["none", "hub", "bell"]

_ECHO = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n, size = int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    got = 0
    while got < size:
        got += len(s.recv(65536))
    s.send(b"k")
s.sendall(repr(time.process_time()).encode())
s.close()
"""


def python_loop_s(n: int = 10_000_000) -> float:
    """Seconds for ``n`` additions in a Python loop."""
    t = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - t


def wakeup(messages: int) -> dict[str, float]:
    """Round trips to a sleeping echo process (module docstring, 2)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        child = subprocess.Popen(
            [sys.executable, "-c", _ECHO, str(port), str(messages), str(len(MESSAGE))]
        )
        try:
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(messages):
                    conn.sendall(MESSAGE)
                    conn.recv(1)
                wall = time.perf_counter() - wall
                cpu = time.process_time() - cpu
                rest = b""
                while chunk := conn.recv(64):
                    rest += chunk
            child_cpu = float(rest.decode())
        finally:
            child.wait(10)
    return {
        "cpu_us_per_message": (cpu + child_cpu) / (2 * messages) * 1e6,
        "round_trip_us": wall / messages * 1e6,
    }


def nowake(messages: int) -> float:
    """CPU µs per message written and read by one process that never sleeps (module
    docstring, 3)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as a:
            b, _ = listener.accept()
            with b:
                a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                cpu = time.process_time()
                for _ in range(messages):
                    a.sendall(MESSAGE)
                    got = 0
                    while got < len(MESSAGE):
                        got += len(b.recv(65536))
                return (time.process_time() - cpu) / messages * 1e6


class _Streams:
    """``keys`` stream keys holding one entry each, a writer and a reader connection; use
    with ``async with``."""

    def __init__(self, url: str, keys: int) -> None:
        self.r = aredis.Redis.from_url(url)
        self.w = aredis.Redis.from_url(url)
        self.names = [f"floor:{i}" for i in range(keys)]
        self.last: dict[Any, Any] = {}
        """Key -> the id the next read starts after."""
        self.read = 0
        """Entries :meth:`read_all` read."""
        self.stop = asyncio.Event()

    async def __aenter__(self) -> _Streams:
        await self.r.flushdb()
        pipe = self.w.pipeline(transaction=False)
        for k in self.names:
            pipe.xadd(k, {"d": MESSAGE})
        self.last = dict(zip(self.names, await pipe.execute(), strict=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.r.aclose()
        await self.w.aclose()

    async def read_all(self) -> None:
        """Blocking XREADs over every key, as the hub reads, until a quiet read after
        :attr:`stop` (everything appended was read)."""
        while True:
            got: Any = await self.r.xread(self.last, count=512, block=200)
            if not got and self.stop.is_set():
                return
            for key, rows in got:
                self.last[key.decode()] = rows[-1][0]
                self.read += len(rows)

    async def read_rung(self) -> None:
        """The doorbell read: block on :data:`BELL` alone; each of its entries names the keys
        one write appended to, and one pipeline of ``XRANGE key (<last> +`` reads those. Until
        a quiet read after :attr:`stop`."""
        bell: Any = "0-0"
        while True:
            got: Any = await self.r.xread({BELL: bell}, count=512, block=200)
            if not got and self.stop.is_set():
                return
            changed: dict[str, None] = {}
            for _, rows in got:
                bell = rows[-1][0]
                for _, fields in rows:
                    changed.update(dict.fromkeys(fields[b"k"].decode().split()))
            pipe = self.r.pipeline(transaction=False)
            for key in changed:
                pipe.xrange(key, b"(" + self.last[key], b"+", count=512)
            for key, rows in zip(changed, await pipe.execute(), strict=True):
                if rows:
                    self.last[key] = rows[-1][0]
                    self.read += len(rows)

    async def every_ms(self, duration_s: float, write: Callable[[], Awaitable[None]]) -> float:
        """Await ``write`` once per millisecond for ``duration_s``, then set :attr:`stop`.
        Returns the seconds it took (the writer may fall behind its millisecond)."""
        loop = asyncio.get_running_loop()
        due = start = loop.time()
        end = due + duration_s
        while due < end:
            due += 0.001
            await asyncio.sleep(max(0.0, due - loop.time()))
            await write()
        elapsed = loop.time() - start
        self.stop.set()
        return elapsed


async def _xread_cost(url: str, keys: int, duration_s: float) -> dict[str, float]:
    """Module docstring, 4."""
    async with _Streams(url, keys) as s:
        r = s.r
        await r.config_resetstat()
        for _ in range(max(5, int(20_000 / keys))):
            await r.xread(s.last, count=512)
        flat = (await r.info("commandstats"))["cmdstat_xread"]["usec_per_call"]
        await r.config_resetstat()
        reader = asyncio.create_task(s.read_all())

        appended = 0

        async def one() -> None:
            nonlocal appended
            await s.w.xadd(random.choice(s.names), {"d": MESSAGE})
            appended += 1

        elapsed = await s.every_ms(duration_s, one)
        await reader
        stats = (await r.info("commandstats"))["cmdstat_xread"]
        return {
            "keys": keys,
            "nonblocking_us_per_call": flat,
            "blocking_us_per_call": stats["usec_per_call"],
            "blocking_calls_per_s": stats["calls"] / elapsed,
            "appends_per_s": appended / elapsed,
            "appended": appended,
            "read": s.read,
        }


async def _redis_cpu_s(r: aredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _append_cost(url: str, keys: int, duration_s: float, reader: Reading) -> dict[str, Any]:
    """Module docstring, 5."""
    async with _Streams(url, keys) as s:
        cpu = await _redis_cpu_s(s.w)
        reads = {"none": s.stop.wait, "hub": s.read_all, "bell": s.read_rung}[reader]
        task = asyncio.create_task(reads())
        turn = 0

        async def batch() -> None:
            nonlocal turn
            pipe = s.w.pipeline(transaction=False)
            names = [s.names[(turn + j) % keys] for j in range(APPEND_BATCH)]
            turn += APPEND_BATCH
            for name in names:
                pipe.xadd(name, {"d": MESSAGE})
            if reader == "bell":
                pipe.xadd(BELL, {"k": " ".join(names)}, maxlen=10_000, approximate=True)
            await pipe.execute()

        elapsed = await s.every_ms(duration_s, batch)
        await task
        cpu = await _redis_cpu_s(s.w) - cpu
        return {
            "reader": reader,
            "keys": keys,
            "appended": turn,
            "read": s.read,
            "entries_per_s": turn / elapsed,
            "redis_cpu_us_per_entry": cpu / turn * 1e6,
        }


def measure(quick: bool = False) -> dict[str, Any]:
    """Every figure of the module docstring."""
    messages = 2_000 if quick else 20_000
    out: dict[str, Any] = {
        "python_loop_s": python_loop_s(1_000_000 if quick else 10_000_000),
        "python_loop_additions": 1_000_000 if quick else 10_000_000,
        "wakeup": wakeup(messages),
        "nowake_cpu_us_per_message": nowake(messages),
    }
    with EmbeddedRedis() as server:
        out["redis"] = server.binary.flavor if server.binary else "?"
        out["xread"] = [
            asyncio.run(_xread_cost(server.url, k, 0.5 if quick else 3.0))
            for k in ((10, 100) if quick else (10, 100, 1000))
        ]
        keys, secs = (100, 0.5) if quick else (1000, 3.0)
        out["append"] = [
            asyncio.run(_append_cost(server.url, keys, secs, reader))
            for reader in ("none", "hub", "bell")
        ]
    return out


def report(m: dict[str, Any]) -> str:
    lines = [
        f"python: {m['python_loop_additions']:,} additions in a loop: {m['python_loop_s']:.2f} s",
        f"wakeup: a {len(MESSAGE)}-byte loopback TCP message to a sleeping process: "
        f"{m['wakeup']['cpu_us_per_message']:.1f} µs CPU per message (both ends, kernel "
        f"included), round trip {m['wakeup']['round_trip_us']:.1f} µs",
        f"nowake: the same message written and read by one busy process: "
        f"{m['nowake_cpu_us_per_message']:.1f} µs CPU",
    ]
    for x in m["xread"]:
        lines.append(
            f"xread over {x['keys']:,} keys ({m['redis']}): {x['nonblocking_us_per_call']:.1f} "
            f"µs of Redis CPU per call non-blocking, {x['blocking_us_per_call']:.1f} blocking "
            f"({x['blocking_calls_per_s']:,.0f} calls/s, {x['appends_per_s']:,.0f} appends/s)"
        )
    alone, read, bell = m["append"]
    lines.append(
        f"append: {APPEND_BATCH} entries per pipelined write over {alone['keys']:,} keys: "
        f"{alone['redis_cpu_us_per_entry']:.1f} µs of Redis CPU per entry (all of it) at "
        f"{alone['entries_per_s']:,.0f} entries/s; read back by one blocking XREAD over those "
        f"keys: {read['redis_cpu_us_per_entry']:.1f} µs at {read['entries_per_s']:,.0f} "
        f"entries/s; read back after a doorbell: {bell['redis_cpu_us_per_entry']:.1f} µs at "
        f"{bell['entries_per_s']:,.0f} entries/s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fakeai.services.bench.floor",
        description="What this machine charges per chunk step (module docstring).",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of text")
    ap.add_argument("--quick", action="store_true", help="fewer messages and keys, 0.5 s reads")
    args = ap.parse_args(argv)
    m = measure(args.quick)
    print(json.dumps(m) if args.json else report(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
