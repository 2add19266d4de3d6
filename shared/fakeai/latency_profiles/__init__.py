"""Per-model latency profiles and the schedule of one stream (``get_latency_manager()``).

``profiles``: the :class:`LatencyProfile` table and model-name matching; ``manager``:
:class:`LatencyProfileManager`, which implements :class:`fakeai.timing.LatencyModel`.
"""

from fakeai.latency_profiles.manager import Jitter, LatencyProfileManager, get_latency_manager
from fakeai.latency_profiles.profiles import DEFAULT_PROFILE, LATENCY_PROFILES, LatencyProfile

__all__ = [
    "DEFAULT_PROFILE",
    "LATENCY_PROFILES",
    "Jitter",
    "LatencyProfile",
    "LatencyProfileManager",
    "get_latency_manager",
]
