"""One bench run's parameters, and the requests they turn into (headers, bodies, URLs).

Endpoints: ``chat`` (``/v1/chat/completions``), ``completions`` (``/v1/completions``) and
``responses`` (``POST /v1/responses``, stream true; ``max_tokens`` is sent as
``max_output_tokens``, which OpenAI bounds below by :data:`MIN_OUTPUT_TOKENS`). A chat or
completion stream is resumed with ``GET /v1/streams/{id}`` + ``Last-Event-ID``, a response with
``GET /v1/responses/{id}?stream=true&starting_after=<sequence_number>``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DEFAULT_PROMPT", "ENDPOINTS", "MIN_OUTPUT_TOKENS", "BenchConfig", "Endpoint"]

_nonce = random.Random().getrandbits
"""Prompt nonces: unique, not secret, so a generator seeded once (a uuid4 per request reads
the OS's random source, several us on this machine)."""

Endpoint = Literal["chat", "completions", "responses"]
ENDPOINTS: tuple[Endpoint, ...] = ("chat", "completions", "responses")
_PATHS: dict[str, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "responses": "/v1/responses",
}
MIN_OUTPUT_TOKENS = 16
"""The least ``max_output_tokens`` the Responses API accepts (as OpenAI)."""
DEFAULT_PROMPT = "Tell me about streaming systems."


@dataclass(frozen=True)
class BenchConfig:
    """One run's parameters (built from flags by ``client.config_from_args``).

    Exactly one of ``requests`` (in total) and ``duration_s`` (keep starting requests this
    long) is set.
    """

    url: str
    concurrency: int = 1
    requests: int | None = 10
    duration_s: float | None = None
    endpoint: Endpoint = "chat"
    model: str = "gpt-4o"
    max_tokens: int = 100
    ttft_ms: float | None = None
    itl_ms: float | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    warmup: int = 0
    ramp_s: float = 0.0
    """Start the workers evenly over this many seconds instead of all at once."""
    resume_every: int | None = None
    resume_delay_ms: float = 0.0
    """Time away between a drop and its resume (the resume then has events to catch up on)."""
    verify: bool = True
    prompt: str = DEFAULT_PROMPT
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.requests is None) == (self.duration_s is None):
            raise ValueError("set exactly one of requests and duration_s")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: must be >= 1, got {self.concurrency}")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint: expected one of {ENDPOINTS}, got {self.endpoint!r}")
        if self.events and self.max_tokens < MIN_OUTPUT_TOKENS:
            raise ValueError(
                f"max_tokens: the Responses API needs max_output_tokens >= {MIN_OUTPUT_TOKENS}, "
                f"got {self.max_tokens}"
            )

    @property
    def events(self) -> bool:
        """The endpoint streams typed events (the Responses API), not chunks + ``[DONE]``."""
        return self.endpoint == "responses"

    @property
    def base(self) -> str:
        """The server's base URL (a trailing ``/v1`` is tolerated)."""
        return self.url.rstrip("/").removesuffix("/v1")

    @property
    def generate_url(self) -> str:
        return self.base + _PATHS[self.endpoint]

    def stream_url(self, stream_id: str) -> str:
        return f"{self.base}/v1/streams/{stream_id}"

    def response_url(self, response_id: str) -> str:
        """``GET`` it with ``stream=true`` (and ``starting_after``) to stream a response."""
        return f"{self.base}/v1/responses/{response_id}"

    def headers(self) -> dict[str, str]:
        h = {"Accept": "text/event-stream", "Accept-Encoding": "identity", **self.extra_headers}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        if self.ttft_ms is not None:
            h["X-FakeAI-TTFT-Ms"] = f"{self.ttft_ms:g}"
        if self.itl_ms is not None:
            h["X-FakeAI-ITL-Ms"] = f"{self.itl_ms:g}"
        return h

    def body(self) -> dict[str, Any]:
        """A streaming request with a fresh prompt nonce.

        The nonce keeps any server-side prompt or KV cache from shortening a TTFT
        (``notes/perf-anchors.md`` §1a: FakeAI 0.3.2 scales TTFT by 1 - 0.8 x hit ratio);
        ``ignore_eos`` makes ``max_tokens`` the output length.
        """
        prompt = f"{_nonce(128):032x} {self.prompt}"
        if self.events:
            return {
                "model": self.model,
                "input": prompt,
                "stream": True,
                "max_output_tokens": self.max_tokens,
                "ignore_eos": True,
            }
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "max_tokens": self.max_tokens,
            "ignore_eos": True,
        }
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def describe(self) -> dict[str, Any]:
        """The parameters that go into the result object."""
        return {
            "url": self.base,
            "endpoint": self.endpoint,
            "model": self.model,
            "concurrency": self.concurrency,
            "max_tokens": self.max_tokens,
            "duration_s": self.duration_s,
            "requests_target": self.requests,
            "ttft_override_ms": self.ttft_ms,
            "itl_override_ms": self.itl_ms,
            "ramp_s": self.ramp_s,
            "resume_every": self.resume_every,
            "resume_delay_ms": self.resume_delay_ms,
        }
