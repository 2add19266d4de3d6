"""gzip on streamed answers, with real clients against the whole pipeline.

A client that asks (``Accept-Encoding: gzip``, as httpx, the openai SDK and browsers do by
default) gets SSE, JSON Lines and text gzipped with a flush per write: every piece that
arrives inflates to whole events, and a paced stream's events arrive spread over its pace,
not in one lump at the end. A client that does not ask gets the bytes as before.
"""

from __future__ import annotations

import itertools
import time
import zlib
from typing import Any

import httpx
import openai
import pytest
from tests.support.sse import timing
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}
ITL_MS = 150
TOKENS = 6


def _chat(tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something durable."}],
        "stream": True,
        "max_tokens": tokens,
        "ignore_eos": True,
    }


def _finished_stream(client: httpx.Client, itl_ms: int) -> tuple[str, bytes]:
    """A chat stream read to its end without compression: its id and its SSE bytes."""
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json=_chat(TOKENS),
        headers={**IDENTITY, **timing(0, itl_ms)},
    ) as resp:
        assert resp.status_code == 200
        assert "content-encoding" not in resp.headers
        assert "Accept-Encoding" in resp.headers["vary"]
        body = resp.read()
    return resp.headers["x-stream-id"], body


def test_every_write_inflates_to_whole_events_as_it_arrives(stack: Stack) -> None:
    with (
        httpx.Client(base_url=stack.url, timeout=30) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json=_chat(TOKENS),
            headers={**GZIP, **timing(0, ITL_MS)},
        ) as resp,
    ):
        assert resp.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in resp.headers["vary"]
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pieces: list[bytes] = []
        arrivals: list[float] = []
        for raw in resp.iter_raw():
            out = inflate.decompress(raw)
            if out:
                # Z_SYNC_FLUSH per write: what arrived inflates to complete events.
                assert out.endswith(b"\n\n"), out
                pieces.append(out)
                arrivals.append(time.monotonic())
        assert inflate.eof  # the gzip trailer came last
        assert inflate.flush() == b""
    text = b"".join(pieces)
    assert text.endswith(b"data: [DONE]\n\n")
    events = [p for p in pieces if b'"content"' in p]
    assert len(events) >= TOKENS - 1  # one write per token at this pace
    # Paced: the token events arrive spread over the stream's ITL, not in one lump (lower
    # bounds only: a compressor that buffered would deliver them all at the end).
    token_arrivals = [a for a, p in zip(arrivals, pieces, strict=True) if b'"content"' in p]
    spread = token_arrivals[-1] - token_arrivals[0]
    assert spread >= 0.5 * (len(token_arrivals) - 1) * ITL_MS / 1000
    gaps = [b - a for a, b in itertools.pairwise(token_arrivals)]
    assert sum(g >= ITL_MS / 2000 for g in gaps) >= len(gaps) // 2


@pytest.mark.parametrize("fmt", ["sse", "jsonl", "text"])
def test_gzipped_replay_decodes_to_the_same_bytes(stack: Stack, fmt: str) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        sid, _ = _finished_stream(client, 0)
        url = f"/v1/streams/{sid}"
        params = {"format": fmt, "pace": "fast"}
        plain = client.get(url, params=params, headers=IDENTITY)
        zipped = client.get(url, params=params, headers=GZIP)
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx inflated it
    assert len(plain.content) > 0


def test_a_client_that_does_not_ask_gets_no_gzip(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        sid, body = _finished_stream(client, 0)
        refused = client.get(
            f"/v1/streams/{sid}", params={"pace": "fast"}, headers={"Accept-Encoding": "gzip;q=0"}
        )
    assert body.startswith(b"id: ")
    assert "content-encoding" not in refused.headers
    assert refused.content.startswith(b"id: ")


def test_openai_sdk_streams_gzip_unchanged(stack: Stack) -> None:
    with openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say something durable."}],
            stream=True,
            max_tokens=TOKENS,
            extra_headers={"X-FakeAI-Seed": "7"},
        )
        assert raw.headers["content-encoding"] == "gzip"  # the SDK asks for it by default
        chunks = list(raw.parse())
        plain = list(
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Say something durable."}],
                stream=True,
                max_tokens=TOKENS,
                extra_headers={"X-FakeAI-Seed": "7", **IDENTITY},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert text == "".join(c.choices[0].delta.content or "" for c in plain if c.choices)


def test_compression_can_be_turned_off(start_stack: Any) -> None:
    """``FAKEAI_COMPRESS_STREAMS=false``: a client that asks for gzip gets the stream as is."""
    with (
        start_stack(compress_streams=False) as stack,
        httpx.Client(base_url=stack.url, timeout=30) as client,
    ):
        created = client.post(
            "/v1/chat/completions", json=_chat(TOKENS), headers={**GZIP, **timing(0, 0)}
        )
        sid = created.headers["x-stream-id"]
        plain = client.get(f"/v1/streams/{sid}", params={"pace": "fast"}, headers=GZIP)
    for response in (created, plain):
        assert "content-encoding" not in response.headers
        assert "vary" not in response.headers
    assert plain.content.startswith(b"id: ")
