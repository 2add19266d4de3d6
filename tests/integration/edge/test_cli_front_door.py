"""The CLI's front door, driven as a user drives it (a real ``fakeai-streams`` subprocess):
``replay ... | head`` ends quietly, importing a stream that exists is one clear line, and ``up``
with an unreachable ``FAKEAI_REDIS_URL`` says what is wrong and exits non-zero, quickly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from tests.integration.edge.edgekit import Edge, LogWriter

from fakeai.embedded_redis import free_port

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]
CLI = [sys.executable, "-m", "fakeai.services.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEAI_")}
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def _head_1(cmd: list[str]) -> tuple[bytes, int, bytes]:
    """``cmd | head -1``: the first line, then the reader is gone; (line, status, stderr)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE, env=_env())
    os.close(write_end)
    with os.fdopen(read_end, "rb") as head:
        first = head.readline()
    _, err = proc.communicate(timeout=30)
    return first, proc.returncode, err


def _run(cmd: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, env=env, stderr=subprocess.PIPE, timeout=60, **kw)


async def test_replay_into_head_ends_quietly_as_unix_tools_do(edge: Edge, logw: LogWriter) -> None:
    """Regression: ``replay ... | head`` printed a BrokenPipeError traceback."""
    t0 = time.time_ns() // 1000
    sid = await logw.create()
    await logw.chunks(sid, [f"t{i} " for i in range(40)], t_us=[t0 + 25_000 * i for i in range(40)])
    await logw.done(sid, t_us=t0 + 25_000 * 40)
    cmd = [*CLI, "replay", sid, "--url", edge.url, "--format", "sse", "--pace", "original"]
    first, status, err = await asyncio.to_thread(_head_1, cmd)
    assert first.startswith(b"id: ")
    assert status == 141, err  # 128 + SIGPIPE, as the shell reports `cat | head`
    assert err == b""


async def test_importing_a_stream_that_exists_is_one_clear_line(
    redis_url: str, key_prefix: str, logw: LogWriter, tmp_path: Path
) -> None:
    sid, _, _ = await logw.finished(3)
    env = _env(FAKEAI_REDIS_URL=redis_url, FAKEAI_KEY_PREFIX=key_prefix)
    recording = tmp_path / "stream.jsonl"
    with recording.open("wb") as out:
        exported = await asyncio.to_thread(_run, [*CLI, "export", sid], env, stdout=out)
    assert exported.returncode == 0, exported.stderr
    again = await asyncio.to_thread(_run, [*CLI, "import", str(recording)], env)
    assert again.returncode == 1
    lines = again.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert f"stream {sid} already exists" in lines[0]
    assert "--replace" in lines[0]
    assert f"fakeai-streams delete {sid}" in lines[0]
    replace = [*CLI, "import", "--replace", str(recording)]
    replaced = await asyncio.to_thread(_run, replace, env, stdout=subprocess.PIPE)
    assert replaced.returncode == 0, replaced.stderr
    assert sid in replaced.stdout.decode()


@pytest.mark.parametrize("how", ["env", "flag"])
def test_up_with_an_unreachable_redis_says_so_once_and_exits(how: str, tmp_path: Path) -> None:
    """Regression: ``up`` printed a 65-line traceback after ~16 s while the edge said ready."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    args = ["up", "--port", "0", "--state-dir", str(tmp_path)]
    env = _env(FAKEAI_REDIS_URL=url) if how == "env" else _env()
    if how == "flag":
        args += ["--redis-url", url]
    t0 = time.monotonic()
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, timeout=60)
    took = time.monotonic() - t0
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.count("\n") == 1, err
    assert f"cannot reach Redis at {url}" in err
    assert "FAKEAI_REDIS_URL" in err  # how to fix it
    assert "Traceback" not in err
    assert "ready" not in err
    assert done.stdout == b""
    print(f"up exited after {took:.2f} s")  # the "within a few seconds", for the log
