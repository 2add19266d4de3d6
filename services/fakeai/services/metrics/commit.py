"""Exactly-once commits of the metrics consumer: one MULTI/EXEC per model, none across slots.

Every key a finished stream's samples touch carries its model's hash tag (``Keys.ts_bucket``,
``Keys.ts_minmax``, ``Keys.counters(model)``), and so does the stream's "seen" marker
(``Keys.ts_seen(model, sid)``): one model's writes sit in one Redis Cluster slot. So a batch is
committed per model (https://redis.io/docs/latest/develop/interact/transactions/
#optimistic-locking-using-check-and-set):

1. ``WATCH`` the markers of the model's streams in the batch, ``MGET`` them;
2. fold the streams whose marker is missing; the others were counted already (by this
   consumer, before a flush that failed half-way and is now retried, or by another consumer
   that read a redelivered entry);
3. ``MULTI``, that model's bucket, min/max and counter writes, ``SET`` each new marker with a
   TTL, ``EXEC``. A marker written by anyone in between aborts the ``EXEC`` (``WatchError``):
   back to 1, with the streams that are still new.

The models are committed concurrently, each on its own connection to the master of its slot. A
commit that fails leaves the others committed; the caller retries the whole batch, and the
committed models find their markers and add nothing. ``SADD Keys.ts_models()`` is idempotent
and names a key of its own slot: it goes first, outside every transaction.

Malformed firehose entries count as ``invalid_events`` of model :data:`UNKNOWN_MODEL`, each
under a marker of its own (``invalid-<partition>-<entry id>``), so those counts are exact too.

On a cluster, each model's transaction runs on a plain client of the master of the model's slot
(:meth:`fakeai.streams.log.Link.node_client`, which says why not redis-py's cluster
transactions). A slot that moved answers MOVED or ASK; the error goes up, the caller refreshes
the slot map (:meth:`Committer.reset`) and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import redis.asyncio as aredis
from redis.exceptions import WatchError

from fakeai.config import Settings
from fakeai.services.metrics.tracker import FinishedStream, fold_finished
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Link
from fakeai.timeseries import Fold
from fakeai.timeseries import names as n

__all__ = ["UNKNOWN_MODEL", "Committed", "Committer"]

UNKNOWN_MODEL = "unknown"
"""The model that malformed firehose entries are counted under."""


class Committed:
    """What a commit wrote: the new streams' fold (for the RedisTimeSeries mirror) and counts."""

    __slots__ = ("fold", "invalid", "streams")

    def __init__(self, fine_s: int) -> None:
        self.fold = Fold(fine_s)
        self.streams = 0
        """Streams counted by this commit (not those already counted)."""
        self.invalid = 0


class Committer:
    """Commits finished streams exactly once per stream (see the module docstring)."""

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.seen_ttl_s = settings.firehose_retention_s + 3600
        """A marker outlives every redelivery: entries are trimmed after the firehose retention."""
        self._link = Link(redis)

    async def commit(
        self,
        finished: Sequence[FinishedStream],
        invalid: Sequence[str] = (),
        *,
        out: Committed | None = None,
    ) -> Committed:
        """Count the streams of ``finished`` (and the malformed entries ``invalid``, by marker id)
        that nobody counted yet; add what was written to ``out`` (a new one when None).

        Raises the first model's error (``RedisError``, ``OSError``) after every model was
        tried; the models committed stay committed (and in ``out``), and a retry with the
        same ``out`` does not count them again.
        """
        by_model: dict[str, list[FinishedStream]] = {}
        for f in finished:
            by_model.setdefault(f.model, []).append(f)
        if invalid:
            by_model.setdefault(UNKNOWN_MODEL, [])
        if out is None:
            out = Committed(self.settings.ts_fine_s)
        if not by_model:
            return out
        await self.redis.sadd(self.keys.ts_models(), *sorted(by_model))
        results = await asyncio.gather(
            *(
                self._commit_model(m, streams, invalid if m == UNKNOWN_MODEL else (), out)
                for m, streams in by_model.items()
            ),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return out

    async def _commit_model(
        self, model: str, streams: list[FinishedStream], invalid: Sequence[str], out: Committed
    ) -> None:
        keys, settings = self.keys, self.settings
        markers = [keys.ts_seen(model, f.stream_id) for f in streams]
        markers += [keys.ts_seen(model, i) for i in invalid]
        async with self._client(model).pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*markers)
                    seen = await pipe.mget(markers)
                    fresh = [f for f, m in zip(streams, seen[: len(streams)], strict=True) if not m]
                    bad = [i for i, m in zip(invalid, seen[len(streams) :], strict=True) if not m]
                    fold = Fold(settings.ts_fine_s)
                    if not fresh and not bad:
                        break  # all counted before (the pipeline's exit unwatches)
                    for f in fresh:
                        fold_finished(fold, f)
                    if bad:
                        fold.incr(n.INVALID_EVENTS, model, len(bad))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    fold.write(pipe, keys, settings, model)
                    for f in fresh:
                        pipe.set(keys.ts_seen(model, f.stream_id), b"1", ex=self.seen_ttl_s)
                    for i in bad:
                        pipe.set(keys.ts_seen(model, i), b"1", ex=self.seen_ttl_s)
                    await pipe.execute()
                    break
                except WatchError:
                    continue  # another consumer counted some of these: look again
        out.fold.merge(fold)
        out.streams += len(fresh)
        out.invalid += len(bad)

    def _client(self, model: str) -> aredis.Redis:
        """A client whose connections go to the master of ``model``'s slot."""
        return self._link.node_client(self.keys.counters(model))

    async def reset(self) -> None:
        """After a failure: reload the slot map and drop the node clients (a failover or a
        resharding may have moved a model's slot)."""
        await self.close()
        with contextlib.suppress(Exception):
            await self._link.refresh()

    async def close(self) -> None:
        await self._link.close_node_clients()
