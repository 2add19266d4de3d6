"""Edge test fixtures: a real edge under uvicorn, and the fake producer log writer.

Tests run on the session's single Redis (``redis_url``); a test marked :data:`BOTH` runs once
on it and once on the session's 3-master cluster (``cluster_url``): ``store_url`` is the one in
use, ``rc`` a client of it (``fakeai.streams.client.connect``), and the edge, the hub and the
log writer all use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.integration.edge.edgekit import Edge, LogWriter
from tests.support.servers import run_asgi, wait_attached

from fakeai.config import Settings
from fakeai.services.edge import create_app
from fakeai.services.edge.protocol import StampingHttpToolsProtocol
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient


@pytest.fixture
def logw(rc: RedisClient, keys: Keys) -> LogWriter:
    return LogWriter(rc, keys)


@pytest.fixture
def make_settings(store_url: str, key_prefix: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"redis_url": store_url, "key_prefix": key_prefix}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def start_edge(
    make_settings: Callable[..., Settings],
) -> Callable[..., contextlib.AbstractContextManager[Edge]]:
    """``with start_edge(**settings) as edge:`` an edge under real uvicorn, with the
    edge's own HTTP protocol (as ``make_server`` sets it up: the head timeout is the
    settings' ``idle_timeout_s``)."""

    @contextlib.contextmanager
    def start(**overrides: Any) -> Iterator[Edge]:
        settings = make_settings(**overrides)
        app = create_app(settings)
        http = StampingHttpToolsProtocol.with_head_timeout(settings.idle_timeout_s)
        with run_asgi(app, http=http) as url:
            if "redis_url" not in overrides:  # the test's own Redis: it must be attached
                wait_attached(url, producers=False)
            yield Edge(url, app)

    return start


@pytest.fixture
def edge(start_edge: Callable[..., contextlib.AbstractContextManager[Edge]]) -> Iterator[Edge]:
    """An edge with default settings."""
    with start_edge() as e:
        yield e
