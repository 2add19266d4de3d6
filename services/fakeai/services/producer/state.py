"""What a stream's log and meta say before its producer works on it, read in one round trip."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fakeai.services.backoff import RETRYABLE, Backoff
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import parse_entry
from fakeai.streams.meta import F

__all__ = ["StreamState", "read_states"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the log and meta say about a stream before its producer starts it."""

    cancel_requested: bool
    last_seq: int
    finished: bool


async def read_states(redis: RedisClient, keys: Keys, stream_ids: list[str]) -> list[StreamState]:
    """The states of ``stream_ids`` in one round trip (meta ``cancel_requested`` and the log's
    last entry of each); retries while Redis is unavailable.

    On a cluster the pipeline is redis-py's ``ClusterPipeline``: not a transaction, its
    commands grouped per node (one round trip per node), each stream's two keys in one slot.
    """
    backoff = Backoff()
    while True:
        try:
            pipe = redis.pipeline(transaction=False)
            for sid in stream_ids:
                pipe.hget(keys.meta(sid), F.CANCEL_REQUESTED)
                pipe.xrevrange(keys.chunks(sid), "+", "-", count=1)
            replies = await pipe.execute()
            break
        except RETRYABLE as e:
            if backoff.failures == 0:
                logger.warning("Redis unavailable (%s); retrying a state read", e)
            await backoff.sleep()
    states = []
    for cancel, last in zip(replies[::2], replies[1::2], strict=True):
        entry = parse_entry(*last[0]) if last else None
        states.append(
            StreamState(
                cancel_requested=cancel not in (None, b"", b"0"),
                last_seq=entry.seq if entry else 0,
                finished=entry.terminal if entry else False,
            )
        )
    return states
