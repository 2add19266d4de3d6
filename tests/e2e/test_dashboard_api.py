"""The dashboard's endpoints over real HTTP: the page, its live feed (SSE), the latency series
and the consumer groups, through the whole pipeline on a single Redis and on a cluster."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from tests.e2e.conftest import StartStack
from tests.support.servers import wait_until
from tests.support.sse import chat_text, timing
from tests.support.stack import Stack

from fakeai.streams import Keys

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"


@pytest.fixture
def paced(start_stack: StartStack) -> Iterator[Stack]:
    """The pipeline with the metrics consumer, timed by each request's timing headers."""
    with start_stack(metrics=True) as s:
        yield s


def _chat(max_tokens: int, stream: bool = True) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me about durable logs."}],
        "stream": stream,
        "max_tokens": max_tokens,
        "ignore_eos": True,
    }


def _feed(source: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for e in source.iter_sse():
        if e.data:
            yield e.event, json.loads(e.data)


def _run_chat(url: str, max_tokens: int, itl_ms: int, out: dict[str, Any]) -> threading.Thread:
    """A streaming chat request read to its end in a thread; ``out`` gets its stream id,
    text and usage."""

    def run() -> None:
        body = {**_chat(max_tokens), "stream_options": {"include_usage": True}}
        with (
            httpx.Client(base_url=url, timeout=30) as c,
            connect_sse(c, "POST", "/v1/chat/completions", json=body,
                        headers=timing(0, itl_ms)) as source,
        ):  # fmt: skip
            events = [e for e in source.iter_sse() if e.data]
            out["id"] = source.response.headers["x-stream-id"]
        out["text"] = chat_text(events)
        out["usage"] = json.loads(events[-2].data)["usage"]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_feed_shows_a_stream_running_then_done_with_its_tokens(paced: Stack) -> None:
    out: dict[str, Any] = {}
    with (
        httpx.Client(base_url=paced.url, timeout=10) as c,
        connect_sse(c, "GET", "/v1/dashboard/events") as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = _feed(source)
        name, first = next(events)
        assert name == "snapshot"
        assert first["streams"] == []
        thread = _run_chat(paced.url, 20, 30, out)
        seen: list[dict[str, Any]] = []
        for name, body in events:
            if name != "streams":
                continue
            seen.extend(body["streams"])
            if any(r["status"] != "running" for r in body["streams"]):
                break
        thread.join(30)
    sid = out["id"]
    mine = [r for r in seen if r["id"] == sid]
    assert mine, seen
    assert mine[0]["status"] == "running"  # seen while it ran, not only at its end
    assert mine[-1]["status"] == "done"
    assert mine[-1]["model"] == MODEL
    assert mine[-1]["tokens"] == out["usage"]["completion_tokens"] == 20
    # Tokens only grow, whatever the firehose delivered twice.
    counts = [r["tokens"] for r in mine]
    assert counts == sorted(counts)


def test_feed_snapshot_holds_a_stream_already_running(paced: Stack) -> None:
    with httpx.Client(base_url=paced.url, timeout=10) as c:
        with connect_sse(
            c, "POST", "/v1/chat/completions", json=_chat(40), headers=timing(0, 50)
        ) as source:
            sid = source.response.headers["x-stream-id"]
            first = [e for e, _ in zip(source.iter_sse(), range(2), strict=False) if e.data]
            assert first  # it runs: one chunk at least is out
        with connect_sse(c, "GET", "/v1/dashboard/events") as feed:
            name, body = next(_feed(feed))
    assert name == "snapshot"
    rows = {r["id"]: r for r in body["streams"]}
    assert sid in rows, body
    assert rows[sid]["status"] == "running"
    assert rows[sid]["model"] == MODEL
    assert 1 <= rows[sid]["chunks"] < 40


def test_feed_sends_the_consumer_groups(paced: Stack) -> None:
    with (
        httpx.Client(base_url=paced.url, timeout=10) as c,
        connect_sse(c, "GET", "/v1/dashboard/events") as source,
    ):
        groups = next(body["groups"] for name, body in _feed(source) if name == "groups")
    names = {(g["stream"], g["group"]) for g in groups}
    assert ("requests", "producers") in names


def test_series_has_points_once_a_stream_is_folded(paced: Stack) -> None:
    with httpx.Client(base_url=paced.url, timeout=10) as c:
        out: dict[str, Any] = {}
        _run_chat(paced.url, 10, 5, out).join(30)
        assert out["usage"]["completion_tokens"] == 10

        def points(metric: str) -> list[dict[str, Any]]:
            r = c.get("/v1/metrics/series", params={"metric": metric, "window": 300})
            assert r.status_code == 200, r.text
            got: list[dict[str, Any]] = r.json()["models"].get(MODEL, [])
            return got

        ttft = wait_until(lambda: points("ttft"), timeout_s=10)
        itl = wait_until(lambda: points("itl"), timeout_s=10)
        body = c.get(
            "/v1/metrics/series", params={"metric": "itl", "window": 300, "step": 7}
        ).json()
        latency = c.get("/v1/metrics/latency", params={"model": MODEL, "window": 300}).json()
    summary = latency["models"][MODEL]
    assert sum(p["count"] for p in ttft) == summary["ttft"]["count"] == 1
    # One gap between each two chunks that carry tokens: 10 tokens, 9 gaps.
    assert sum(p["count"] for p in itl) == summary["itl"]["count"] == 9
    assert all(p["p50"] is not None and p["p50"] <= p["p90"] <= p["p99"] for p in itl)
    assert body["object"] == "metrics.series"
    assert (body["step_s"], body["resolution_s"], body["unit"]) == (7, 1, "s")
    stepped = body["models"][MODEL]
    assert sum(p["count"] for p in stepped) == summary["itl"]["count"]
    assert all(p["t"] % 7 == 0 and body["start"] - 7 < p["t"] <= body["end"] for p in stepped)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({}, "metric"),
        ({"metric": "nope"}, "metric"),
        ({"metric": "ttft", "window": "0"}, "window"),
        ({"metric": "ttft", "window": "abc"}, "window"),
        ({"metric": "ttft", "window": str(10**9)}, "window"),
        ({"metric": "ttft", "step": "-1"}, "step"),
        ({"metric": "ttft", "step": "nan"}, "step"),
        ({"metric": "ttft", "window": "3600", "step": "1"}, "step"),  # 3,601 points
    ],
)
def test_series_bad_parameters_are_openai_400s(
    paced: Stack, query: dict[str, str], param: str
) -> None:
    r = httpx.get(f"{paced.url}/v1/metrics/series", params=query, timeout=10)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


