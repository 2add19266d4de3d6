"""Scale-out: several edges and producers on one Redis or a cluster, and a master failover.

Resuming on another edge than the one that started the stream, and producers taking over each
other's streams, must lose and repeat nothing; a cluster master dying mid-stream (its replica
takes over) must end every open response with the stream's end or an error event, never a
hang, and new requests must succeed once the cluster is ok again.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from tests.support.servers import run_asgi, wait_until
from tests.support.sse import chat_text, timing
from tests.support.stack import run_stack

from fakeai.config import Settings
from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.services.edge import create_app

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Tell me about durable streams."}],
    "stream": True,
}


def test_streams_resume_on_another_edge_with_nothing_lost_or_repeated(start_stack: Any) -> None:
    """Streams start on edge A, are cut after a few events, and resume on edge B (and back),
    while two producers share the requests: every stream reads as its whole recording."""
    with start_stack(producers=2, latency_simulation=False) as a:
        app_b = create_app(a.settings)
        with run_asgi(app_b) as url_b, httpx.Client(timeout=30) as c:
            edges = [a.url, url_b]
            streams = []
            for i in range(12):
                body = {**BODY, "max_tokens": 40, "ignore_eos": True}
                with connect_sse(
                    c, "POST", f"{edges[0]}/v1/chat/completions", json=body,
                    headers={**timing(0, 3), "X-FakeAI-Seed": str(i)},
                ) as source:  # fmt: skip
                    sid = source.response.headers["x-stream-id"]
                    got = []
                    for e in source.iter_sse():
                        got.append(e)
                        if len(got) == 3:
                            break
                streams.append((sid, got))
            for n, (sid, got) in enumerate(streams):
                hop = 1
                while got[-1].data != "[DONE]":
                    edge = edges[(n + hop) % 2]
                    headers = {"Last-Event-ID": got[-1].id, "X-FakeAI-Disconnect-After": "9"}
                    with connect_sse(c, "GET", f"{edge}/v1/streams/{sid}", headers=headers) as s:
                        got += [e for e in s.iter_sse() if e.data]
                    hop += 1
                with connect_sse(c, "GET", f"{edges[n % 2]}/v1/streams/{sid}") as s:
                    whole = [e for e in s.iter_sse() if e.data]
                assert hop >= 3  # it did move between the edges
                assert [e.id for e in got] == [e.id for e in whole]  # no gap, no duplicate
                assert chat_text(got) == chat_text(whole)
                assert len(whole) == 40 + 2  # 40 tokens, the finish chunk and [DONE]


def _stream(
    url: str, body: dict[str, Any], headers: dict[str, str], out: dict[str, Any], read_s: float = 20
) -> None:
    events: list[ServerSentEvent] = []
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(30, read=read_s)) as c,
            connect_sse(c, "POST", f"{url}/v1/chat/completions", json=body, headers=headers) as s,
        ):
            out["sid"] = s.response.headers["x-stream-id"]
            for e in s.iter_sse():
                events.append(e)
    except Exception as e:  # recorded: the test asserts what happened
        out["error"] = e
    out["events"] = events


def _clean(out: dict[str, Any]) -> bool:
    """The response ended with the stream's own end: ``[DONE]`` after a data chunk."""
    events = out["events"]
    if "error" in out or len(events) < 2 or events[-1].data != "[DONE]":
        return False
    return "error" not in json.loads(events[-2].data)


def _seqs(events: list[ServerSentEvent]) -> list[int]:
    return [int(e.id.rpartition("-")[2]) for e in events if e.id]


@pytest.mark.slow
def test_a_master_failover_mid_stream_ends_every_response_and_service_resumes(
    cluster: EmbeddedCluster, key_prefix: str
) -> None:
    settings = Settings(redis_url=cluster.url, key_prefix=key_prefix)
    with run_stack(settings, producers=1, metrics=True) as stack:
        runs: list[dict[str, Any]] = [{} for _ in range(6)]
        threads = [
            threading.Thread(
                target=_stream,
                args=(
                    stack.url,
                    {**BODY, "max_tokens": 150, "ignore_eos": True},
                    {**timing(0, 20), "X-FakeAI-Seed": str(i)},
                    runs[i],
                ),
            )
            for i in range(len(runs))
        ]
        for t in threads:
            t.start()
        wait_until(
            lambda: all(len(r.get("events", [])) or r.get("sid") for r in runs), timeout_s=10
        )
        victim = cluster.masters()[0][1]
        cluster.kill(victim)
        cluster.failover_wait(victim, timeout_s=20)
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a response hung after the failover"
        for r in runs:
            events = r["events"]
            assert events, r
            # Never a silent gap: what was delivered is consecutive (the log's seqs are).
            seqs = _seqs(events)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
            if not _clean(r):  # cut short: it must say so with an error event
                assert any("error" in json.loads(e.data) for e in events if e.data != "[DONE]")
        # After the failover: new streams go through whole (every request partition: enough
        # streams that each of the 4 is hit with near certainty).
        with httpx.Client(timeout=10) as c:
            for _ in range(24):
                out: dict[str, Any] = {}
                _stream(stack.url, {**BODY, "max_tokens": 20}, timing(0, 0), out, read_s=10)
                info = c.get(f"{stack.url}/v1/streams/{out.get('sid')}/info").json()
                assert _clean(out), f"no clean stream after the failover: {out}, {info}"
                assert info["status"] == "done"
