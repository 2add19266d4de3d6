"""Producer start-up opens its command pool (before it takes its lease, which makes the edge's
``/readyz`` say ready): the first requests find the connections open."""

from __future__ import annotations

import pytest
from tests.conftest import BOTH
from tests.integration.producer.conftest import StartProducer
from tests.support.redis_clients import connections_by_node

from fakeai.services.producer.service import pool_size

pytestmark = pytest.mark.redis


@BOTH
async def test_a_started_producer_holds_its_whole_command_pool(
    start_producer: StartProducer, store_url: str
) -> None:
    before = sum((await connections_by_node(store_url)).values())
    async with start_producer() as producer:
        started = sum((await connections_by_node(store_url)).values())
    # Its dedicated connections (partition readers, cancel listener) come on top.
    assert started - before >= pool_size(producer.settings)
