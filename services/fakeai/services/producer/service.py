"""The producer service: generation requests in, timed chunks out to Redis Streams.

Parts (one process): the request intake (:mod:`.intake`, consumer group ``producers``), the
failover (:mod:`.failover`: the keep-alive of the requests held here, and the take-over of the
requests of dead producers, at once for a lapsed lease (:mod:`.lease`), after their idle time
for producers of older versions), one task per stream (:mod:`.runner`, at most
``settings.max_streams_per_producer`` at a time; further requests wait for a slot, unread or
pending, which is the backpressure), the write coalescer (:mod:`.writer`, one flusher), and the
cancel listener (:mod:`.cancels`).

Redis: one client (:func:`fakeai.streams.client.connect`: a single server or a Redis Cluster,
detected by itself) and its :class:`~fakeai.streams.log.Link` for the writer's raw pipelines.
Connections it holds per node: the writer's one (a flush at a time), the keep-alive's, the
lease's two (renewal, watch), and one per batch of requests whose states are being read (at
most one per partition reader at a time), so the pool is sized ``request_partitions + 8``; the
cancel listener and the intake's partition readers (one per partition, on its node) block on
dedicated connections. At start the key layout is checked
(:func:`~fakeai.streams.client.check_layout`): data of another layout stops the producer with
the message that names the fix.

Start: the command pool's connections opened (:func:`fakeai.services.warmup.open_pool`: the
lease is what makes the edge's ``/readyz`` say ready, and the first requests should find them
open); then the lease (renewed once, then every ``producer_lease_s / 3``), so no survivor
mistakes this producer for a dead one; then the writer, the cancel listener, the intake and
the failover loops.

Shutdown, in order:

1. stop taking requests (no reads, no take-overs);
2. let running streams finish, up to ``drain_s``;
3. end the rest with an ``e`` entry ``shutdown`` (retryable) and wait for those entries;
4. stop the cancel listener and the failover loops; stop renewing the lease and leave
   ``Keys.producers()``: the member is removed, or, when requests read but never started are
   still pending here, marked lapsed, so a survivor takes them over at once (not after their
   idle time);
5. flush the writer;
6. close Redis.

A producer that dies without this sequence (SIGKILL, a crash, a host lost) keeps its member
until the lease lapses (``producer_lease_s``); then one survivor takes its requests over and
its streams go on where its log ends (:mod:`.failover`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import OrderedDict
from typing import Any

import msgspec
from redis.exceptions import ClusterDownError

from fakeai.config.settings import Settings
from fakeai.latency_profiles import get_latency_manager
from fakeai.services.backoff import RETRYABLE, Backoff
from fakeai.services.producer.cancels import CancelListener
from fakeai.services.producer.failover import Failover
from fakeai.services.producer.firehose import Firehose
from fakeai.services.producer.intake import Delivered, RequestIntake
from fakeai.services.producer.lease import Lease
from fakeai.services.producer.records import EndCode, ack
from fakeai.services.producer.runner import Deps, StreamRun
from fakeai.services.producer.state import StreamState, read_states
from fakeai.services.producer.writer import LogWriter
from fakeai.services.runtime import run_until_signalled, tune_gc
from fakeai.services.warmup import open_pool
from fakeai.streaming import StreamManager
from fakeai.streams import Keys
from fakeai.streams.client import LayoutMismatch, RedisClient, check_layout, connect
from fakeai.streams.log import Link
from fakeai.timing import set_tick_ms
from fakeai.wire import CancelSignal, decode_request

__all__ = ["Producer", "connect_checked", "consumer_name", "main", "pool_size", "run"]

logger = logging.getLogger(__name__)

EARLY_CANCELS = 4096
"""How many cancel signals of streams not running here a producer remembers."""


def consumer_name() -> str:
    """A consumer name unique to this process: ``<host>-<pid>-<random>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def pool_size(settings: Settings) -> int:
    """The command connections a producer holds per node (module docstring: who uses them)."""
    return settings.request_partitions + 8


async def connect_checked(settings: Settings, keys: Keys) -> RedisClient:
    """The producer's Redis client, once Redis answers (retried with backoff until then), on a
    Redis holding this key layout.

    Raises:
        LayoutMismatch: the Redis holds data of another key layout (the message names the fix).
    """
    url = settings.redis_url
    if not url:
        raise ValueError(
            "the producer needs a Redis: set FAKEAI_REDIS_URL (or --redis-url), or run "
            "`fakeai-streams up`, which starts one"
        )
    # A cluster still forming or failing over answers CLUSTERDOWN: wait as for a Redis down.
    transient: tuple[type[BaseException], ...] = (*RETRYABLE, ClusterDownError)
    backoff = Backoff()
    while True:
        redis: RedisClient | None = None
        try:
            redis = await connect(
                url,
                cluster=settings.redis_cluster,
                max_connections=pool_size(settings),
                blocking_pool=True,
            )
            await check_layout(redis, keys)
            return redis
        except transient as e:
            if backoff.failures == 0:
                logger.warning("producer: Redis unavailable at start (%s); retrying", e)
        except BaseException:
            if redis is not None:
                await redis.aclose()
            raise
        if redis is not None:
            await redis.aclose()
        await backoff.sleep()


