"""FakeAI 0.3's module path for :class:`RealtimeStreamingGenerator`.

The class lives in :mod:`fakeai.streaming.generators.realtime`; this module keeps upstream's
import path working. Part of the compatibility surface (``docs/library.md``).
"""

from fakeai.streaming.generators.realtime import RealtimeStreamingGenerator

__all__ = ["RealtimeStreamingGenerator"]
