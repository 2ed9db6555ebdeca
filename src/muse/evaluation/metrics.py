"""Scalar metrics of a report: calibration (paper §3.3, Table 1), ranking, and Wilson intervals.

Calibration is measured twice, as the paper does: ECE_SWEEP^EM (Roelofs et al. 2022), which
is less biased than fixed-bin ECE but blind to a constant predictor, and the Brier score,
which is not. Ranking metrics answer the model-CI question "does the candidate catch as
much fraud at the alert budget the tenant already pays for?" — recall at a fixed false
positive rate — and its threshold-free companion, average precision.

Everything is numpy only: scikit-learn is a training extra, not a runtime dependency, and
these definitions are small enough to own (the tests pin them against sklearn).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from muse.transforms._checks import as_finite, as_scores
from muse.types import ScoreArray

__all__ = ["brier_score", "ece_sweep_em", "pr_auc", "recall_at_fpr", "wilson_interval"]

_Labels = npt.NDArray[np.int64]


# -- Wilson score interval ---------------------------------------------------------------


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n`` (paper Fig. 4/6 error bars, [43]).

    Preferred over the normal (Wald) interval because alert-rate bins in the score tail hold
    few events: Wilson stays inside [0, 1] and keeps a sensible width at ``k = 0``.

    >>> [round(bound, 4) for bound in wilson_interval(0, 10)]
    [0.0, 0.2775]
    """
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer count, got {value!r}")
    if n <= 0:
        raise ValueError(f"n must be a positive number of trials, got {n!r}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n] = [0, {n}], got {k!r}")
    _check_z(z)
    lo, hi = _wilson_bounds(np.array([k]), np.array([n]), z)
    return float(lo[0]), float(hi[0])


def _check_z(z: float) -> None:
    if not (isinstance(z, int | float) and math.isfinite(z) and z > 0.0):
        raise ValueError(f"z must be a positive finite z-score (1.96 ≈ 95 %), got {z!r}")


def _wilson_bounds(
    k: npt.NDArray[np.int64], n: npt.NDArray[np.int64], z: float
) -> tuple[ScoreArray, ScoreArray]:
    """Vectorised Wilson bounds; callers have checked ``0 <= k <= n`` and ``n > 0``."""
    kf = k.astype(np.float64)
    nf = n.astype(np.float64)
    z2 = z * z
    denom = nf + z2
    centre = (kf + z2 / 2.0) / denom
    half = z / denom * np.sqrt(kf * (nf - kf) / nf + z2 / 4.0)
    lo = np.clip(centre - half, 0.0, 1.0)
    hi = np.clip(centre + half, 0.0, 1.0)
    # Analytically the bounds are exactly 0 at k = 0 and 1 at k = n; pin them so float noise
    # never leaves the point estimate outside its own interval.
    lo[k == 0] = 0.0
    hi[k == n] = 1.0
    return lo, hi


# -- calibration -------------------------------------------------------------------------


