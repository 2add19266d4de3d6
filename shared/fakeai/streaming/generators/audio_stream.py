"""FakeAI 0.3's module path for :class:`AudioStreamingGenerator`.

The class lives in :mod:`fakeai.streaming.generators.audio`; this module keeps upstream's
import path working. Part of the compatibility surface (``docs/library.md``).
"""

from fakeai.streaming.generators.audio import AudioStreamingGenerator

__all__ = ["AudioStreamingGenerator"]
