"""Settings shared by every service."""

from fakeai.config.settings import Settings, default_state_dir

__all__ = ["Settings", "default_state_dir"]