def brier_score(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (paper Table 1).

    Complements ECE: a constant predictor at the base rate has ECE 0 but a poor Brier score.
    """
    p, y = _probs_and_labels(probs, labels)
    return float(np.mean((p - y) ** 2))


def ece_sweep_em(probs: npt.ArrayLike, labels: npt.ArrayLike, p: int = 1) -> float:
    """ECE_SWEEP^EM of Roelofs et al. 2022, "Mitigating bias in calibration error estimation".

    The estimator of paper Table 1. Equal-mass bins; the number of bins is swept upward
    from 1 and the largest count whose per-bin label means are still monotonically
    non-decreasing is kept, because with more bins the estimate is dominated by label noise
    (biased upward) and with fewer it averages real miscalibration away. Returns
    ``(Σ_b n_b/N · |mean_prob_b − mean_label_b|^p)^(1/p)``.

    Follows the authors' code, google-research/google-research ``caltrain/calibration_metrics.py``
    (``CalibrationMetric.em_monotonic_sweep`` and ``_calc_ece_postbin``):

    * rank ``i`` of ``N`` sorted probabilities goes to bin ``min(b − 1, floor(i / N · b))``,
      so remainders go to the later bins and tied probabilities may straddle a bin edge;
      ties keep their input order (a stable sort; the reference's ``argsort`` leaves it
      unspecified);
    * bin counts ``b = 2, 3, …, N − 1`` are tried, stopping at the first non-monotone one
      (a strictly lower label mean than the previous bin's); one bin when ``N < 3``.

    Cost is O(N log N) plus O(b) per bin count tried; the sweep stops at the first
    non-monotone count, which label noise brings early on real data.

    Unlike the reference, non-finite probabilities are refused rather than dropped.
    """
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"p must be an integer norm >= 1, got {p!r}")
    fx, y = _probs_and_labels(probs, labels)
    order = np.argsort(fx, kind="stable")
    fx_sorted, y_sorted = fx[order], y[order].astype(np.float64)
    n = fx.size
    # Prefix sums make each candidate bin count cost O(b), not O(N), so a long sweep (nearly
    # separated labels) stays affordable.
    cum_fx = np.concatenate(([0.0], np.cumsum(fx_sorted)))
    cum_y = np.concatenate(([0.0], np.cumsum(y_sorted)))

    best = np.array([0, n])
    if n >= 3 and bool(np.all(np.diff(y_sorted) >= 0.0)):
        # Perfectly separated labels: block means of a sorted sequence are sorted, so every
        # bin count passes and the sweep would run to the end; jump there in O(N).
        best = _equal_mass_bounds(n, n - 1)
    else:
        for b in range(2, n):
            bounds = _equal_mass_bounds(n, b)
            if not _monotone(cum_y, bounds):
                break
            best = bounds
    counts = np.diff(best)
    keep = counts > 0
    lo, hi, c = best[:-1][keep], best[1:][keep], counts[keep]
    mean_fx = (cum_fx[hi] - cum_fx[lo]) / c
    mean_y = (cum_y[hi] - cum_y[lo]) / c
    return float((np.sum(c * np.abs(mean_y - mean_fx) ** p) / n) ** (1.0 / p))


def _equal_mass_bounds(n: int, b: int) -> npt.NDArray[np.int64]:
    """Start rank of each of ``b`` equal-mass bins, then ``n``: bin ``j`` is ranks [s_j, s_j+1)."""
    j = np.arange(b, dtype=np.int64)
    starts = -((-j * n) // b)  # ceil(j·n / b): the first rank with i·b/n >= j
    # The reference assigns bins with the float expression floor((i / n) · b). When i·b/n is
    # exactly j, (i / n) · b can round to just below j (n = 44, b = 22, i = 30 gives 14.999…),
    # and that rank then belongs to bin j − 1. Reproduce it so our numbers equal the authors'.
    slipped = np.floor((starts / n) * b) < j
    starts = starts + slipped
    return np.append(starts, n)


def _monotone(cum_y: ScoreArray, bounds: npt.NDArray[np.int64]) -> bool:
    counts = np.diff(bounds)
    keep = counts > 0  # the reference skips empty bins
    means = (cum_y[bounds[1:]] - cum_y[bounds[:-1]])[keep] / counts[keep]
    return bool(np.all(np.diff(means) >= 0.0))


# -- ranking -----------------------------------------------------------------------------


def recall_at_fpr(scores: npt.ArrayLike, labels: npt.ArrayLike, fpr: float) -> float:
    """Highest recall over thresholds ``t`` (alert when ``score >= t``) with false-positive rate <= ``fpr``.

    The model-CI comparison at a tenant's alert budget. A threshold cannot split tied
    scores, so only the distinct score values (and "alert on nothing") are candidates; with
    no such threshold inside the budget the recall is 0. Scores may be any finite reals —
    only their order matters.
    """
    if not (isinstance(fpr, int | float) and math.isfinite(fpr) and 0.0 <= fpr <= 1.0):
        raise ValueError(f"fpr must be a false-positive rate in [0, 1], got {fpr!r}")
    tp, fp, n_pos, n_neg = _cumulative_counts(scores, labels)
    if n_neg == 0:
        raise ValueError(
            "labels must contain at least one negative (0) to define a false-positive rate"
        )
    within = fp / n_neg <= fpr
    return float(tp[within].max() / n_pos) if within.any() else 0.0


def pr_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Average precision: ``Σ_t (R_t − R_t−1) · P_t`` over the distinct score thresholds.

    The step-wise area under the precision–recall curve, as
    ``sklearn.metrics.average_precision_score`` defines it (no trapezoids, which overstate
    the area when classes are imbalanced as fraud is). Tied scores form one threshold.
    """
    tp, fp, n_pos, _ = _cumulative_counts(scores, labels)
    precision = tp / (tp + fp)
    recall_gain = np.diff(tp, prepend=0.0) / n_pos
    return float(np.sum(recall_gain * precision))


def _cumulative_counts(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[ScoreArray, ScoreArray, int, int]:
    """True and false positives when alerting at each distinct score, from the highest down."""
    arr = as_finite(scores, "scores")
    y = _labels(labels, arr.shape)
    s = arr.ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError(
            "labels must contain at least one positive (1); recall is undefined without"
        )
    order = np.argsort(-s, kind="stable")
    s_desc = s[order]
    tp_all = np.cumsum(y[order])
    # The last rank of each run of tied scores: the only places a threshold can cut.
    cuts = np.append(np.flatnonzero(np.diff(s_desc) != 0.0), s.size - 1)
    tp = tp_all[cuts].astype(np.float64)
    fp = (cuts + 1).astype(np.float64) - tp
    return tp, fp, n_pos, s.size - n_pos


# -- validation --------------------------------------------------------------------------


def _probs_and_labels(probs: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[ScoreArray, _Labels]:
    p = as_scores(probs, "probs")
    y = _labels(labels, p.shape)
    return p.ravel(), y


def _labels(labels: npt.ArrayLike, shape: tuple[int, ...]) -> _Labels:
    """``labels`` as a flat int array of 0/1 matching ``shape``, or a ValueError naming them."""
    raw = np.asarray(labels)
    if raw.shape != shape:
        raise ValueError(
            f"labels must have the same shape as the scores {shape!r}, got {raw.shape!r}"
        )
    if raw.size == 0:
        raise ValueError("scores and labels must not be empty")
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"labels must be 0/1 (bool or numeric), got dtype {raw.dtype}")
    bad = (raw != 0) & (raw != 1)
    if bad.any():
        idx = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"labels must be 0 or 1; found {raw.flat[idx]!r} at position {idx}")
    return raw.ravel().astype(np.int64)
