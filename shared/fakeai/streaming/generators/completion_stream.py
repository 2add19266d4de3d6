"""FakeAI 0.3's module path for :class:`CompletionStreamingGenerator`.

The class lives in :mod:`fakeai.streaming.generators.completion`; this module keeps upstream's
import path working. Part of the compatibility surface (``docs/library.md``).
"""

from fakeai.streaming.generators.completion import CompletionStreamingGenerator

__all__ = ["CompletionStreamingGenerator"]
