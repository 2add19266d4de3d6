"""Servers the scenarios measure: a fresh local FakeAI Streams stack, and the upstream peer.

Both are subprocesses in their own sessions, started and stopped by PID: SIGTERM, a deadline,
then SIGKILL for whatever is still alive (the stack's children are recorded at start, so none
is left behind even if ``up`` itself had to be killed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

from fakeai.services.bench.procs import ProcInfo, alive, descendants

__all__ = ["LocalStack", "PeerServer", "wait_http"]

logger = logging.getLogger(__name__)

_STOP_DEADLINE_S = 30.0


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits, late at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} during start")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:g}s")
        time.sleep(0.1)


def _stop_pids(pids: list[int], deadline_s: float) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + deadline_s
    for pid in pids:
        while time.monotonic() < end and alive(pid):
            time.sleep(0.05)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                logger.warning("pid %d did not stop in time: killed", pid)


class _Server:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        logger.info("started %s (pid %d)", " ".join(cmd[:4]), self.proc.pid)
        return self.proc

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalStack(_Server):
    """``fakeai-streams up --port PORT --state-dir DIR`` and the processes it starts."""

    def __init__(
        self,
        port: int,
        state_dir: Path,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(state_dir / "up.log")
        self.port = port
        self.state_dir = state_dir
        self.extra = extra or []
        self.env = env or {}
        """Environment variables set for ``up`` (and so for every service it starts)."""
        self.url = f"http://127.0.0.1:{port}"
        self.children: list[ProcInfo] = []
        self.redis_url: str | None = None

    def start(self, timeout_s: float = 60.0) -> LocalStack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "fakeai.services.cli", "up", "--port", str(self.port)]
        cmd += ["--state-dir", str(self.state_dir), "--log-level", "WARNING", *self.extra]
        proc = self._spawn(cmd, {**os.environ, **self.env} if self.env else None)
        try:
            wait_http(f"{self.url}/readyz", proc, timeout_s)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise
        self.children = descendants(proc.pid)
        announced = self.state_dir / "redis.url"  # an embedded Redis
        if announced.exists():
            self.redis_url = announced.read_text().strip()
        else:  # an external Redis or cluster, as ``up`` was given it (config/settings.py)
            env = {**os.environ, **self.env}
            self.redis_url = env.get("FAKEAI_REDIS_URL") or env.get("REDIS_URL")
        return self

    def pids(self, *roles: str) -> list[int]:
        """PIDs of the stack's processes with these roles (all when none is given)."""
        return [c.pid for c in self.children if not roles or c.role in roles]

    def stop(self) -> None:
        """SIGTERM ``up`` (it stops its children in order), then make sure every one is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _stop_pids([c.pid for c in self.children if alive(c.pid)], 5.0)
        self._close_log()


class PeerServer(_Server):
    """Upstream ``fakeai`` from PyPI, in its own venv; latency simulation off unless asked."""

    PACKAGES = ("fakeai==0.3.2", "pillow")
    """``fakeai`` 0.3.2 imports PIL without declaring it (``notes/perf-anchors.md`` §1)."""

    def __init__(self, venv: Path, port: int, log_path: Path) -> None:
        super().__init__(log_path)
        self.venv = venv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def install(self, timeout_s: float = 900.0) -> str | None:
        """Create the venv and install the peer unless already there; an error text, or None."""
        exe = self.venv / "bin" / "fakeai"
        if exe.exists():
            return None
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=timeout_s
            )
            pip = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run(
                [*pip, *self.PACKAGES], check=True, timeout=timeout_s, capture_output=True
            )
        except (OSError, subprocess.SubprocessError) as e:
            return f"could not install {' '.join(self.PACKAGES)}: {e}"
        return None if exe.exists() else "the fakeai package installed no `fakeai` command"

    def start(self, timeout_s: float = 60.0, *, latency: bool = False) -> PeerServer:
        """Start it; ``latency`` keeps its default TTFT/ITL simulation (20 ms / 5 ms ± 10 %)."""
        env = dict(os.environ)
        if not latency:
            # The CLI's --ttft/--itl flags are not applied in 0.3.2; the environment is
            # (perf-anchors.md §1, "The CLI latency flags are not applied").
            env.update(FAKEAI_GENERATION__TTFT_MS="0", FAKEAI_GENERATION__ITL_MS="0")
        exe = str(self.venv / "bin" / "fakeai")
        proc = self._spawn([exe, "server", "--host", "127.0.0.1", "--port", str(self.port)], env)
        try:
            wait_http(f"{self.url}/v1/models", proc, timeout_s)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise
        return self

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid, *(c.pid for c in descendants(self.proc.pid))]

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pids(self.pids() if self.proc.poll() is None else [], _STOP_DEADLINE_S)
            self.proc.wait()
        self._close_log()
