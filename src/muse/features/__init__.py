"""Feature handling: turning a client's feature columns into each model's matrix."""

from muse.features.table import FeatureTable

__all__ = ["FeatureTable"]
