"""A producer process for failover tests: ``python producer_child.py`` (settings from FAKEAI_*)."""

from __future__ import annotations

import logging

from fakeai.config import Settings
from fakeai.services.producer.service import main

if __name__ == "__main__":
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    main(settings)
