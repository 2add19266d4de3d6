"""``fakeai-streams cluster``: a loopback Redis Cluster a user can point the services at."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import redis

pytestmark = pytest.mark.redis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_command_serves_a_cluster_and_stops_it_on_sigterm() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "fakeai.services.cli", "cluster"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _drive(proc)


def _drive(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready (or the process ends)
        m = re.search(r"(redis://127\.0\.0\.1:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        client = redis.RedisCluster.from_url(m.group(1))
        try:
            assert len(client.get_primaries()) == 3
            client.set("{a}x", 1)
            client.set("{b}x", 2)
            pids = [int(info["process_id"]) for info in client.info(target_nodes="all").values()]
        finally:
            client.disconnect_connection_pools()
            client.close()
        assert len(pids) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not any(_alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
