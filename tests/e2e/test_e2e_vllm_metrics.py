"""``GET /metrics`` after real streams (producer + metrics consumer + edge): the vLLM families
carry the ``engine`` label and every ``finished_reason``, ours mapped onto vLLM's; OpenMetrics
when asked; and the Grafana dashboard in ``infra/grafana/`` queries only names we expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import StartStack
from tests.support.servers import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

DASHBOARD = Path(__file__).parents[2] / "infra" / "grafana" / "fakeai-streams.json"
_NAME = re.compile(r"\b((?:vllm:|fakeai_)[A-Za-z0-9_:]+)")
_FAST = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}


def _exprs(node: object) -> list[str]:
    """Every ``expr`` and template ``query`` string in a Grafana dashboard."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "definition") and isinstance(v, str)]
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


async def _stream(c: httpx.AsyncClient, *, leave_early: bool = False) -> None:
    """A streamed chat of 4 tokens that ends by length (``ignore_eos``); ``leave_early``: the
    client goes after the first chunk of a slower stream (a client disconnect; the stream
    goes on to its end)."""
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {**_FAST, "X-FakeAI-ITL-Ms": "100"} if leave_early else _FAST
    async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status_code == 200
        async for _ in resp.aiter_bytes():
            if leave_early:
                break


async def test_metrics_after_real_streams(start_stack: StartStack) -> None:
    with start_stack(metrics=True) as stack:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as c:
            for leave in (False, False, True):
                await _stream(c, leave_early=leave)
            queried = {
                m for e in _exprs(json.loads(DASHBOARD.read_text())) for m in _NAME.findall(e)
            }
            assert queried, "the dashboard queries no metric"

            async def scraped() -> dict[str, object] | None:
                text = (await c.get("/metrics")).text
                fams = {f.name: f for f in text_string_to_metric_families(text)}
                done = sum(s.value for s in fams["vllm:request_success"].samples)
                exposed = {s.name for f in fams.values() for s in f.samples}
                # Every stream folded by the consumer, the edge's samples flushed.
                return fams if done >= 3 and queried <= exposed else None

            fams = await eventually(scraped, timeout_s=20)
            om = await c.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert fams is not None, "not every metric the Grafana dashboard queries was exposed"
    success = {
        s.labels["finished_reason"]: s.value
        for s in fams["vllm:request_success"].samples  # type: ignore[attr-defined]
        if s.labels["model_name"] == "gpt-4o"
    }
    assert success == {"stop": 0, "length": 3, "abort": 0, "error": 0}
    for name, fam in fams.items():
        for s in fam.samples:  # type: ignore[attr-defined]
            assert ("engine" in s.labels) == name.startswith("vllm:"), (name, s.labels)
    gen = fams["vllm:generation_tokens"].samples  # type: ignore[attr-defined]
    assert sum(s.value for s in gen) == 12
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    names = {f.name for f in openmetrics_families(om.text)}
    assert "vllm:request_success" in names
