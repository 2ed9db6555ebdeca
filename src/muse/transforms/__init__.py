"""Score transformations of a predictor (paper §2.3): T^C, A, T^Q and the reference R.

Pure numpy and vectorised; no I/O. Serving and offline fitting use these same functions.
"""

from muse.transforms.aggregation import weighted_mean
from muse.transforms.correction import posterior_correction
from muse.transforms.quantile import QuantileMap, default_levels
from muse.transforms.reference import Reference

__all__ = ["QuantileMap", "Reference", "default_levels", "posterior_correction", "weighted_mean"]
