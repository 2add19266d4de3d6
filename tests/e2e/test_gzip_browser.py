"""A browser's EventSource reads a gzipped stream as it is sent (chromium via Playwright).

Chromium asks for gzip on every request, EventSource's too; the replay of a recorded stream at
its original pace must still reach the page event by event. Skipped like the dashboard test
where chromium or Playwright is missing (a failure under ``CI=true``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from tests.e2e.test_dashboard_browser import browser  # noqa: F401 - the chromium fixture
from tests.support.sse import chat_text, timing
from tests.support.stack import Stack, run_stack

from fakeai.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(60)]

ITL_MS = 120
TOKENS = 8

_READ = """(url) => new Promise((resolve, reject) => {
    const got = [];
    const start = performance.now();
    const source = new EventSource(url);
    source.onmessage = (e) => {
        got.push({t: performance.now(), data: e.data});
        if (e.data === "[DONE]") { source.close(); resolve({start: start, got: got}); }
    };
    source.onerror = () => { source.close(); reject(new Error("EventSource failed")); };
})"""


@pytest.fixture
def edge(redis_url: str, key_prefix: str, sync_r: Any) -> Iterator[Stack]:
    with run_stack(Settings(redis_url=redis_url, key_prefix=key_prefix)) as s:
        yield s


def test_event_source_gets_a_gzipped_replay_event_by_event(
    edge: Stack,
    browser: Any,  # noqa: F811 - the fixture imported above
) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Say something durable."}],
        "stream": True,
        "max_tokens": TOKENS,
        "ignore_eos": True,
    }
    with (
        httpx.Client(base_url=edge.url, timeout=30) as c,
        connect_sse(c, "POST", "/v1/chat/completions", json=body,
                    headers=timing(0, ITL_MS)) as source,
    ):  # fmt: skip
        sid = source.response.headers["x-stream-id"]
        text = chat_text([e for e in source.iter_sse() if e.data])

    page = browser.new_page()
    encodings: list[str] = []
    page.on(
        "response",
        lambda r: (
            encodings.append(r.headers.get("content-encoding", ""))
            if f"/v1/streams/{sid}" in r.url
            else None
        ),
    )
    page.goto(f"{edge.url}/healthz")
    read = page.evaluate(_READ, f"/v1/streams/{sid}?pace=original")
    page.close()
    got = read["got"]

    assert encodings == ["gzip"]
    chunks = [json.loads(e["data"]) for e in got if e["data"] != "[DONE]"]
    replayed = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(replayed) == text
    times = [e["t"] for e in got if '"content"' in e["data"]]
    # At its recorded pace: the last event no earlier than its offset, counted from the
    # request (a lower bound: a loaded machine only delays it).
    assert times[-1] - read["start"] >= 0.5 * (len(times) - 1) * ITL_MS
    # Event by event: not held back by the compressor until the end (every event in one
    # read). A starved browser may take several at once, so only the ends are compared.
    assert times[-1] - times[0] >= 0.5 * ITL_MS
