"""A real ``fakeai-streams up`` in tests: its environment, its processes by role, killing one
child and waiting until ``up`` has started it again, and stopping it with nothing left behind.

Used by the chaos run (``tests/e2e/test_e2e_chaos.py``) and the ``up`` CLI tests
(``tests/e2e/test_cli_up.py``); the stack itself is :class:`fakeai.services.bench.stack.LocalStack`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from dataclasses import dataclass

import httpx
from tests.support.servers import eventually

from fakeai.services.bench.procs import alive, descendants
from fakeai.services.bench.stack import LocalStack

__all__ = [
    "ROLES",
    "Kill",
    "UpProcesses",
    "answers_a_stream",
    "kill_child",
    "stop_up",
    "up_env",
]

ROLES = ("producer", "edge", "metrics", "redis")
"""The processes ``up`` starts and supervises (``fakeai.services.bench.procs`` names them)."""

_PROBE_BODY = {
    "model": "gpt-4o",
    "stream": True,
    "max_tokens": 5,
    "ignore_eos": True,
    "messages": [{"role": "user", "content": "Tell me a long story."}],
}
_AT_ONCE = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}


def up_env(prefix: str, **extra: str) -> dict[str, str]:
    """Environment for a ``fakeai-streams up`` of the test's own: an embedded Redis whatever
    the caller's environment says, the test's key prefix."""
    env = {k: "" for k in os.environ if k.startswith("FAKEAI_")}  # empty = unset (from_env)
    env.update(REDIS_URL="", FAKEAI_KEY_PREFIX=prefix, **extra)
    return env


class UpProcesses:
    """The PIDs, by role, of the processes under a running ``up``; every PID ever seen is kept
    (restarted processes included) for the final "nothing left behind" check."""

    def __init__(self, stack: LocalStack) -> None:
        assert stack.proc is not None
        self.root = stack.proc.pid
        self.seen: dict[int, str] = {}
        self.sample()

    def sample(self) -> dict[str, list[int]]:
        by_role: dict[str, list[int]] = {}
        for p in descendants(self.root):
            # A forked child shows its parent's command line until it execs, an exited one
            # none: keep the first role of ours seen for a PID.
            if self.seen.get(p.pid) not in ROLES:
                self.seen[p.pid] = p.role
            by_role.setdefault(p.role, []).append(p.pid)
        return by_role

    def pid(self, role: str) -> int | None:
        pids = self.sample().get(role, [])
        return pids[0] if len(pids) == 1 else None

    def left(self) -> list[str]:
        return [f"{role} {pid}" for pid, role in self.seen.items() if alive(pid)]


@dataclass
class Kill:
    role: str
    old: int
    new: int
    back_s: float
    """SIGKILL until ``up`` had started the process again (a new PID)."""
    answers_s: float
    """SIGKILL until a new streaming request completed."""


async def answers_a_stream(url: str) -> bool:
    """A short streaming request completes with ``[DONE]`` and no error event."""
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as c,
            c.stream("POST", "/v1/chat/completions", json=_PROBE_BODY, headers=_AT_ONCE) as resp,
        ):
            if resp.status_code != 200:
                return False
            lines = [ln async for ln in resp.aiter_lines() if ln.startswith("data: ")]
    except httpx.HTTPError:
        return False
    return bool(lines) and lines[-1] == "data: [DONE]" and '"error"' not in "".join(lines)


async def kill_child(stack: LocalStack, procs: UpProcesses, role: str) -> Kill:
    """SIGKILL the process of ``role`` under ``up``; return once ``up`` started a new one and
    the service answers a streaming request again."""
    old = await eventually(lambda: _async(procs.pid(role)), timeout_s=10)
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)

    async def restarted() -> int | None:
        pid = procs.pid(role)
        return pid if pid not in (None, old) else None

    new = await eventually(restarted, timeout_s=30, interval_s=0.05)
    back_s = time.monotonic() - t0
    await eventually(lambda: answers_a_stream(stack.url), timeout_s=60, interval_s=0.2)
    line = re.compile(rf"{role} \(pid {old}\) exited \(signal 9\); restarting in [0-9.]+ s")
    assert line.search(stack.log_path.read_text()), f"no restart line for {role} {old}"
    return Kill(role, old, new, back_s, time.monotonic() - t0)


async def stop_up(stack: LocalStack, procs: UpProcesses) -> list[str]:
    """SIGTERM ``up``; it must exit 0. Returns the processes still alive afterwards."""
    assert stack.proc is not None
    procs.sample()
    stack.proc.send_signal(signal.SIGTERM)
    rc = await asyncio.to_thread(stack.proc.wait, 60)
    assert rc == 0, stack.log_path.read_text()[-3000:]
    try:
        await eventually(lambda: _async(not procs.left()), timeout_s=10)
    except AssertionError:
        pass
    return procs.left()


async def _async(value: object) -> object:
    return value
