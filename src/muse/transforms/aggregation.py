"""Ensemble aggregation A (paper §2.3.2): a weighted mean of the corrected expert scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from muse.transforms._checks import as_finite, as_scores
from muse.types import ScoreArray

__all__ = ["check_weights", "mean_columns", "mean_unchecked", "weighted_mean"]


def check_weights(weights: npt.ArrayLike, n_experts: int | None = None) -> npt.NDArray[np.float64]:
    """Weights normalised to sum to 1, or a ValueError if any is non-finite or not > 0."""
    w = as_finite(weights, "weights")
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {w.shape}")
    if n_experts is not None and w.size != n_experts:
        raise ValueError(f"expected one weight per expert ({n_experts}), got {w.size} weights")
    if (w <= 0).any():
        bad = int(np.flatnonzero(w <= 0)[0])
        raise ValueError(f"weights must be > 0; weight {bad} is {w[bad]!r}")
    # Scaling by the largest weight first keeps the sum finite for weights near float max.
    w = w / w.max()
    normalised: npt.NDArray[np.float64] = w / w.sum()
    return normalised


def weighted_mean(scores: npt.ArrayLike, weights: npt.ArrayLike) -> ScoreArray:
    """Per-event weighted mean of expert scores.

    ``scores`` has shape (n_events, n_experts); ``weights`` one finite positive weight per
    expert, normalised here so only their ratios matter. The result lies within each row's
    [min, max] exactly (floating-point rounding is clipped away), so an ensemble never
    scores outside what its experts said.
    """
    s = as_scores(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape (n_events, n_experts), got shape {s.shape}")
    w = check_weights(weights, s.shape[1])
    return mean_unchecked(s, w)


def mean_unchecked(scores: ScoreArray, normalised_weights: npt.NDArray[np.float64]) -> ScoreArray:
    """The weighted mean for validated inputs (weights already normalised)."""
    if scores.shape[1] == 1:
        return scores[:, 0].copy()
    return mean_columns(list(np.ascontiguousarray(scores.T)), normalised_weights)


def mean_columns(
    columns: Sequence[ScoreArray], normalised_weights: npt.NDArray[np.float64]
) -> ScoreArray:
    """The weighted mean of expert score columns (each 1-D, one per expert).

    Column by column rather than ``scores @ w``: a BLAS product may fuse multiply-adds,
    and the single-event path (plain floats) must reproduce these results bit for bit.
    Element-wise minimum/maximum over the columns instead of ``min(axis=1)``: numpy
    reduces short rows one at a time, which was the slowest step of the whole pipeline.
    """
    out: ScoreArray = columns[0] * normalised_weights[0]
    lo, hi = columns[0], columns[0]
    for k in range(1, len(columns)):
        out += columns[k] * normalised_weights[k]
        lo = np.minimum(lo, columns[k])
        hi = np.maximum(hi, columns[k])
    # Rounding of the sum must not leave the experts' range: an ensemble never scores
    # outside what its experts said.
    return np.clip(out, lo, hi, out=out)