def test_groups_show_each_group_and_an_observer_lag(paced: Stack, store: Any) -> None:
    with httpx.Client(base_url=paced.url, timeout=10) as c:
        r = c.post("/v1/chat/completions", json=_chat(5, stream=False), headers=timing(0, 0))
        assert r.status_code == 200
        settings = paced.settings
        key = Keys(settings.key_prefix).events_for(r.json()["id"], settings.firehose_partitions)
        # An observer that has read nothing: its lag is every entry of the partition. The
        # producer appends the stream's events to the firehose in batches of its own, which
        # may come after the response: count the partition when the groups are read.
        store.xgroup_create(key, "observer-test", id="0")

        def groups() -> tuple[int, dict[tuple[str, str], dict[str, Any]]] | None:
            entries = store.xlen(key)
            r = c.get("/v1/metrics/groups")
            assert r.status_code == 200, r.text
            got = {(g["stream"], g["group"]): g for g in r.json()["data"]}
            # The metrics consumer caught up (nothing left to deliver to it), and no batch
            # landed between the two counts.
            caught_up = got.get(("firehose", "metrics"), {}).get("lag") == 0
            if entries >= 1 and caught_up and store.xlen(key) == entries:
                return entries, got
            return None

        entries, got = wait_until(groups)
    observer = got[("firehose", "observer-test")]
    assert observer["lag"] == entries
    assert observer["pending"] == 0
    assert [p["key"] for p in observer["partitions"]] == [key]
    assert got[("requests", "producers")]["consumers"] >= 1


def test_root_redirects_to_the_page_and_its_files_are_served(paced: Stack) -> None:
    with httpx.Client(base_url=paced.url, timeout=10) as c:
        r = c.get("/")
        assert r.status_code == 307
        assert r.headers["location"] == "/dashboard"
        page = c.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for path, kind in (
            ("/dashboard/static/dashboard.js", "javascript"),
            ("/dashboard/static/dashboard.css", "text/css"),
        ):
            assert path in page.text
            r = c.get(path)
            assert r.status_code == 200, path
            assert kind in r.headers["content-type"], path
        missing = c.get("/dashboard/static/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        # Nothing is loaded from another origin.
        assert "http://" not in page.text.replace("http://www.w3.org", "")
        assert "https://" not in page.text


def test_feed_of_a_tenant_shows_its_own_streams_only(start_stack: StartStack) -> None:
    keys = {"Authorization": "Bearer sk-alice"}
    with (
        start_stack(api_keys="alice:sk-alice,bob:sk-bob") as s,
        httpx.Client(base_url=s.url, timeout=10) as c,
    ):
        assert c.get("/v1/dashboard/events").status_code == 401
        assert c.get("/v1/metrics/series?metric=ttft").status_code == 401
        with connect_sse(c, "GET", "/v1/dashboard/events", headers=keys) as source:
            events = _feed(source)
            assert next(events)[0] == "snapshot"
            for who in ("bob", "alice"):
                r = c.post(
                    "/v1/chat/completions",
                    json=_chat(3, stream=False),
                    headers={"Authorization": f"Bearer sk-{who}", **timing(0, 0)},
                )
                assert r.status_code == 200
                if who == "alice":
                    alice = r.json()["id"]
            rows: list[dict[str, Any]] = []
            for name, body in events:
                if name == "streams":
                    rows.extend(body["streams"])
                    if any(r["id"] == alice and r["status"] == "done" for r in rows):
                        break
    assert {r["id"] for r in rows} == {alice}
