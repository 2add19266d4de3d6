"""The conventions clients expect, through a real edge under uvicorn: ``GET /v1/models/{id}``,
``POST /v1/embeddings`` (with the openai SDK), ``x-request-id``, CORS (preflight, and the
headers of a streaming response read cross-origin), ``/health``, and the key gate on
``/metrics`` and ``/v1/metrics/*`` (``FAKEAI_PUBLIC_METRICS``); the dashboard's page is open, its
feed is not."""

from __future__ import annotations

import array
import base64
import math
import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import openai
import pytest
from tests.integration.edge.edgekit import Edge, LogWriter, parse_sse

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

ORIGIN = "http://app.example:3000"
_REQ_ID = re.compile(r"req_[0-9a-f]{32}")


def _sdk(edge: Edge, key: str = "sk-none") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{edge.url}/v1", api_key=key, max_retries=0)


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    err: dict[str, object] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


async def test_retrieve_a_model_by_name_and_by_hf_style_id(edge: Edge) -> None:
    async with _sdk(edge) as client:
        model = await client.models.retrieve("gpt-4o")
        assert (model.id, model.object, model.owned_by) == ("gpt-4o", "model", "fakeai")
        hf = await client.models.retrieve("meta-llama/Llama-3.1-8B-Instruct")
        assert hf.id == "meta-llama/Llama-3.1-8B-Instruct"
        emb = await client.models.retrieve("text-embedding-3-small")
        assert emb.created == model.created
        with pytest.raises(openai.NotFoundError) as e:
            await client.models.retrieve("no-such/model-9000")
    assert e.value.code == "model_not_found"
    assert e.value.param == "model"


async def test_embeddings_with_the_sdk_in_both_encodings(edge: Edge) -> None:
    async with _sdk(edge) as client:
        as_float = await client.embeddings.create(
            model="text-embedding-3-small", input=["hello", "world"], encoding_format="float"
        )
        as_b64 = await client.embeddings.create(
            model="text-embedding-3-small", input=["hello", "world"], encoding_format="base64"
        )
        default = await client.embeddings.create(  # the SDK asks for base64 and decodes it
            model="text-embedding-3-small", input=["hello", "world"]
        )
        short = await client.embeddings.create(
            model="text-embedding-3-large", input=[[1, 2, 3]], dimensions=64
        )
    vectors = [d.embedding for d in as_float.data]
    assert [len(v) for v in vectors] == [1536, 1536]
    assert vectors[0] != vectors[1]
    assert all(math.fsum(x * x for x in v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    raw = [d.embedding for d in as_b64.data]
    assert all(isinstance(s, str) for s in raw)
    assert [array.array("f", base64.b64decode(str(s))).tolist() for s in raw] == vectors
    assert [d.embedding for d in default.data] == vectors
    assert as_float.usage.prompt_tokens == 2
    assert as_float.model == "text-embedding-3-small"
    assert len(short.data[0].embedding) == 64
    assert short.usage.prompt_tokens == 3


async def test_embedding_models_are_listed(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        ids = [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
    assert "gpt-4o" in ids
    assert "text-embedding-3-small" in ids


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "text-embedding-3-small", "input": ""}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": []}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": [1.5]}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, 400, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 9999}, 400, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}, 400, None),
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}, 400, "dimensions"),
        ({"model": "gpt-4o", "input": "x"}, 400, "model"),
        ({"model": "nope", "input": "x"}, 404, "model"),
        ({"input": "x"}, 400, "model"),
        ([1, 2], 400, None),
    ],
)
async def test_bad_embedding_requests_are_openai_shaped(
    edge: Edge, body: object, status: int, param: str | None
) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        err = _error(await c.post("/v1/embeddings", json=body), status)
    if param is not None:
        assert err["param"] == param


async def test_every_response_has_a_request_id(start_edge: StartEdge) -> None:
    with start_edge(api_key="sk-admin") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            ok, unauthorized, missing = (
                await c.get("/healthz"),
                await c.get("/v1/models"),
                await c.get("/nowhere"),
            )
            echoed = await c.get("/health", headers={"X-Request-Id": "trace-42"})
            replaced = await c.get("/health", headers={"X-Request-Id": "x" * 300})
    for resp in (ok, unauthorized, missing, replaced):
        assert _REQ_ID.fullmatch(resp.headers["x-request-id"]), resp.headers
    assert len({r.headers["x-request-id"] for r in (ok, unauthorized, missing)}) == 3
    assert echoed.headers["x-request-id"] == "trace-42"
    assert echoed.json() == {"status": "ok"}


