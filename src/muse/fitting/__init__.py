"""Fitting tenant maps offline: sample-size guard (Eq. 5) now; lake fits and cold start next."""

from muse.fitting.sample_size import required_samples

__all__ = ["required_samples"]
