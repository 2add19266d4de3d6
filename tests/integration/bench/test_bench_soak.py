"""The soak probe against a real `fakeai-streams up`: every request served, RSS per role."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakeai.embedded_redis import free_port
from fakeai.services.bench import procs
from fakeai.services.bench.config import BenchConfig
from fakeai.services.bench.driver import run
from fakeai.services.bench.soak import soak
from fakeai.services.bench.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLES = ("edge", "producer", "metrics")


def test_soak_serves_every_request_and_samples_each_role(tmp_path: Path) -> None:
    before = {p.pid for p in procs.descendants(os.getpid())}
    stack = LocalStack(free_port(), tmp_path / "stack").start()
    try:
        pids = {role: stack.pids(role) for role in ROLES}
        assert all(pids.values()), pids

        def rss() -> dict[str, float]:
            return {r: float(sum(procs.rss_bytes(p) or 0 for p in pids[r])) for r in ROLES}

        cfg = BenchConfig(
            url=stack.url, concurrency=20, requests=1, max_tokens=8, ttft_ms=0.0, itl_ms=0.0
        )
        res = run(soak(cfg, 300, 100, rss))
    finally:
        stack.stop()
    assert res["requests"] == 300
    assert res["errors"] == 0
    assert [s["requests"] for s in res["samples"]] == [0, 100, 200, 300]
    for s in res["samples"]:
        assert set(s["rss"]) == set(ROLES)
        assert all(v > 1e6 for v in s["rss"].values()), s
    assert set(res["growth_kib_per_1k"]) == set(ROLES)
    assert [p for p in procs.descendants(os.getpid()) if p.pid not in before] == []
