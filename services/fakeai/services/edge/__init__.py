"""The HTTP edge: OpenAI endpoints in, durable Redis stream logs out, to any number of clients.

Flow: ``Last-Event-ID`` -> XRANGE catch-up / hub XREAD fan-out -> SSE, JSON Lines or text.
"""

from fakeai.services.edge.app import create_app, run, serve

__all__ = ["create_app", "run", "serve"]
