"""Is a Docker engine reachable? testcontainers tests run only where one answers."""

from __future__ import annotations

import os
import socket


def docker_available() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        # A plain connect first: docker-py leaks the socket of a refused connection, which
        # filterwarnings=error turns into a failure when Docker is absent.
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(host.removeprefix("unix://"))
            except OSError:
                return False
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        client.ping()
    except Exception:
        return False
    finally:
        client.close()
    return True
