"""End-to-end fixtures: the whole pipeline (producer + edge) on the test's Redis and prefix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.support.stack import Stack, run_stack

from fakeai.config import Settings

StartStack = Callable[..., contextlib.AbstractContextManager[Stack]]


@pytest.fixture
def start_stack(redis_url: str, key_prefix: str, sync_r: Any) -> StartStack:
    """``with start_stack(**settings) as stack:``; the prefix's keys are deleted afterwards."""

    def start(producers: int = 1, **overrides: Any) -> contextlib.AbstractContextManager[Stack]:
        values: dict[str, Any] = {"redis_url": redis_url, "key_prefix": key_prefix}
        values.update(overrides)
        return run_stack(Settings(**values), producers=producers)

    return start


@pytest.fixture
def stack(start_stack: StartStack) -> Iterator[Stack]:
    """Producer + edge with latency simulation off (as fast as possible)."""
    with start_stack(latency_simulation=False) as s:
        yield s
