"""Shared fixtures. Hypothesis: a deterministic profile so a CI failure reproduces locally."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "muse", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("muse")
