"""Settings: one frozen object, built by :meth:`Settings.from_env` from ``FAKEAI_*`` variables.

Flags on the command line override the environment (the CLI passes them as keyword
overrides). Contradictory combinations fail here, at construction, with a message that says
what to change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["Settings", "default_state_dir"]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fakeai-streams"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str | None = None
    """External Redis; None means `up` starts an embedded server."""
    key_prefix: str = "fakeai"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    state_dir: Path = Field(default_factory=default_state_dir)

    retention_s: int = Field(86_400, ge=0)
    """How long a finished stream stays replayable; 0 keeps it forever."""
    heartbeat_s: float = Field(15.0, gt=0)
    retry_ms: int = Field(3000, ge=0)
    """The SSE ``retry:`` hint sent with the first event."""
    client_buffer: int = Field(1024, ge=16)
    """Events queued per slow client before the edge ends its connection (resumable)."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    api_key: str | None = None
    """When set, requests must carry ``Authorization: Bearer <api_key>`` (an admin key)."""
    api_keys: str | None = None
    """Tenant keys, ``name:key,name:key``: each stream belongs to the key that created it."""
    api_keys_file: Path | None = None
    """Tenant keys from a file, one ``name:key`` per line (``#`` comments); merged with
    ``api_keys``."""
    key_max_streams: int = Field(0, ge=0)
    """Concurrent streams per key (0: no limit); beyond it, 429 with ``Retry-After``."""
    key_requests_per_min: int = Field(0, ge=0)
    """Requests per minute per key (0: no limit); beyond it, 429 with ``Retry-After``."""

    cors_origins: str | None = None
    """Browser origins allowed to call the API (CORS): ``*``, or a comma list of origins such as
    ``http://localhost:3000``; unset: no CORS headers (same-origin only)."""
    public_metrics: bool = False
    """With API keys configured, ``/metrics`` and ``/v1/metrics/*`` need a key unless this is
    true (a scraper without a key); without keys they are always open."""
    compress_streams: bool = True
    """Gzip SSE, JSON Lines and text streams for clients whose ``Accept-Encoding`` allows it
    (about 2 us of edge CPU per event and client); false sends every stream as is."""

    faults: str | None = None
    """Seeded fault injection for every request, e.g. ``seed=7; 2% status=503; 1% stall=2@10``
    (a request's own ``X-FakeAI-Fault`` header wins; ``none`` turns it off)."""

    # Hard caps: a request beyond one gets a 400 that names the setting.
    max_output_tokens: int = Field(32_768, ge=1)
    """Largest ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` accepted."""
    max_choices: int = Field(16, ge=1)
    """Largest ``n`` accepted."""
    max_timing_ms: float = Field(60_000.0, gt=0)
    """Largest ``X-FakeAI-TTFT-Ms`` / ``X-FakeAI-ITL-Ms`` accepted."""
    max_stream_s: float = Field(900.0, gt=0)
    """A stream still running after this long ends with an error entry ``timeout``."""
    idle_timeout_s: float = Field(10.0, gt=0)
    """A connection that sends no complete request for this long is closed (slowloris)."""
    keep_alive_s: int = Field(75, ge=1)
    """An idle keep-alive connection is closed after this long. Longer than clients keep idle
    connections in their pools (aiohttp 15 s, httpx 5 s), so that no client sends a request on
    a connection the edge is closing (a POST lost client-side)."""

    producer_lease_s: float = Field(2.0, gt=0)
    """A producer renews its lease this often / 3; a producer whose lease lapsed is dead and
    its streams are taken over at once."""
    max_deliveries: int = Field(2, ge=1)
    """A request handed out this many times without ending (it killed its producers) is
    parked as failed (dead letter) and never handed out again."""

    redis_cluster: bool | None = None
    """Redis Cluster mode: None detects it (``cluster_enabled:1`` in ``INFO cluster``)."""
    request_partitions: int = Field(4, ge=1, le=1024)
    """Partitions of the requests stream (every edge and producer must agree)."""
    firehose_partitions: int = Field(4, ge=1, le=1024)
    firehose_retention_s: int = Field(3600, ge=1)
    producer_batch: int = Field(64, ge=1, le=10_000)
    """Requests read per XREADGROUP by a producer."""
    producer_tick_ms: int = Field(1, ge=1, le=50)
    """A producer wakes its streams on multiples of this many milliseconds: a token leaves at
    the first tick at or after its deadline (never early, at most one tick late), and the
    tokens of every stream due in one tick go to Redis in one batch."""
    max_streams_per_producer: int = Field(5000, ge=1)
    latency_simulation: bool = True
    """False serves every request as fast as possible (like X-FakeAI-TTFT-Ms: 0, ITL 0)."""

    metrics_claim_idle_s: float = Field(30.0, gt=0)
    """Firehose entries pending this long with a dead metrics consumer are reclaimed."""
    ts_fine_s: int = Field(1, ge=1)
    ts_fine_keep_s: int = Field(3600, ge=1)
    ts_coarse_s: int = Field(60, ge=1)
    ts_coarse_keep_s: int = Field(7 * 86_400, ge=1)

    edge_workers: int = Field(1, ge=1, le=64)
    producer_workers: int = Field(1, ge=1, le=64)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.ts_coarse_s % self.ts_fine_s:
            raise ValueError(
                f"ts_coarse_s ({self.ts_coarse_s}) must be a multiple of ts_fine_s "
                f"({self.ts_fine_s}): set FAKEAI_TS_COARSE_S accordingly"
            )
        if self.ts_fine_keep_s < self.ts_fine_s or self.ts_coarse_keep_s < self.ts_coarse_s:
            raise ValueError(
                "a time-series retention shorter than its bucket keeps nothing: raise "
                "FAKEAI_TS_FINE_KEEP_S / FAKEAI_TS_COARSE_KEEP_S"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(
                f"FAKEAI_REDIS_URL must start with redis://, rediss:// or unix://, "
                f"got {self.redis_url!r}"
            )
        _ = self.cors_origin_list  # a malformed origin fails here, naming it
        return self

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """:attr:`cors_origins` as a tuple: ``("*",)``, the origins, or empty (no CORS)."""
        if self.cors_origins is None:
            return ()
        origins = tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())
        if "*" in origins:
            return ("*",)
        for origin in origins:
            scheme, sep, host = origin.partition("://")
            if not sep or scheme not in ("http", "https") or not host or "/" in host:
                raise ValueError(
                    f"FAKEAI_CORS_ORIGINS: {origin!r} is not an origin; write "
                    "scheme://host[:port] (e.g. http://localhost:3000), a comma list, or *"
                )
        return origins

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``FAKEAI_<FIELD>`` (and ``REDIS_URL``), then apply non-None ``overrides``."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(f"FAKEAI_{name.upper()}")
            if raw is not None and raw != "":
                values[name] = raw
        if "redis_url" not in values and env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise ValueError(f"invalid settings: {e}") from e
