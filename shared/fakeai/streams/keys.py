"""Every Redis name FakeAI Streams uses, built in one place.

No other module formats a key: take a :class:`Keys` and call its methods.

Layout (prefix ``fakeai`` by default)::

    fakeai:requests                 stream   generation requests; group "producers"
    fakeai:cancels                  stream   cancel signals, read by every producer (no group)
    fakeai:{<sid>}:chunks           stream   one stream's log: entry id = <created_ms>-<seq>
    fakeai:{<sid>}:meta             hash     status, model, timings, counts
    fakeai:streams:active           zset     running stream ids, scored by created_ms
    fakeai:events:<p>               stream   firehose partition p; groups "metrics" and observers
    fakeai:ts:{<metric>:<model>}:<res>:<bucket>        hash  one time-series bucket
    fakeai:ts:{<metric>:<model>}:<res>:<bucket>:mm     zset  min/max members of that bucket
    fakeai:ts:models                set      models that have time series
    fakeai:ts:seen:{<sid>}          string   idempotency marker for a stream's samples

The ``{<sid>}`` hash tag keeps a stream's log and meta hash in one Redis Cluster slot, so they
can be written in one MULTI or read in one multi-key command
(https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
Firehose partitions carry no tag, so a cluster spreads them over slots.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["METRICS_GROUP", "PRODUCERS_GROUP", "Keys", "partition_for"]

PRODUCERS_GROUP = "producers"
METRICS_GROUP = "metrics"


def partition_for(stream_id: str, partitions: int) -> int:
    """The firehose partition of a stream: stable across processes and restarts (CRC32)."""
    return zlib.crc32(stream_id.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to a prefix (``FAKEAI_KEY_PREFIX``, default ``fakeai``)."""

    prefix: str = "fakeai"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in " {}\n"):
            raise ValueError(
                f"key prefix must be non-empty without spaces or braces, got {self.prefix!r}"
            )

    # -- requests and control
    def requests(self) -> str:
        return f"{self.prefix}:requests"

    def cancels(self) -> str:
        return f"{self.prefix}:cancels"

    # -- one stream
    def chunks(self, stream_id: str) -> str:
        return f"{self.prefix}:{{{stream_id}}}:chunks"

    def meta(self, stream_id: str) -> str:
        return f"{self.prefix}:{{{stream_id}}}:meta"

    def active(self) -> str:
        return f"{self.prefix}:streams:active"

    # -- firehose
    def events(self, partition: int) -> str:
        return f"{self.prefix}:events:{partition}"

    def all_events(self, partitions: int) -> list[str]:
        return [self.events(p) for p in range(partitions)]

    def events_for(self, stream_id: str, partitions: int) -> str:
        return self.events(partition_for(stream_id, partitions))

    # -- time series
    def ts_bucket(self, metric: str, model: str, resolution: str, bucket: int) -> str:
        return f"{self.prefix}:ts:{{{metric}:{model}}}:{resolution}:{bucket}"

    def ts_minmax(self, metric: str, model: str, resolution: str, bucket: int) -> str:
        return f"{self.ts_bucket(metric, model, resolution, bucket)}:mm"

    def ts_models(self) -> str:
        return f"{self.prefix}:ts:models"

    def ts_seen(self, stream_id: str) -> str:
        return f"{self.prefix}:ts:seen:{{{stream_id}}}"

    def ts_native(self, metric: str, model: str, kind: str) -> str:
        """A RedisTimeSeries key (only used when the server has the module)."""
        return f"{self.prefix}:rts:{{{metric}:{model}}}:{kind}"

    def counters(self) -> str:
        """Hash of cluster-wide counters (requests, tokens, cancels, ... per model)."""
        return f"{self.prefix}:counters"

    def scan_pattern(self) -> str:
        return f"{self.prefix}:*"
