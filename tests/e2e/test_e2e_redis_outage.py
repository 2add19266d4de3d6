"""Redis goes away and comes back: the services answer 503 meanwhile and recover, no restart.

The stack (producer + edge) runs against its own embedded Redis, which the test stops and
starts again on the same port (no persistence: it comes back empty, as after a failover to a
fresh node). Requests during the outage get 503 with Retry-After; once Redis answers again, a
streaming request completes end to end with [DONE], through the same processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.servers import wait_until
from tests.support.stack import run_stack

from fakeai.config import Settings
from fakeai.embedded_redis import EmbeddedRedis

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

BODY = {
    "model": "gpt-4o",
    "stream": True,
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "hi"}],
}
FAST = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "1"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(state_dir=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _stream_text(url: str) -> str | None:
    """The streamed text when the request completes with [DONE]; None on any failure."""
    try:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=BODY, headers=FAST, timeout=10
        ) as resp:
            if resp.status_code != 200:
                return None
            text, done = "", False
            for line in resp.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: {"):
                    for choice in json.loads(line[6:]).get("choices", []):
                        text += choice["delta"].get("content") or ""
            return text if done else None
    except httpx.HTTPError:
        return None


def test_services_recover_when_redis_returns(own_redis: EmbeddedRedis) -> None:
    settings = Settings(redis_url=own_redis.url, key_prefix="outage")
    with run_stack(settings) as stack:
        assert _stream_text(stack.url)

        port = own_redis.port
        own_redis.stop()
        resp = httpx.post(f"{stack.url}/v1/chat/completions", json=BODY, headers=FAST, timeout=10)
        assert resp.status_code == 503
        assert resp.headers["retry-after"].isdigit()
        assert resp.json()["error"]["code"] == "redis_unavailable"
        assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 503

        own_redis.port = port
        own_redis.start()
        wait_until(
            lambda: httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200, timeout_s=20
        )
        assert wait_until(lambda: _stream_text(stack.url), timeout_s=30, interval_s=0.2)
