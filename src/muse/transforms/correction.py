"""Posterior Correction T^C (paper §2.3.1, Eq. 3).

An expert trained on data whose negatives were undersampled at rate β over-estimates the
positive class; Dal Pozzolo et al. (2015) show the unbiased posterior is
``β ỹ / (1 − (1 − β) ỹ)``. Correcting each expert before aggregation stops the most
aggressively undersampled expert from dominating the ensemble through its inflated scores.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from muse.transforms._checks import as_scores
from muse.types import ScoreArray

__all__ = ["check_beta", "correct_unchecked", "posterior_correction"]


def check_beta(beta: float) -> float:
    """``beta`` as a float if it is an undersampling ratio in (0, 1], else a ValueError."""
    if isinstance(beta, bool) or not isinstance(beta, int | float | np.integer | np.floating):
        raise ValueError(
            f"beta (undersampling ratio of the negative class) must be a number in (0, 1], "
            f"got {beta!r}"
        )
    b = float(beta)
    if not (math.isfinite(b) and 0.0 < b <= 1.0):
        raise ValueError(
            f"beta (undersampling ratio of the negative class) must be in (0, 1], got {beta!r}; "
            "use 1 for a model trained without undersampling"
        )
    return b


def posterior_correction(scores: npt.ArrayLike, beta: float) -> ScoreArray:
    """T^C_k(ỹ) = β ỹ / (1 − (1 − β) ỹ), element-wise (Eq. 3).

    ``beta = 1`` is the identity. The map is monotone increasing and fixes 0 and 1, so the
    ranking of events is unchanged. Scores outside [0, 1] or non-finite raise ValueError.
    """
    b = check_beta(beta)
    arr = as_scores(scores)
    if b == 1.0:
        return arr.copy()
    # A scalar (0-d) input keeps its shape, but numpy's in-place ops need an array.
    return correct_unchecked(np.atleast_1d(arr), b).reshape(arr.shape)


def correct_unchecked(scores: ScoreArray, beta: float) -> ScoreArray:
    """Eq. 3 without input checks, for callers that validated once upstream (the predictor).

    Written as ``β ỹ / (1 − ỹ + β ỹ)``: the same value, one multiplication fewer.
    """
    num = scores * beta
    den = 1.0 - scores
    den += num
    # den == 0 only where ỹ == 1 and β == 0, which check_beta excludes.
    return np.divide(num, den, out=num)
