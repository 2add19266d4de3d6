"""A producer process for failover tests: ``python producer_child.py`` (settings from FAKEAI_*).

It refreshes its requests every 0.2 s (as the tests' in-process producers do), so a producer
started beside it with a 1 s reclaim time takes its requests over only once it is dead.
"""

from __future__ import annotations

import logging

from fakeai.config import Settings
from fakeai.services.producer.service import run
from fakeai.services.runtime import run_until_signalled

if __name__ == "__main__":
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    run_until_signalled(
        lambda stop: run(settings, stop=stop, heartbeat_s=0.2, reclaim_idle_s=1.0, drain_s=1.0)
    )
