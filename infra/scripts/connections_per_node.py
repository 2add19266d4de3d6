"""How many Redis connections the services hold per node, idle and with N open streams.

    python infra/scripts/connections_per_node.py [--streams 1000] [--single]

Starts a 3-master loopback cluster (or, with --single, one redis-server), then
``fakeai-streams up`` against it (1 edge, 1 producer, 1 metrics consumer), and prints
``connected_clients`` of every node (minus this script's own connection and the cluster bus,
which is not a client) with no stream, 1 open stream and N open streams (long streams with a
slow ITL, read by N concurrent SSE clients). Every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import redis

from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.embedded_redis import EmbeddedRedis, free_port

BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hold on"}],
    "stream": True,
    "max_tokens": 400,
    "ignore_eos": True,
}
SLOW = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "500"}


def clients(ports: list[int]) -> list[int]:
    out = []
    for port in ports:
        c = redis.Redis(port=port)
        try:
            out.append(int(c.info("clients")["connected_clients"]) - 1)  # minus this probe
        finally:
            c.close()
    return out


async def hold(url: str, n: int, ports: list[int]) -> list[int]:
    opened = asyncio.Event()
    count = 0
    stop = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal count
        async with client.stream("POST", f"{url}/v1/chat/completions", json=BODY, headers=SLOW) as r:
            async for _ in r.aiter_bytes():
                count += 1 if count < n else 0
                if count >= n:
                    opened.set()
                break
            await stop.wait()

    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(n)]
        await asyncio.wait_for(opened.wait(), 120)
        await asyncio.sleep(1.0)  # let every reader settle
        seen = clients(ports)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return seen


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--single", action="store_true")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        if args.single:
            server = EmbeddedRedis(persistent=False)
            url = server.start()
            stack.callback(server.stop)
            ports = [int(url.rsplit(":", 1)[1].split("/")[0])]
        else:
            cluster = stack.enter_context(EmbeddedCluster(masters=3))
            url = cluster.url
            ports = [n.port for n in cluster.nodes]
        port = free_port()
        env = dict(os.environ, FAKEAI_REDIS_URL=url, FAKEAI_KEY_PREFIX="conn")
        state = stack.enter_context(tempfile.TemporaryDirectory())
        up = subprocess.Popen(
            [sys.executable, "-m", "fakeai.services.cli", "up", "--port", str(port),
             "--state-dir", state],
            env=env, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or up.poll() is not None:
                    raise SystemExit("up did not become ready")
                time.sleep(0.2)
            time.sleep(1.0)
            print(f"nodes {ports} ({'single' if args.single else 'cluster'})")
            print(f"  idle:            {clients(ports)}")
            print(f"  1 open stream:   {asyncio.run(hold(base, 1, ports))}")
            print(f"  {args.streams} open streams: {asyncio.run(hold(base, args.streams, ports))}")
        finally:
            os.killpg(up.pid, signal.SIGTERM)
            up.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
