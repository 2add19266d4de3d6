"""Edge test fixtures: a real edge under uvicorn, and the fake producer log writer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aredis
from tests.integration.edge.edgekit import Edge, LogWriter
from tests.support.servers import run_asgi

from fakeai.config import Settings
from fakeai.services.edge import create_app
from fakeai.services.edge.protocol import StampingHttpToolsProtocol
from fakeai.streams import Keys


@pytest.fixture
def logw(r: aredis.Redis, keys: Keys) -> LogWriter:
    return LogWriter(r, keys)


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"redis_url": redis_url, "key_prefix": key_prefix}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def start_edge(
    make_settings: Callable[..., Settings],
) -> Callable[..., contextlib.AbstractContextManager[Edge]]:
    """``with start_edge(**settings) as edge:`` an edge under real uvicorn, with the
    edge's own HTTP protocol (as ``make_server`` sets it up)."""

    @contextlib.contextmanager
    def start(**overrides: Any) -> Iterator[Edge]:
        app = create_app(make_settings(**overrides))
        with run_asgi(app, http=StampingHttpToolsProtocol) as url:
            yield Edge(url, app)

    return start


@pytest.fixture
def edge(start_edge: Callable[..., contextlib.AbstractContextManager[Edge]]) -> Iterator[Edge]:
    """An edge with default settings."""
    with start_edge() as e:
        yield e
