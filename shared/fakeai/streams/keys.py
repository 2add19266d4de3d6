"""Every Redis name FakeAI Streams uses, built in one place.

No other module formats a key: take a :class:`Keys` and call its methods.

Layout 2 (prefix ``fakeai`` by default; ``<b>`` = :func:`bucket_for` of the stream id)::

    fakeai:layout                         string  the layout version ("2"), see :data:`LAYOUT`
    fakeai:requests:{q<p>}                stream  request partition p; group "producers"
    fakeai:cancels                        stream  cancel signals, read by every producer
    fakeai:producers                      zset    live producers, scored by lease expiry (ms)
    fakeai:deadletter                     stream  requests parked as failed, with the reason
    fakeai:limits:{k:<tenant>}:rpm:<min>  string  a tenant's requests in one minute
    fakeai:limits:{k:<tenant>}:streams    zset    a tenant's running streams, by lapse time
    fakeai:{<b>}:<sid>:chunks             stream  one stream's log: entry id <created_ms>-<seq>
    fakeai:{<b>}:<sid>:meta               hash    status, model, timings, counts
    fakeai:{<b>}:<sid>:conversation       string  a stored Responses API response's input
                                                  and history (JSON), for retrieve,
                                                  input_items and previous_response_id
    fakeai:streams:active                 zset    running stream ids, scored by created_ms
    fakeai:events:{e<p>}                  stream  firehose partition p; groups "metrics", observers
    fakeai:ts:{<model>}:<metric>:<res>:<bucket>      hash  one time-series bucket
    fakeai:ts:{<model>}:<metric>:<res>:<bucket>:mm   zset  min/max members of that bucket
    fakeai:ts:{<model>}:counters          hash    the model's counters
    fakeai:ts:{<model>}:seen:<sid>        string  "this stream's samples are counted" marker
    fakeai:ts:models                      set     models that have time series
    fakeai:rts:{<model>}:<metric>:<kind>  RedisTimeSeries key (only when the module is loaded)

Why the hash tags (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/
#hash-tags): on a Redis Cluster a command may only name keys of one slot, even keys that sit
on one node (CROSSSLOT). So:

- a stream's log and meta share the tag of its *bucket* (one of :data:`STREAM_BUCKETS`), so
  an edge can block on every watched stream of a bucket in ONE ``XREAD`` (one read per bucket
  with watched streams, not one per stream), and a producer writes a stream in one slot;
- the requests stream and the firehose are partitioned, each partition its own tag, so no
  single key carries all traffic and the partitions spread over the masters;
- a model's time series, counters and "seen" markers share the model's tag, so the metrics
  consumer commits a model's samples and markers in one MULTI/EXEC on one node (exactly once
  without a cross-slot transaction).

On a single Redis the tags change nothing but the names.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LAYOUT",
    "METRICS_GROUP",
    "PRODUCERS_GROUP",
    "STREAM_BUCKETS",
    "Keys",
    "bucket_for",
    "partition_for",
]

PRODUCERS_GROUP: Final = "producers"
METRICS_GROUP: Final = "metrics"

LAYOUT: Final = "2"
"""The key layout version, stored in ``Keys.layout()``; layout 1 (``fakeai:{<sid>}:chunks``,
``fakeai:requests``, ``fakeai:events:<p>``) is refused with a message naming the fix."""

STREAM_BUCKETS: Final = 64
"""Hash-tag buckets of stream keys. Part of the layout: every process must agree. 64 spreads
streams over any cluster of up to dozens of masters, while an edge blocks on at most 64 reads."""


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def partition_for(stream_id: str, partitions: int) -> int:
    """The request and firehose partition of a stream: stable across processes (CRC32)."""
    return _crc(stream_id) % partitions


def bucket_for(stream_id: str) -> int:
    """The hash-tag bucket of a stream's keys (a different hash than the partitions')."""
    return (_crc(stream_id) >> 8) % STREAM_BUCKETS


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to a prefix (``FAKEAI_KEY_PREFIX``, default ``fakeai``)."""

    prefix: str = "fakeai"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in " {}\n"):
            raise ValueError(
                f"key prefix must be non-empty without spaces or braces, got {self.prefix!r}"
            )

    def layout(self) -> str:
        return f"{self.prefix}:layout"

    # -- requests and control
    def requests(self, partition: int) -> str:
        return f"{self.prefix}:requests:{{q{partition}}}"

    def all_requests(self, partitions: int) -> list[str]:
        return [self.requests(p) for p in range(partitions)]

    def requests_for(self, stream_id: str, partitions: int) -> str:
        return self.requests(partition_for(stream_id, partitions))

    def cancels(self) -> str:
        return f"{self.prefix}:cancels"

    def producers(self) -> str:
        """Live producers: member = consumer name, score = lease expiry (ms since epoch)."""
        return f"{self.prefix}:producers"

    def deadletter(self) -> str:
        """Requests parked as failed (fields ``sid``, ``partition``, ``id``, ``reason``)."""
        return f"{self.prefix}:deadletter"

    # -- per-tenant limits (one tag per tenant: one pipeline on one slot per request)
    def limit_requests(self, tenant: str, window: int) -> str:
        """The requests counter of ``tenant`` in minute ``window``."""
        return f"{self.prefix}:limits:{{k:{tenant}}}:rpm:{window}"

    def limit_streams(self, tenant: str) -> str:
        """The zset of ``tenant``'s running streams, scored by lapse time (ms)."""
        return f"{self.prefix}:limits:{{k:{tenant}}}:streams"

    # -- one stream
    def stream_tag(self, stream_id: str) -> str:
        """``<prefix>:{<bucket>}:<sid>``: the common head of a stream's keys."""
        return f"{self.prefix}:{{{bucket_for(stream_id)}}}:{stream_id}"

    def chunks(self, stream_id: str) -> str:
        return f"{self.stream_tag(stream_id)}:chunks"

    def meta(self, stream_id: str) -> str:
        return f"{self.stream_tag(stream_id)}:meta"

    def conversation(self, stream_id: str) -> str:
        """A stored response's input items and the history before them (Responses API)."""
        return f"{self.stream_tag(stream_id)}:conversation"

    def active(self) -> str:
        return f"{self.prefix}:streams:active"

    # -- firehose
    def events(self, partition: int) -> str:
        return f"{self.prefix}:events:{{e{partition}}}"

    def all_events(self, partitions: int) -> list[str]:
        return [self.events(p) for p in range(partitions)]

    def events_for(self, stream_id: str, partitions: int) -> str:
        return self.events(partition_for(stream_id, partitions))

    # -- time series (one tag per model)
    def ts_bucket(self, metric: str, model: str, resolution: str, bucket: int) -> str:
        return f"{self.prefix}:ts:{{{model}}}:{metric}:{resolution}:{bucket}"

    def ts_minmax(self, metric: str, model: str, resolution: str, bucket: int) -> str:
        return f"{self.ts_bucket(metric, model, resolution, bucket)}:mm"

    def ts_models(self) -> str:
        return f"{self.prefix}:ts:models"

    def ts_seen(self, model: str, stream_id: str) -> str:
        return f"{self.prefix}:ts:{{{model}}}:seen:{stream_id}"

    def counters(self, model: str) -> str:
        """Hash of one model's counters (requests, tokens, cancels, ...)."""
        return f"{self.prefix}:ts:{{{model}}}:counters"

    def ts_native(self, metric: str, model: str, kind: str) -> str:
        """A RedisTimeSeries key (only used when the server has the module)."""
        return f"{self.prefix}:rts:{{{model}}}:{metric}:{kind}"

    def scan_pattern(self) -> str:
        return f"{self.prefix}:*"

    # -- layout 1, only to recognise it
    def layout1_markers(self) -> list[str]:
        """Keys that only layout 1 had: their presence without :meth:`layout` means old data."""
        return [f"{self.prefix}:requests", f"{self.prefix}:events:0"]
