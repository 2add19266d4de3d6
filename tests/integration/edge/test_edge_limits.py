"""Issue 10, findings 1, 2, 3 and 8 at the edge: every request is bounded before a producer sees
it, and a malformed one is a 400 naming what to change, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from tests.integration.edge.edgekit import MODEL, Edge, LogWriter, data_events, parse_sse

from fakeai.streams import Keys
from fakeai.streams.client import RedisClient

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

CHAT: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}
COMPLETION: dict[str, Any] = {"model": MODEL, "prompt": "hi", "stream": True}
ENDPOINTS = [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)]


def _err(resp: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


async def _published(rc: RedisClient, keys: Keys) -> int:
    """Generation requests on every partition (nothing may reach a producer)."""
    return sum([await rc.xlen(k) for k in keys.all_requests(4)])


@pytest.mark.parametrize(("path", "base"), ENDPOINTS)
@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("max_tokens", 1_000_000_000, "max_output_tokens"),
        ("max_tokens", 101, "max_output_tokens"),
        ("min_tokens", 101, "max_output_tokens"),
        ("n", 3, "max_choices"),
    ],
)
async def test_poison_request_beyond_a_cap_is_400_naming_the_setting(
    start_edge: StartEdge,
    rc: RedisClient,
    keys: Keys,
    path: str,
    base: dict[str, Any],
    field: str,
    value: int,
    setting: str,
) -> None:
    """Finding 1: ``max_tokens: 1e9`` with ``ignore_eos`` killed every producer in turn. Now
    a request beyond ``max_output_tokens`` / ``max_choices`` never reaches one."""
    with start_edge(max_output_tokens=100, max_choices=2) as edge:
        body = {**base, "ignore_eos": True, field: value}
        timing = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            err = _err(await c.post(path, json=body, headers=timing))
    assert err["param"] == field
    assert setting in err["message"]
    assert str(value) in err["message"]
    assert await _published(rc, keys) == 0


async def test_max_completion_tokens_beyond_the_cap_is_400(start_edge: StartEdge) -> None:
    with start_edge(max_output_tokens=100) as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            body = {**CHAT, "max_completion_tokens": 101}
            err = _err(await c.post("/v1/chat/completions", json=body))
            assert err["param"] == "max_completion_tokens"
            assert "max_output_tokens" in err["message"]
            body = {**CHAT, "max_completion_tokens": 10, "min_tokens": 20}
            assert _err(await c.post("/v1/chat/completions", json=body))["param"] == "min_tokens"


@pytest.mark.parametrize(
    ("path", "base", "field"),
    [
        ("/v1/chat/completions", CHAT, "max_tokens"),
        ("/v1/chat/completions", CHAT, "max_completion_tokens"),
        ("/v1/completions", COMPLETION, "max_tokens"),
    ],
)
async def test_max_tokens_zero_is_400_not_500(
    edge: Edge, path: str, base: dict[str, Any], field: str
) -> None:
    """Finding 8: ``max_tokens: 0`` was a 500."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        err = _err(await c.post(path, json={**base, field: 0}))
    assert err["param"] == field


