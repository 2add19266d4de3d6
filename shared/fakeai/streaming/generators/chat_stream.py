"""FakeAI 0.3's module path for :class:`ChatStreamingGenerator`.

The class lives in :mod:`fakeai.streaming.generators.chat`; this module keeps upstream's
import path working. Part of the compatibility surface (``docs/library.md``).
"""

from fakeai.streaming.generators.chat import ChatStreamingGenerator

__all__ = ["ChatStreamingGenerator"]
