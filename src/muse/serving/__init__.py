"""The HTTP service around the scoring core: API, auth, errors, shadows, lake, health, metrics."""

from muse.serving.app import MuseApp

__all__ = ["MuseApp"]
