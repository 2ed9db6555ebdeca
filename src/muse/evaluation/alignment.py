"""Alignment of served scores to the reference R, bin by bin (paper §3.1–3.2, Fig. 4 and 6).

The score contract says a tenant's scores follow R, so threshold ``t`` alerts on
``1 − F_R(t)`` of traffic. The paper checks it by the relative error of each bin's observed
share against R's share, with Wilson intervals for sampling noise. The bins matter:

* **Equal-probability bins** (the default, ``bins=10``): every bin expects the same share, so
  every point has the same statistical weight and one plot compares bins fairly.
* **Equal-width score bins** (``bins=np.linspace(0, 1, 11)``): the paper's figures. Under a
  fraud-shaped R the upper bins hold a few events per thousand, so their errors are noisy.
* **Tail bins** (:func:`tail_edges`): edges at the scores where R alerts on 10 %, 5 %, 1 %,
  0.5 %, 0.1 % of traffic. Tenants put their thresholds there, and a bin's error is then
  directly the error of an alert budget's increment; a 10-bin equal-probability view
  lumps the whole top decile together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from muse.evaluation.metrics import _check_z, _wilson_bounds
from muse.transforms import Reference
from muse.transforms._checks import as_finite, as_scores
from muse.types import ScoreArray

__all__ = ["AlignmentBin", "BinAlignment", "relative_error_by_bin", "tail_edges"]

DEFAULT_ALERT_RATES = (0.1, 0.05, 0.01, 0.005, 0.001)


@dataclass(frozen=True, slots=True)
class AlignmentBin:
    """One score bin ``[lower, upper[`` (``[lower, upper]`` for the last): R's share against the observed one.

    ``share_low``/``share_high`` is the Wilson interval of the observed share;
    ``error_low``/``error_high`` is the same interval as a relative error
    (``bound / expected_share − 1``), the error bar of paper Fig. 4/6.
    """

    lower: float
    upper: float
    closed: bool
    expected_share: float
    count: int
    observed_share: float
    share_low: float
    share_high: float
    relative_error: float
    error_low: float
    error_high: float

    @property
    def label(self) -> str:
        """The paper's notation, ``[0.1, 0.2[`` or ``[0.9, 1]`` for the closed last bin."""
        return f"[{self.lower:.4g}, {self.upper:.4g}{']' if self.closed else '['}"

    @property
    def covers_expected(self) -> bool:
        """Whether R's share lies inside the observed share's interval (no detectable error)."""
        return self.share_low <= self.expected_share <= self.share_high


@dataclass(frozen=True, slots=True)
class BinAlignment:
    """Per-bin alignment of ``n`` scores to a reference, with intervals at confidence ``z``."""

    bins: tuple[AlignmentBin, ...]
    n: int
    z: float

    @property
    def max_abs_error(self) -> float:
        """The worst bin's ``|observed / expected − 1|``: one number for a pass/fail gate."""
        return max(abs(b.relative_error) for b in self.bins)

    @property
    def relative_errors(self) -> ScoreArray:
        """Relative error of every bin, in bin order (for plotting)."""
        return np.array([b.relative_error for b in self.bins], dtype=np.float64)

    def to_rows(self) -> list[dict[str, float | int | str | bool]]:
        """One plain dict per bin, ready for a table, CSV or JSON report."""
        return [
            {
                "bin": b.label,
                "lower": b.lower,
                "upper": b.upper,
                "expected_share": b.expected_share,
                "count": b.count,
                "observed_share": b.observed_share,
                "share_low": b.share_low,
                "share_high": b.share_high,
                "relative_error": b.relative_error,
                "error_low": b.error_low,
                "error_high": b.error_high,
                "covers_expected": b.covers_expected,
            }
            for b in self.bins
        ]


def relative_error_by_bin(
    scores: npt.ArrayLike,
    reference: Reference,
    bins: int | Sequence[float] | ScoreArray = 10,
    *,
    z: float = 1.96,
) -> BinAlignment:
    """Relative error of the observed share of ``scores`` per bin against ``reference`` (Fig. 4/6).

    ``bins`` is either a number of equal-probability bins of R (edges ``R.ppf(k / bins)``,
    stretched to 0 and 1, each expecting ``1 / bins``) or explicit score edges, strictly
    increasing in [0, 1], expecting ``diff(R.cdf(edges))``. Bins are ``[e_i, e_i+1[``, the
    last closed, so the share at or above an edge is "alert when score >= edge". Shares are
    of *all* scores: explicit edges need not cover [0, 1] (scores outside count in no bin).
    """
    s = as_scores(scores, "scores").ravel()
    if s.size == 0:
        raise ValueError(
            "scores must not be empty: there is no share to compare with the reference"
        )
    _check_z(z)
    edges, expected = _edges_and_expected(reference, bins)
    n_bins = expected.size

    idx = np.searchsorted(edges, s, side="right") - 1
    idx[s == edges[-1]] = n_bins - 1
    inside = (idx >= 0) & (idx < n_bins)
    counts = np.bincount(idx[inside], minlength=n_bins).astype(np.int64)
    n = np.full(n_bins, s.size, dtype=np.int64)
    share_lo, share_hi = _wilson_bounds(counts, n, z)
    observed = counts / s.size

    return BinAlignment(
        bins=tuple(
            AlignmentBin(
                lower=float(edges[i]),
                upper=float(edges[i + 1]),
                closed=i == n_bins - 1,
                expected_share=float(expected[i]),
                count=int(counts[i]),
                observed_share=float(observed[i]),
                share_low=float(share_lo[i]),
                share_high=float(share_hi[i]),
                relative_error=float(observed[i] / expected[i] - 1.0),
                error_low=float(share_lo[i] / expected[i] - 1.0),
                error_high=float(share_hi[i] / expected[i] - 1.0),
            )
            for i in range(n_bins)
        ),
        n=int(s.size),
        z=float(z),
    )


def tail_edges(
    reference: Reference, alert_rates: Sequence[float] = DEFAULT_ALERT_RATES
) -> ScoreArray:
    """Score edges ``0, R⁻¹(1 − a) for each alert rate a (largest first), 1`` for :func:`relative_error_by_bin`.

    Resolves the high-score tail, where tenants' thresholds live: the bin between the
    thresholds for alert rates ``a`` and ``a'`` expects ``a − a'`` of traffic, and the
    cumulative share above each edge is that tenant's alert rate. Everything below the
    largest rate is one bin.
    """
    rates = as_finite(alert_rates, "alert_rates").ravel()
    if rates.size == 0 or (rates <= 0.0).any() or (rates >= 1.0).any():
        raise ValueError(
            f"alert_rates must be a non-empty set of rates in (0, 1), got {alert_rates!r}"
        )
    levels = np.concatenate(([0.0], 1.0 - np.unique(rates)[::-1], [1.0]))
    edges = reference.ppf(levels)
    edges[0], edges[-1] = 0.0, 1.0
    if (np.diff(edges) <= 0.0).any():
        raise ValueError(
            f"alert rates {alert_rates!r} give coinciding score edges {edges.tolist()!r} under "
            f"{reference!r} (a point mass); drop the rates that share a threshold"
        )
    return edges


def _edges_and_expected(
    reference: Reference, bins: int | Sequence[float] | ScoreArray
) -> tuple[ScoreArray, ScoreArray]:
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be >= 1 (or a sequence of score edges), got {bins!r}")
        edges = reference.ppf(np.linspace(0.0, 1.0, int(bins) + 1))
        # R has no mass outside [ppf(0), ppf(1)], so stretching the outer edges to the score
        # range changes no expected share and puts every score in a bin.
        edges[0], edges[-1] = 0.0, 1.0
        if (np.diff(edges) <= 0.0).any():
            raise ValueError(
                f"{bins} equal-probability bins of {reference!r} have coinciding edges (a point "
                "mass); pass explicit score edges instead"
            )
        return edges, np.full(int(bins), 1.0 / int(bins))
    edges = as_finite(bins, "bins").ravel()
    if edges.size < 2:
        raise ValueError(f"bins as edges needs at least 2 of them, got {edges.tolist()!r}")
    if edges[0] < 0.0 or edges[-1] > 1.0 or (np.diff(edges) <= 0.0).any():
        raise ValueError(
            f"bin edges must be strictly increasing within [0, 1], got {edges.tolist()!r}"
        )
    expected = np.diff(reference.cdf(edges))
    if (expected <= 0.0).any():
        i = int(np.flatnonzero(expected <= 0.0)[0])
        raise ValueError(
            f"bin [{edges[i]!r}, {edges[i + 1]!r}] has no probability under {reference!r}, so its "
            "relative error is undefined; merge it with a neighbour"
        )
    return edges, expected
