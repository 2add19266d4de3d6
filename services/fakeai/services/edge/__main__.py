"""``python -m fakeai.services.edge``: serve the edge with settings from ``FAKEAI_*``."""

from __future__ import annotations

import logging
import sys

from fakeai.config import Settings
from fakeai.services.edge.app import serve


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as e:
        print(f"fakeai edge: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