async def test_cors_preflight_and_a_streaming_response_read_cross_origin(
    start_edge: StartEdge, logw: LogWriter
) -> None:
    sid, ids, done = await logw.finished(3)
    with start_edge(cors_origins=f"{ORIGIN}, http://other.example", api_key="sk-admin") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            pre = await c.options(
                "/v1/chat/completions",
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
                },
            )
            assert pre.status_code == 200, pre.text
            assert pre.headers["access-control-allow-origin"] == ORIGIN
            assert "POST" in pre.headers["access-control-allow-methods"]
            allowed = pre.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed
            assert "x-stainless-os" in allowed
            refused = await c.options(
                "/v1/models",
                headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert _error(refused, 400)["code"] == "cors_refused"
            headers = {"Origin": ORIGIN, "Authorization": "Bearer sk-admin"}
            async with c.stream("GET", f"/v1/streams/{sid}", headers=headers) as resp:
                assert resp.status_code == 200
                assert resp.headers["access-control-allow-origin"] == ORIGIN
                exposed = resp.headers["access-control-expose-headers"].lower()
                assert {"x-stream-id", "x-request-id", "x-ratelimit-remaining-requests"} <= {
                    h.strip() for h in exposed.split(",")
                }
                assert resp.headers["x-stream-id"] == sid
                assert _REQ_ID.fullmatch(resp.headers["x-request-id"])
                raw = (await resp.aread()).decode()
            denied = await c.get("/v1/models", headers={"Origin": ORIGIN})
    assert [e.id for e in parse_sse(raw) if e.data is not None] == [*ids, done]
    # A refusal is readable by the page too (the headers ride on the 401).
    assert _error(denied, 401)["code"] == "invalid_api_key"
    assert denied.headers["access-control-allow-origin"] == ORIGIN


async def test_no_cors_headers_unless_configured(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        resp = await c.get("/v1/models", headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers


def test_a_malformed_cors_origin_fails_at_start(start_edge: StartEdge) -> None:
    with (
        pytest.raises(ValueError, match="FAKEAI_CORS_ORIGINS"),
        start_edge(cors_origins="app.example"),
    ):
        pass


_GATED = ["/metrics", "/v1/metrics/latency", "/v1/metrics/series?metric=ttft"]


@pytest.mark.parametrize("path", _GATED)
async def test_metrics_need_a_key_when_keys_are_configured(
    start_edge: StartEdge, path: str
) -> None:
    with start_edge(api_keys="alice:sk-alice") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            assert _error(await c.get(path), 401)["code"] == "invalid_api_key"
            _error(await c.get(path, headers={"Authorization": "Bearer sk-bad"}), 401)
            ok = await c.get(path, headers={"Authorization": "Bearer sk-alice"})
            assert ok.status_code != 401
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/v1/metrics/latency"])
async def test_public_metrics_open_them_and_nothing_else(start_edge: StartEdge, path: str) -> None:
    with start_edge(api_keys="alice:sk-alice", public_metrics=True) as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            assert (await c.get(path)).status_code == 200
            _error(await c.get("/v1/models"), 401)
            _error(await c.get("/v1/streams"), 401)
            _error(await c.get("/v1/dashboard/events"), 401)  # it lists streams by id


async def test_the_dashboard_page_is_open_and_holds_no_data(start_edge: StartEdge) -> None:
    """The page and its static files need no key (a browser sends none when it loads a page);
    what it shows comes from ``/v1/`` with the key it asks for."""
    with start_edge(api_keys="alice:sk-alice") as edge:
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            page = await c.get("/dashboard")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            assert "chatcmpl-" not in page.text


@pytest.mark.parametrize("path", ["/metrics", "/v1/metrics/latency"])
async def test_without_keys_metrics_stay_open(edge: Edge, path: str) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        assert (await c.get(path)).status_code == 200
