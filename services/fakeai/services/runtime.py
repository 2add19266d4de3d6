"""Running one service in a process: uvloop when installed, stopped by SIGINT or SIGTERM, with
the garbage collector tuned for per-chunk allocation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable

__all__ = ["run_until_signalled", "tune_gc"]


def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``service(stop)``; SIGINT/SIGTERM set ``stop`` and the service shuts down in order."""

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service(stop)

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(_main())
        else:
            uvloop.run(_main())


def tune_gc(gen0: int = 50_000) -> None:
    """Fewer, cheaper garbage collections for a process that allocates per chunk.

    The producer builds, and the edge parses and writes, a few short-lived objects per chunk
    (an edge XREAD reply of 750 entries is ~7,500), so the default gen0 threshold (700) runs a
    young collection every few dozen chunks and a full one, which walks every live object of a
    thousand open streams, every few seconds: a pause that delays every chunk due in it (the
    ITL tail at 1,000 streams). Objects alive at start-up (modules, profiles, vocabularies, the
    app) are moved out of the collector's sight
    (``gc.freeze``, https://docs.python.org/3/library/gc.html#gc.freeze).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