class Producer:
    """One producer process's state: build it with :meth:`create`, then :meth:`start`, then
    :meth:`shutdown`."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        *,
        consumer: str | None = None,
        reclaim_idle_s: float = 15.0,
        heartbeat_s: float = 3.0,
        drain_s: float = 5.0,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("the producer needs settings.redis_url (see connect_checked)")
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.consumer = consumer or consumer_name()
        self.drain_s = drain_s
        self.redis = redis
        self.link = Link(redis)
        self.writer = LogWriter(self.link, firehose=Firehose(settings.firehose_retention_s))
        self.latency = get_latency_manager()
        # The producer's metrics travel on the firehose: no in-process metric hooks.
        # Nothing here asks about finished streams (their status is in Redis): keep few.
        self.manager = StreamManager(
            latency_manager=self.latency, enable_metrics=False, max_finished_streams=100
        )
        self.deps = Deps(
            settings=settings,
            keys=self.keys,
            redis=self.redis,
            link=self.link,
            writer=self.writer,
            manager=self.manager,
            latency=self.latency,
            producer=self.consumer,
        )
        self.runs: dict[str, StreamRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_streams_per_producer)
        self.intake = RequestIntake(
            self.link,
            self.keys.all_requests(settings.request_partitions),
            consumer=self.consumer,
            batch=settings.producer_batch,
            submit=self._submit,
        )
        self.lease = Lease(self.redis, self.keys, self.consumer, settings.producer_lease_s)
        self.failover = Failover(
            self.redis,
            self.intake,
            self.lease,
            free_slots=self._free_slots,
            heartbeat_s=heartbeat_s,
            reclaim_idle_s=reclaim_idle_s,
        )
        self.cancels = CancelListener(self.link, self.keys, self._on_cancel)
        self._early_cancels: OrderedDict[str, None] = OrderedDict()
        """Streams whose cancel signal came while they did not run here (newest last): a
        request this producer reads afterwards is cancelled at once (:meth:`_on_cancel`)."""
        self._cancel_task: asyncio.Task[None] | None = None

    @classmethod
    async def create(cls, settings: Settings, **kwargs: Any) -> Producer:
        """Connect (:func:`connect_checked`), then build; ``kwargs`` go to the constructor.

        Raises:
            LayoutMismatch: see :func:`connect_checked`.
        """
        redis = await connect_checked(settings, Keys(settings.key_prefix))
        try:
            return cls(settings, redis, **kwargs)
        except BaseException:
            await redis.aclose()
            raise

    def _free_slots(self) -> int:
        return self.settings.max_streams_per_producer - len(self.runs)

    async def start(self) -> None:
        """Open the command pool, take the lease, start writing, listening for cancels,
        reading requests and watching the other producers (waits for Redis).

        The pool is opened first: the lease makes ``/readyz`` say ready, and the first
        requests should not open connections while their chunks fall due."""
        set_tick_ms(self.settings.producer_tick_ms)
        backoff = Backoff()
        while True:
            try:
                await open_pool(self.redis, pool_size(self.settings))
                await self.lease.renew()
                break
            except RETRYABLE as e:
                if backoff.failures == 0:
                    logger.warning("producer: Redis unavailable at start (%s); retrying", e)
                await backoff.sleep()
        self.lease.start()
        self.writer.start()
        self._cancel_task = asyncio.get_running_loop().create_task(
            self.cancels.run(), name="producer-cancels"
        )
        await self.intake.start()
        self.failover.start()
        logger.info("producer %s started (max %d streams)", self.consumer, self._free_slots())

    async def _submit(self, entries: list[Delivered]) -> None:
        """Start a run per request; their states are read in one round trip per group of
        runs that got a slot without waiting (one pipeline instead of one per stream)."""
        ready: list[StreamRun] = []
        for entry in entries:
            try:
                request = decode_request(entry.fields.get(b"r", b""))
            except msgspec.DecodeError as e:
                logger.error(
                    "request %s of %s is not a GenerationRequest (%s); dropped",
                    entry.msg_id,
                    entry.key,
                    e,
                )
                await self._ack_alone(entry)
                continue
            if request.stream_id in self.runs:
                # The same stream published twice: the run in progress answers it.
                await self._ack_alone(entry)
                continue
            if ready and self._slots.locked():
                await self._start(ready)  # start what has slots before waiting for one
                ready = []
            await self._slots.acquire()
            run = StreamRun(self.deps, request, entry.key, entry.msg_id, entry.deliveries)
            self.runs[request.stream_id] = run
            if request.stream_id in self._early_cancels:
                del self._early_cancels[request.stream_id]
                run.end(EndCode.CANCELLED)
            ready.append(run)
        if ready:
            await self._start(ready)

    async def _start(self, runs: list[StreamRun]) -> None:
        try:
            states = await read_states(self.redis, self.keys, [run.stream_id for run in runs])
        except BaseException:
            for run in runs:  # never started: give the slots back; the requests stay
                self.runs.pop(run.stream_id, None)  # pending, to be taken over when idle
                self._slots.release()
                self.intake.release(run.request_key, run.msg_id)
            raise
        loop = asyncio.get_running_loop()
        for run, state in zip(runs, states, strict=True):
            task = loop.create_task(self._run_one(run, state), name=f"stream-{run.stream_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ack_alone(self, entry: Delivered) -> None:
        await self.writer.put(ack(self.link, entry.key, entry.msg_id))
        self.intake.release(entry.key, entry.msg_id)

    async def _run_one(self, run: StreamRun, state: StreamState | None = None) -> None:
        try:
            await run.run(state)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The request stays unacknowledged: after the reclaim time a producer retries it.
            logger.exception("stream %s: producer failure", run.stream_id)
        finally:
            self.runs.pop(run.stream_id, None)
            self._slots.release()
            self.intake.release(run.request_key, run.msg_id)

    async def _leave(self) -> None:
        """Step 4's exit from ``Keys.producers()``; a Redis that is down meanwhile leaves the
        member to lapse by itself."""
        try:
            await self.lease.leave(holding=await self.failover.holding())
        except Exception as e:
            logger.warning("producer %s: could not leave the producers' set (%s)", self.consumer, e)

    def _on_cancel(self, signal: CancelSignal) -> None:
        """End the stream if it runs here; else remember the signal, for a request read
        after it (the edge writes the meta flag and the signal at once, so the producer
        that reads the request may read the flag before it is set, and the signal before
        the stream runs here). Every producer sees every signal: the memory is bounded
        (:data:`EARLY_CANCELS`), oldest forgotten first."""
        run = self.runs.get(signal.stream_id)
        if run is not None:
            logger.info("stream %s: cancel received (%s)", signal.stream_id, signal.reason)
            run.end(EndCode.CANCELLED)
            return
        self._early_cancels[signal.stream_id] = None
        self._early_cancels.move_to_end(signal.stream_id)
        while len(self._early_cancels) > EARLY_CANCELS:
            self._early_cancels.popitem(last=False)

    async def shutdown(self) -> None:
        """The numbered shutdown sequence of the module docstring."""
        logger.info(
            "producer %s: shutting down (%d streams running)", self.consumer, len(self.runs)
        )
        # 1. stop taking requests
        await self.intake.stop_intake()
        # 2. let running streams finish, up to the drain deadline
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.drain_s)
        # 3. end the rest with a retryable "shutdown" error entry
        if self._tasks:
            logger.info("producer: ending %d streams with 'shutdown'", len(self._tasks))
            for run in list(self.runs.values()):
                run.end(EndCode.SHUTDOWN)
            _, late = await asyncio.wait(set(self._tasks), timeout=self.drain_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # 4. stop listening for cancels and the failover loops; leave the producers' set
        if self._cancel_task is not None:
            self._cancel_task.cancel()
            await asyncio.gather(self._cancel_task, return_exceptions=True)
        await self.failover.close()
        await self.intake.close()
        await self.lease.stop()
        await self._leave()
        # 5. flush the writer
        await self.writer.close(self.drain_s)
        # 6. close Redis
        await self.redis.aclose()
        logger.info("producer %s: stopped", self.consumer)


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    consumer_name: str | None = None,
    reclaim_idle_s: float = 15.0,
    heartbeat_s: float = 3.0,
    drain_s: float = 5.0,
) -> None:
    """Run a producer until ``stop`` is set (or the task is cancelled), then shut it down.

    Raises:
        LayoutMismatch: the Redis holds data of another key layout (nothing was started).
    """
    producer = await Producer.create(
        settings,
        consumer=consumer_name,
        reclaim_idle_s=reclaim_idle_s,
        heartbeat_s=heartbeat_s,
        drain_s=drain_s,
    )
    await producer.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await producer.shutdown()


def main(settings: Settings) -> None:
    """Run one producer in this process (uvloop if installed) until SIGINT or SIGTERM.

    Data of another key layout ends the process with status 1 and the message that names the
    fix (on stderr, once), not a traceback.
    """
    tune_gc()
    try:
        run_until_signalled(lambda stop: run(settings, stop=stop))
    except LayoutMismatch as e:
        raise SystemExit(f"fakeai-streams producer: {e}") from None
