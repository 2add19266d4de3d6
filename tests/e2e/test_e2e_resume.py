"""Resume, cancel and replay through the whole pipeline, with httpx and httpx-sse."""

from __future__ import annotations

import itertools
import json
import random
import statistics
import time
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from tests.support.servers import wait_until
from tests.support.sse import chat_text, timing
from tests.support.stack import Stack

from fakeai.streams import Keys
from fakeai.timeseries.names import CLIENT_DISCONNECTS
from fakeai.timeseries.store import counter_field

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Write at length about message queues."}],
    "stream": True,
}


def _read_all(c: httpx.Client, sid: str) -> list[ServerSentEvent]:
    with connect_sse(c, "GET", f"/v1/streams/{sid}") as source:
        return [e for e in source.iter_sse() if e.data]


def test_random_client_disconnects_and_resumes_lose_and_repeat_nothing(stack: Stack) -> None:
    rng = random.Random(1234)
    # ignore_eos: exactly 120 tokens, so the stream is long enough for many resumes whatever
    # natural length the stream id's seed would give.
    body = {**BODY, "max_tokens": 120, "ignore_eos": True}
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        got: list[ServerSentEvent] = []
        with connect_sse(
            c, "POST", "/v1/chat/completions", json=body, headers=timing(0, 3)
        ) as source:
            sid = source.response.headers["x-stream-id"]
            for e in source.iter_sse():
                got.append(e)
                if len(got) >= rng.randint(1, 6):
                    break  # the client drops the connection mid-stream
        resumes = 0
        while got[-1].data != "[DONE]":
            headers = {"Last-Event-ID": got[-1].id}
            take = rng.randint(1, 12)
            with connect_sse(c, "GET", f"/v1/streams/{sid}", headers=headers) as source:
                for n, e in enumerate((e for e in source.iter_sse() if e.data), 1):
                    got.append(e)
                    if n >= take:
                        break
            resumes += 1
        whole = _read_all(c, sid)
    assert resumes >= 5
    assert [e.id for e in got] == [e.id for e in whole]  # no gap, no duplicate
    assert chat_text(got) == chat_text(whole)
    assert len(chat_text(whole).split()) >= 60


def test_server_side_disconnects_every_few_events(stack: Stack) -> None:
    """``X-FakeAI-Disconnect-After`` cuts each response; resuming gets everything once."""
    body = {**BODY, "max_tokens": 60}
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        cut = {**timing(0, 2), "X-FakeAI-Disconnect-After": "7"}
        with connect_sse(c, "POST", "/v1/chat/completions", json=body, headers=cut) as source:
            sid = source.response.headers["x-stream-id"]
            got = list(source.iter_sse())
        assert len(got) == 7
        while got[-1].data != "[DONE]":
            hdrs = {"Last-Event-ID": got[-1].id, "X-FakeAI-Disconnect-After": "7"}
            with connect_sse(c, "GET", f"/v1/streams/{sid}", headers=hdrs) as source:
                more = [e for e in source.iter_sse() if e.data]
            assert 1 <= len(more) <= 7
            got += more
        whole = _read_all(c, sid)
    assert [e.id for e in got] == [e.id for e in whole]


def test_cancel_stops_generation(stack: Stack) -> None:
    tokens = 400  # 20 s at 50 ms
    body = {**BODY, "max_tokens": tokens, "ignore_eos": True}
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        events = []
        logged = 0  # entries in the stream's log once the cancel was accepted
        with connect_sse(
            c, "POST", "/v1/chat/completions", json=body, headers=timing(0, 50)
        ) as source:
            sid = source.response.headers["x-stream-id"]
            for e in source.iter_sse():
                events.append(e)
                if len(events) == 3:
                    assert c.post(f"/v1/streams/{sid}/cancel").json()["status"] == "cancelling"
                    logged = c.get(f"/v1/streams/{sid}/info").json()["chunks"]
        info = c.get(f"/v1/streams/{sid}/info").json()
    # Far short of the full generation, counted in log entries rather than timed: fewer than a
    # quarter of what was left went out after the cancel (~5 s of the stream: far more than
    # load delays a cancel; ignored, all 400 tokens go out).
    after = info["chunks"] - logged
    assert after < (tokens - logged) / 4, (logged, after)
    assert events[-1].data == "[DONE]"
    assert json.loads(events[-2].data)["error"]["code"] == "cancelled"
    assert info["status"] == "cancelled"


def test_replay_original_pace_matches_the_recording_and_fast_is_faster(stack: Stack) -> None:
    """20 chunks recorded at 50 ms ITL replay in about 1 s at original pace, in a burst fast.

    Measured against the recording's own span (its first chunk to its terminal entry, as the
    producer timed them), with margins a loaded machine does not use up: the replay waits for
    absolute deadlines, so lateness does not add up, and medians of gaps shrug off a stall.
    """
    body = {**BODY, "max_tokens": 20, "stream": False}
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        resp = c.post("/v1/chat/completions", json={**body, "stream": True}, headers=timing(0, 50))
        sid = resp.headers["x-stream-id"]
        timed: dict[str, float] = {}
        gap: dict[str, float] = {}
        for pace in ("original", "fast"):
            start = time.monotonic()
            with connect_sse(c, "GET", f"/v1/streams/{sid}", params={"pace": pace}) as source:
                stamps = [time.monotonic() for e in source.iter_sse() if e.data]
            timed[pace] = stamps[-1] - start
            gap[pace] = statistics.median(b - a for a, b in itertools.pairwise(stamps))
            assert len(stamps) >= 21
        timings = c.get(f"/v1/streams/{sid}/info").json()["timings"]
    recorded = timings["finished_at"] - timings["first_chunk_at"]  # ~19 gaps of 50 ms
    # Original pace: never shorter than the recording, and nowhere near twice it.
    assert recorded - 0.005 <= timed["original"] < 2 * recorded, (timed, recorded)
    # Fast: no waits, so the events come in a burst, not one per recorded gap.
    assert gap["fast"] < gap["original"] / 3, gap


def test_edge_records_delivery_timing_and_client_disconnects(stack: Stack, store: Any) -> None:
    keys = Keys(stack.settings.key_prefix)
    with httpx.Client(base_url=stack.url, timeout=20) as c:
        for _ in range(3):
            with connect_sse(
                c, "POST", "/v1/chat/completions", json={**BODY, "max_tokens": 5}
            ) as source:
                assert [e for e in source.iter_sse()][-1].data == "[DONE]"
        with connect_sse(
            c,
            "POST",
            "/v1/chat/completions",
            json={**BODY, "max_tokens": 50},
            headers=timing(0, 20),
        ) as source:
            next(source.iter_sse())  # then drop the connection

        def latency() -> dict[str, object]:
            body = c.get("/v1/metrics/latency", params={"model": MODEL, "window": 60}).json()
            return body["models"].get(MODEL, {})

        summary = wait_until(lambda: latency().get("edge_ttft", {}).get("count", 0) >= 4)
        assert summary
        field = counter_field(CLIENT_DISCONNECTS)
        wait_until(lambda: int(store.hget(keys.counters(MODEL), field) or 0) >= 1, timeout_s=10)
