"""Edge start-up opens its command pool before it serves: the first burst of requests finds
the connections open instead of opening them on the event loop (and delaying the others)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.conftest import BOTH
from tests.support.redis_clients import connections_by_node

from fakeai.config import Settings
from fakeai.services.edge import create_app
from fakeai.services.edge.app import POOL_CONNECTIONS

pytestmark = pytest.mark.redis


@BOTH
async def test_the_edge_opens_its_whole_command_pool_before_it_serves(
    make_settings: Callable[..., Settings], store_url: str
) -> None:
    before = sum((await connections_by_node(store_url)).values())
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        serving = sum((await connections_by_node(store_url)).values())
    assert serving - before >= POOL_CONNECTIONS