@pytest.mark.parametrize(
    "raw", ["1e12", "1e300", "60001", "-1", "-0.5", "nan", "inf", "-inf", "soon"]
)
@pytest.mark.parametrize("header", ["X-FakeAI-TTFT-Ms", "X-FakeAI-ITL-Ms"])
async def test_timing_headers_beyond_max_timing_ms_or_not_finite_are_400(
    edge: Edge, rc: RedisClient, keys: Keys, header: str, raw: str
) -> None:
    """Finding 2: ``1e12`` or ``1e300`` ms held a producer slot for the stream timeout."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        for path, base in ENDPOINTS:
            err = _err(await c.post(path, json=base, headers={header: raw}))
            assert err["param"] == header
            if raw in ("1e12", "1e300", "60001"):
                assert "max_timing_ms" in err["message"]
    assert await _published(rc, keys) == 0


def _nested(depth: int) -> bytes:
    inner = b"[" * depth + b"]" * depth
    return json.dumps({**CHAT, "metadata_x": "@"}).encode().replace(b'"@"', inner)


@pytest.mark.parametrize("depth", [65, 300, 10_000])
async def test_deeply_nested_json_is_400_not_500(edge: Edge, depth: int) -> None:
    """Finding 8: 10,000 levels were a 500 (msgspec's RecursionError), and a few hundred
    levels a 500 later on (pydantic's serializer)."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.post(
            "/v1/chat/completions",
            content=_nested(depth),
            headers={"content-type": "application/json"},
        )
    err = _err(resp)
    assert err["code"] == "invalid_json"
    assert "64 levels" in err["message"]


async def test_nesting_within_the_limit_is_accepted(edge: Edge, logw: LogWriter) -> None:
    async with (
        httpx.AsyncClient(base_url=edge.url, timeout=10) as c,
        c.stream(
            "POST",
            "/v1/chat/completions",
            content=_nested(60),
            headers={"content-type": "application/json"},
        ) as resp,
    ):
        assert resp.status_code == 200
        req = await logw.take_request()
        await logw.done(req.stream_id)
        await resp.aread()


_FN = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("tools", "tool_choice", "param"),
    [
        ({"type": "function"}, None, "tools"),
        ("get_weather", None, "tools"),
        (["get_weather"], None, "tools.0"),
        ([{"function": {"name": "f"}}], None, "tools.0.type"),
        ([{"type": "function"}], None, "tools.0.function"),
        ([{"type": "function", "function": {}}], None, "tools.0.function.name"),
        ([{"type": "function", "function": {"name": "bad name!"}}], None, "tools.0.function.name"),
        ([{"type": "function", "function": {"name": "x" * 65}}], None, "tools.0.function.name"),
        ([{"type": "function", "function": {"name": 7}}], None, "tools.0.function.name"),
        ([_FN, {"type": "function", "function": {"name": ""}}], None, "tools.1.function.name"),
        ([_FN], {"type": "function", "function": {"name": "other"}}, "tool_choice.function.name"),
        ([_FN], "sometimes", "tool_choice"),
        (None, "required", "tool_choice"),
    ],
)
async def test_malformed_tools_are_400_naming_the_param(
    edge: Edge, rc: RedisClient, keys: Keys, tools: Any, tool_choice: Any, param: str
) -> None:
    """Finding 8: malformed ``tools`` were accepted (and handed to a producer)."""
    body: dict[str, Any] = {**CHAT}
    if tools is not None:
        body["tools"] = tools
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        err = _err(await c.post("/v1/chat/completions", json=body))
    assert err["param"] == param, err
    assert await _published(rc, keys) == 0


async def test_well_formed_tools_are_passed_on(edge: Edge, logw: LogWriter) -> None:
    custom = {"type": "custom", "custom": {"name": "grammar"}}
    body = {**CHAT, "tools": [_FN, custom], "tool_choice": {"type": "function", **_FN}}
    async with (
        httpx.AsyncClient(base_url=edge.url, timeout=10) as c,
        c.stream("POST", "/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status_code == 200
        req = await logw.take_request()
        await logw.done(req.stream_id)
        await resp.aread()
    assert req.body["tools"] == [_FN, custom]


@pytest.mark.parametrize("pace", ["1e-300", "0.001", "0", "-1", "1001", "1e300", "nan", "inf"])
async def test_pace_outside_its_bounds_is_400(edge: Edge, logw: LogWriter, pace: str) -> None:
    """Finding 3: ``?pace=1e-300`` held the response forever."""
    sid, _ids, _done = await logw.finished(2)
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        err = _err(await c.get(f"/v1/streams/{sid}", params={"pace": pace}))
    assert err["param"] == "pace"
    assert "0.01 to 1000" in err["message"]


@pytest.mark.parametrize("pace", ["0.01", "1000", "original", "fast"])
async def test_pace_within_its_bounds_replays(edge: Edge, logw: LogWriter, pace: str) -> None:
    sid = await logw.create()
    t = [1_000_000, 1_000_100]  # 0.1 ms apart: even at pace 0.01 a 10 ms replay
    ids = await logw.chunks(sid, ["a", "b"], t_us=t)
    done = await logw.done(sid, t_us=t[-1])
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.get(f"/v1/streams/{sid}", params={"pace": pace})
    assert resp.status_code == 200
    assert [e.id for e in data_events(parse_sse(resp.text))] == [*ids, done]
