"""Edge memory across many short-lived clients (issue 10, finding 8).

    python infra/scripts/edge_rss_cycles.py [--cycles 25000] [--concurrency 16] [--itl-ms 10]
                                            [--idle-s 5]

Starts a ``redis-server`` (``fakeai.embedded_redis``), then ``fakeai-streams up`` against it
(1 edge, 1 producer, 1 metrics consumer), and runs N connect/disconnect cycles over raw
sockets, each of the next kind in turn:

- ``connect-only``, ``partial-head``, ``partial-body``: the socket closed before a request is
  complete;
- ``before-first-byte``: a streaming chat request, closed as soon as it is sent;
  ``whole-at-once``: the same, not streaming;
- ``after-headers``, ``after-1-event``, ``after-3-events``: closed after that much of the
  answer; ``reset-after-1-event``: the same with an RST instead of a FIN;
- ``resume-at-once``, ``resume-after-prime``: ``GET /v1/streams/{id}`` of a recent stream,
  closed once sent, or after the priming event;
- ``stall-then-leave``: ``X-FakeAI-Fault: stall=60`` (no byte for 60 s), closed after the
  headers;
- ``whole-stream``: read to ``[DONE]`` (at ITL 0).

Streams are 10 tokens at TTFT 0 and ``--itl-ms`` each; with a long ITL many are still running
when their client leaves, so a subscription the edge forgot shows in the counts. The script
prints the edge process's RSS (``VmRSS`` of ``/proc/<pid>/status``) before the cycles, 1 s
after them, and after ``--idle-s`` more of idle, with the hub's watched keys and subscriptions and the open
responses from ``/readyz`` (its ``X-FakeAI-*`` headers): once every client has left, all
should be 0.
Every process it starts is stopped by PID, on SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fakeai.embedded_redis import EmbeddedRedis, free_port
from fakeai.services.bench.stack import LocalStack

BODY = json.dumps(
    {
        "model": "gpt-4o",
        "stream": True,
        "max_tokens": 10,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "cycle"}],
    }
).encode()
KINDS = (
    "connect-only",
    "partial-head",
    "partial-body",
    "before-first-byte",
    "whole-at-once",
    "after-headers",
    "after-1-event",
    "after-3-events",
    "reset-after-1-event",
    "resume-at-once",
    "resume-after-prime",
    "stall-then-leave",
    "whole-stream",
)
_SENT_THEN_GONE = (
    "connect-only",
    "partial-head",
    "partial-body",
    "before-first-byte",
    "whole-at-once",
    "resume-at-once",
)
_EVENTS = {"after-1-event": 1, "reset-after-1-event": 1, "after-3-events": 3}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def hub_stats(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            keys = resp.headers.get("X-FakeAI-Hub-Keys")
            subs = resp.headers.get("X-FakeAI-Hub-Subscriptions")
            responses = resp.headers.get("X-FakeAI-Open-Responses")
    except OSError as e:
        return f"(readyz: {e})"
    if keys is None:
        return "(readyz reports no hub figures)"
    return f"hub keys {keys}, subscriptions {subs}, open responses {responses}"


def _chat(port: int, itl_ms: int, *, stream: bool = True, fault: str | None = None) -> bytes:
    body = BODY if stream else BODY.replace(b'"stream": true', b'"stream": false')
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "X-FakeAI-TTFT-Ms: 0",
        f"X-FakeAI-ITL-Ms: {itl_ms}",
        f"Content-Length: {len(body)}",
    ]
    if fault:
        head.append(f"X-FakeAI-Fault: {fault}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _resume(port: int, sid: str) -> bytes:
    return f"GET /v1/streams/{sid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


class Cycles:
    def __init__(self, port: int, itl_ms: int) -> None:
        self.port = port
        self.itl_ms = itl_ms
        self.recent: str | None = None
        self.done = 0
        self.failed = 0

    def _request(self, kind: str) -> bytes:
        if kind.startswith("resume") and self.recent is not None:
            return _resume(self.port, self.recent)
        fault = "stall=60" if kind == "stall-then-leave" else None
        itl_ms = 0 if kind == "whole-stream" else self.itl_ms  # a whole read never waits long
        request = _chat(self.port, itl_ms, stream=kind != "whole-at-once", fault=fault)
        if kind == "connect-only":
            return b""
        if kind == "partial-head":
            return request[:40]
        if kind == "partial-body":
            return request[: len(request) - len(BODY) // 2]
        return request

    async def one(self, kind: str) -> None:
        request = self._request(kind)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            if kind in _SENT_THEN_GONE:
                return
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                self.failed += 1
                return
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"x-stream-id:"):
                    self.recent = line.split(b":", 1)[1].strip().decode()
            if kind == "resume-after-prime":
                await reader.readuntil(b"\n\n")  # the priming event (id: and retry:)
            seen = b""
            want = _EVENTS.get(kind, 0)
            while seen.count(b"data: ") < want or (
                kind == "whole-stream" and b"data: [DONE]" not in seen
            ):
                more = await reader.read(65536)
                if not more:
                    break
                seen += more
        finally:
            if kind.startswith("reset"):
                writer.transport.abort()  # an RST instead of a FIN
            else:
                writer.close()
            self.done += 1

    async def run(self, n: int, concurrency: int, kinds_: tuple[str, ...] = KINDS) -> None:
        kinds = itertools.cycle(kinds_)
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                try:
                    await asyncio.wait_for(self.one(next(kinds)), 30)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    self.failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=25_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--itl-ms", type=int, default=10, help="inter-token latency of each stream")
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--kinds", help="comma-separated subset of the kinds (default: all)")
    args = p.parse_args()
    kinds = tuple(args.kinds.split(",")) if args.kinds else KINDS
    if unknown := set(kinds) - set(KINDS):
        p.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    # A SIGTERM (timeout(1), a CI cancel) unwinds through the finally blocks below, so the
    # stack and the Redis this script started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    redis = EmbeddedRedis(persistent=False)
    redis.start()
    try:
        with tempfile.TemporaryDirectory(prefix="fakeai-rss-") as tmp:
            port = free_port()
            stack = LocalStack(port, Path(tmp), env={"FAKEAI_REDIS_URL": redis.url})
            stack.start(60.0)
            try:
                (edge,) = stack.pids("edge")
                print(f"edge pid {edge}; {args.cycles} cycles, {args.concurrency} at a time")
                print(f"{'before:':<16}{rss_mib(edge):7.1f} MiB  {hub_stats(stack.url)}")
                cycles = Cycles(port, args.itl_ms)
                t0 = time.monotonic()
                asyncio.run(cycles.run(args.cycles, args.concurrency, kinds))
                took = time.monotonic() - t0
                time.sleep(1.0)  # the edge has seen the last clients' disconnects
                print(
                    f"{'after (+1 s):':<16}{rss_mib(edge):7.1f} MiB  {hub_stats(stack.url)}  "
                    f"({cycles.done} cycles in {took:.0f} s, {cycles.failed} failed)"
                )
                time.sleep(args.idle_s)  # what stays once the last streams have ended
                idle = f"after {args.idle_s:g} s idle:"
                print(f"{idle:<16}{rss_mib(edge):7.1f} MiB  {hub_stats(stack.url)}")
            finally:
                stack.stop()
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
