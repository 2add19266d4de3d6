"""The dashboard in a real browser: Playwright driving Debian's chromium (never a download).

A real stack (producers, metrics consumer, the edge under uvicorn, on the session's single
Redis; the endpoints are tested on a cluster too, in ``test_dashboard_api.py``). The test
starts streams with its own HTTP client and checks what the page shows:

- the page loads with no console error and its live feed connects;
- a stream the test starts is listed within a second of its response headers;
- once streams finished, the model's TTFT and ITL charts have points;
- the stream page replays the stream at its recorded pace and shows the same text the test's
  client read; cut mid-way and resumed with Last-Event-ID, it still does, with no gap and no
  repeated event.

A screenshot of the overview, with streams running, is saved as a test artifact (the test's
tmp path) and, when ``FAKEAI_SCREENSHOT_OUT`` is set, to that path too::

    FAKEAI_SCREENSHOT_OUT=docs/dashboard.png .venv/bin/python -m pytest \\
        tests/e2e/test_dashboard_browser.py

Where chromium (``/usr/bin/chromium``, or ``FAKEAI_CHROMIUM``) or Playwright is missing the
test is skipped with the reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from tests.support.sse import chat_text, timing
from tests.support.stack import Stack, run_stack

from fakeai.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

MODEL = "gpt-4o"
CHROMIUM = os.environ.get("FAKEAI_CHROMIUM", "/usr/bin/chromium")
SHOWN_WITHIN_MS = 1000


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium, or set FAKEAI_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def dash(redis_url: str, key_prefix: str, sync_r: Any) -> Iterator[Stack]:
    """The pipeline with the metrics consumer, timed by each request's headers (sync_r: the
    prefix's keys are deleted afterwards)."""
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
    with run_stack(settings, metrics=True) as s:
        yield s


class _Chat:
    """A streaming chat request read to its end in a thread: its id as soon as the headers
    arrive (:attr:`started`), its text once it ends."""

    def __init__(self, url: str, model: str, tokens: int, itl_ms: int) -> None:
        self.started = threading.Event()
        self.id = ""
        self.text = ""
        self.error: BaseException | None = None
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Describe a durable log."}],
            "stream": True,
            "max_tokens": tokens,
            "ignore_eos": True,
        }
        self._thread = threading.Thread(target=self._run, args=(url, body, itl_ms), daemon=True)
        self._thread.start()

    def _run(self, url: str, body: dict[str, Any], itl_ms: int) -> None:
        try:
            with (
                httpx.Client(base_url=url, timeout=30) as c,
                connect_sse(c, "POST", "/v1/chat/completions", json=body,
                            headers=timing(0, itl_ms)) as source,
            ):  # fmt: skip
                self.id = source.response.headers["x-stream-id"]
                self.started.set()
                self.text = chat_text([e for e in source.iter_sse() if e.data])
        except BaseException as e:
            self.error = e
            self.started.set()

    def join(self) -> str:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the stream did not end"
        if self.error is not None:
            raise self.error
        return self.text


def test_dashboard_in_chromium(dash: Stack, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{dash.url}/")
    assert page.url == f"{dash.url}/dashboard"
    page.wait_for_selector("#feed-status[data-state=live]", timeout=10_000)

    # A stream started now is listed within a second of its response headers.
    chat = _Chat(dash.url, MODEL, 40, 40)
    assert chat.started.wait(10)
    assert chat.error is None, chat.error
    row = page.wait_for_selector(f'tr[data-stream-id="{chat.id}"]', timeout=SHOWN_WITHIN_MS)
    assert row is not None
    assert MODEL in row.inner_text()
    text = chat.join()
    assert text
    page.wait_for_selector(f'tr[data-stream-id="{chat.id}"][data-status=done]', timeout=5_000)
    tokens = page.inner_text(f'tr[data-stream-id="{chat.id}"] td.tokens')
    assert tokens == "40"

    # Its model's charts have points (the page reloads them once streams finish).
    for metric in ("ttft", "itl"):
        chart = f'svg.chart[data-model="{MODEL}"][data-metric="{metric}"]'
        page.wait_for_function(
            "(sel) => Number(document.querySelector(sel)?.dataset.points) > 0",
            arg=chart,
            timeout=15_000,
        )
        assert page.locator(f"{chart} circle.pt").count() > 0

    # The stream page replays it at its pace, with the same text.
    page.click(f'tr[data-stream-id="{chat.id}"] a')
    page.wait_for_selector("#sv-state[data-state=done]", timeout=15_000)
    assert page.inner_text("#sv-text") == text
    arrived = [
        float(t) for t in page.locator("#sv-events tbody tr td:nth-child(2)").all_inner_texts()
    ]
    assert arrived == sorted(arrived)
    # At its recorded pace: 40 tokens 40 ms apart take more than a second to replay.
    assert arrived[-1] > 1000

    # Cut mid-way, then resume with Last-Event-ID: the same text, no gap, no repeat.
    page.click("#sv-replay")
    page.wait_for_function("() => Number(document.querySelector('#sv-count').textContent) >= 8")
    page.click("#sv-cut")
    page.wait_for_selector("#sv-state[data-state=cut]")
    cut_at = int(page.inner_text("#sv-count"))
    assert cut_at < 43  # cut before the end
    page.click("#sv-resume")
    page.wait_for_selector("#sv-state[data-state=done]", timeout=15_000)
    assert page.inner_text("#sv-text") == text
    assert page.get_attribute("#sv-check", "data-ok") == "true"

    # A screenshot of the overview (the artifact, and the README's): a few models with
    # finished streams in the charts, and streams running.
    page.click("text=← all streams")
    others = ("llama-3.1-8b", "gpt-4o-mini")
    for c in [_Chat(dash.url, model, 20, 10 + 10 * i) for i, model in enumerate(others)]:
        c.join()
    for model in others:
        page.wait_for_selector(f'svg.chart[data-model="{model}"]', timeout=15_000)
    running = [_Chat(dash.url, model, 80, 60) for model in (MODEL, *others)]
    for c in running:
        assert c.started.wait(10)
        page.wait_for_selector(f'tr[data-stream-id="{c.id}"]', timeout=5_000)
    page.wait_for_selector("#groups tbody tr")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    out = os.environ.get("FAKEAI_SCREENSHOT_OUT")
    if out:
        shutil.copyfile(shot, out)
    for c in running:
        c.join()
    page.close()
    assert not problems, json.dumps(problems, indent=1)
