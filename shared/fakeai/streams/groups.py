"""Who reads the shared streams, and how far behind: the consumer groups of every partition.

The firehose partitions (``Keys.all_events``) carry the ``metrics`` group and one group per
observer (``fakeai-streams tail``: a named group, or ``tail-<hex>`` for a run without one);
the request partitions (``Keys.all_requests``) carry the ``producers`` group. One pipeline of
``XINFO GROUPS`` (https://redis.io/docs/latest/commands/xinfo-groups/), one command per
partition key, so no command spans slots and a cluster client splits the pipeline per node.

``lag`` is Redis's own count of entries not yet delivered to the group (Redis 7.0+); Redis
answers it as nil when it cannot tell (entries deleted or trimmed inside the group's range),
and a group's total lag is then None too. ``pending`` counts entries delivered but not acked.
A partition that does not exist yet (nothing written) has no groups.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from fakeai.config import Settings
from fakeai.streams.client import RedisClient
from fakeai.streams.keys import Keys

__all__ = ["FIREHOSE", "REQUESTS", "consumer_groups"]

FIREHOSE = "firehose"
REQUESTS = "requests"


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _row(stream: str, group: str) -> dict[str, Any]:
    return {
        "stream": stream,
        "group": group,
        "consumers": 0,
        "pending": 0,
        "lag": 0,
        "partitions": [],
    }


async def consumer_groups(
    redis: RedisClient, keys: Keys, settings: Settings
) -> list[dict[str, Any]]:
    """Every group of the firehose and request partitions, summed over partitions.

    Each item: ``{"stream": "firehose"|"requests", "group", "consumers", "pending", "lag",
    "partitions": [{"partition", "key", "consumers", "pending", "lag", "last_delivered_id"}]}``
    (``consumers`` is the most any partition has: one consumer reads many partitions).
    Sorted by stream, then group name.
    """
    targets = [
        *((FIREHOSE, p, k) for p, k in enumerate(keys.all_events(settings.firehose_partitions))),
        *((REQUESTS, p, k) for p, k in enumerate(keys.all_requests(settings.request_partitions))),
    ]
    pipe = redis.pipeline(transaction=False)
    for _, _, key in targets:
        pipe.xinfo_groups(key)
    replies = await pipe.execute(raise_on_error=False)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (stream, partition, key), reply in zip(targets, replies, strict=True):
        if isinstance(reply, ResponseError):
            continue  # "no such key": nothing was written to that partition yet
        if isinstance(reply, Exception):
            raise reply
        for info in reply:
            name = _text(info["name"])
            row = rows.setdefault((stream, name), _row(stream, name))
            lag = _int(info.get("lag"))
            pending = int(info["pending"])
            consumers = int(info["consumers"])
            row["consumers"] = max(row["consumers"], consumers)
            row["pending"] += pending
            row["lag"] = None if lag is None or row["lag"] is None else row["lag"] + lag
            row["partitions"].append(
                {
                    "partition": partition,
                    "key": key,
                    "consumers": consumers,
                    "pending": pending,
                    "lag": lag,
                    "last_delivered_id": _text(info["last-delivered-id"]),
                }
            )
    return [rows[k] for k in sorted(rows)]
