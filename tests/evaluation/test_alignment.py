"""Alignment to the reference per score bin (paper Fig. 4/6): worked examples and sampling checks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muse.evaluation import (
    AlignmentBin,
    BinAlignment,
    relative_error_by_bin,
    tail_edges,
    wilson_interval,
)
from muse.transforms import Reference
from tests.strategies import score_arrays

UNIFORM = Reference.from_quantiles([0.0, 1.0], [0.0, 1.0])
FRAUD = Reference.beta(0.8, 9.0)


def test_worked_example_with_equal_probability_bins() -> None:
    # Uniform R, 2 bins [0, 0.5[ and [0.5, 1]: 3 of 4 scores below 0.5.
    out = relative_error_by_bin([0.1, 0.2, 0.3, 0.7], UNIFORM, bins=2)
    assert isinstance(out, BinAlignment)
    assert out.n == 4
    assert out.z == 1.96
    low, high = out.bins
    assert (low.lower, low.upper, low.closed) == (0.0, 0.5, False)
    assert (high.lower, high.upper, high.closed) == (0.5, 1.0, True)
    assert (low.count, high.count) == (3, 1)
    assert (low.expected_share, low.observed_share) == (0.5, 0.75)
    assert (low.relative_error, high.relative_error) == (0.5, -0.5)
    # Wilson(3, 4) = [0.300636, 0.954414]; as a relative error: bound / 0.5 − 1.
    assert (low.share_low, low.share_high) == pytest.approx((0.300636, 0.954414), abs=1e-6)
    assert (low.error_low, low.error_high) == pytest.approx((-0.398728, 0.908828), abs=1e-6)
    # Wilson(1, 4) mirrors it.
    assert (high.error_low, high.error_high) == pytest.approx((-0.908828, 0.398728), abs=1e-6)
    assert out.max_abs_error == 0.5
    assert out.relative_errors.tolist() == [0.5, -0.5]
    assert low.covers_expected
    assert high.covers_expected


def test_explicit_edges_expect_the_reference_mass_and_close_the_last_bin() -> None:
    # Edges 0, 0.5, 0.9, 1 expect 0.5, 0.4, 0.1 under the uniform R. A score on an edge
    # belongs to the bin above it ("alert when score >= t"); 1.0 belongs to the last bin.
    out = relative_error_by_bin([0.5, 0.95, 1.0, 0.2], UNIFORM, bins=[0.0, 0.5, 0.9, 1.0])
    assert [b.expected_share for b in out.bins] == pytest.approx([0.5, 0.4, 0.1])
    assert [b.count for b in out.bins] == [1, 1, 2]
    assert [b.relative_error for b in out.bins] == pytest.approx([-0.5, -0.375, 4.0])
    assert [b.label for b in out.bins] == ["[0, 0.5[", "[0.5, 0.9[", "[0.9, 1]"]
    assert out.max_abs_error == pytest.approx(4.0)


def test_edges_need_not_cover_the_unit_interval() -> None:
    # Shares are of all scores: one of two scores lands in [0.5, 1], which R expects half of.
    out = relative_error_by_bin([0.2, 0.6], UNIFORM, bins=np.array([0.5, 1.0]))
    (only,) = out.bins
    assert (only.count, only.observed_share, only.relative_error) == (1, 0.5, 0.0)


def test_to_rows_gives_plain_values_per_bin() -> None:
    rows = relative_error_by_bin([0.1, 0.2, 0.3, 0.7], UNIFORM, bins=2).to_rows()
    assert [r["bin"] for r in rows] == ["[0, 0.5[", "[0.5, 1]"]
    assert [r["count"] for r in rows] == [3, 1]
    assert rows[0]["relative_error"] == 0.5
    assert set(rows[0]) == {
        "bin",
        "lower",
        "upper",
        "expected_share",
        "count",
        "observed_share",
        "share_low",
        "share_high",
        "relative_error",
        "error_low",
        "error_high",
        "covers_expected",
    }
    assert all(type(v) in (str, float, int, bool) for row in rows for v in row.values())


def test_bins_are_frozen_values() -> None:
    out = relative_error_by_bin([0.1, 0.2, 0.3, 0.7], UNIFORM, bins=2)
    assert out == relative_error_by_bin([0.7, 0.3, 0.2, 0.1], UNIFORM, bins=2)
    with pytest.raises(AttributeError):
        out.bins[0].count = 5  # type: ignore[misc]


def test_default_bins_are_equal_probability_bins_of_the_reference() -> None:
    out = relative_error_by_bin([0.01, 0.5], FRAUD)
    assert len(out.bins) == 10
    assert [b.expected_share for b in out.bins] == [0.1] * 10
    inner = [b.upper for b in out.bins[:-1]]
    assert FRAUD.cdf(inner).tolist() == pytest.approx([k / 10 for k in range(1, 10)], abs=1e-9)
    assert (out.bins[0].lower, out.bins[-1].upper) == (0.0, 1.0)


def test_tail_edges_sit_at_the_reference_alert_thresholds() -> None:
    edges = tail_edges(UNIFORM)
    assert edges.tolist() == pytest.approx([0.0, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0])
    shares = [b.expected_share for b in relative_error_by_bin([0.5], UNIFORM, edges).bins]
    assert shares == pytest.approx([0.9, 0.05, 0.04, 0.005, 0.004, 0.001])
    # Order and duplicates of the rates do not matter.
    assert tail_edges(UNIFORM, [0.01, 0.1, 0.01]).tolist() == pytest.approx([0.0, 0.9, 0.99, 1.0])
    # The share at or above each edge is the alert rate of a tenant thresholding there.
    fraud_edges = tail_edges(FRAUD, [0.05, 0.01])
    assert (1.0 - FRAUD.cdf(fraud_edges[1:-1])).tolist() == pytest.approx([0.05, 0.01], abs=1e-9)


def test_scores_drawn_from_the_reference_align() -> None:
    rng = np.random.default_rng(20250101)
    scores = rng.beta(0.8, 9.0, 200_000)
    out = relative_error_by_bin(scores, FRAUD)
    # Each bin expects 20 000 events: a relative standard error of sqrt(0.9 / 20 000) ≈ 0.7 %.
    assert out.max_abs_error < 0.03
    # 95 % intervals: missing 3 or more of 10 has probability ≈ 1 %.
    assert sum(b.covers_expected for b in out.bins) >= 8
    tail = relative_error_by_bin(scores, FRAUD, tail_edges(FRAUD))
    # The thinnest tail bin expects 200 events (relative standard error ≈ 7 %).
    assert tail.max_abs_error < 0.25
    assert sum(b.covers_expected for b in tail.bins) >= 4


def test_scores_from_another_distribution_are_flagged() -> None:
    rng = np.random.default_rng(11)
    scores = rng.beta(0.8, 6.0, 200_000)  # a fatter tail than R: over-alerting
    out = relative_error_by_bin(scores, FRAUD)
    assert out.max_abs_error > 0.5
    significant = [b for b in out.bins if b.error_low > 0.0 or b.error_high < 0.0]
    assert len(significant) >= 8
    assert out.bins[-1].error_low > 0.5  # the top decile is clearly over-populated
    tail = relative_error_by_bin(scores, FRAUD, tail_edges(FRAUD))
    # Over-alerting grows with the threshold: the tenants with the tightest budgets suffer most.
    assert all(b.error_low > 0.5 for b in tail.bins[1:])
    assert np.all(np.diff(tail.relative_errors) > 0.0)


@given(score_arrays(max_size=300), st.integers(1, 12))
def test_counts_and_intervals_are_consistent(scores: np.ndarray, n_bins: int) -> None:
    out = relative_error_by_bin(scores, UNIFORM, bins=n_bins)
    assert sum(b.count for b in out.bins) == scores.size  # default bins cover [0, 1]
    for b in out.bins:
        assert (b.share_low, b.share_high) == pytest.approx(wilson_interval(b.count, scores.size))
        assert b.error_low <= b.relative_error <= b.error_high
        assert b.relative_error == pytest.approx(b.observed_share / b.expected_share - 1.0)
        assert b.relative_error >= -1.0


def test_z_widens_the_error_bars() -> None:
    narrow = relative_error_by_bin([0.1, 0.2, 0.3, 0.7], UNIFORM, bins=2)
    wide = relative_error_by_bin([0.1, 0.2, 0.3, 0.7], UNIFORM, bins=2, z=3.0)
    assert wide.bins[0].error_low < narrow.bins[0].error_low
    assert wide.bins[0].error_high > narrow.bins[0].error_high


@pytest.mark.parametrize(
    ("scores", "bins", "match"),
    [
        ([], 10, "scores must not be empty"),
        ([0.1, math.nan], 10, "scores must be finite"),
        ([0.1, math.inf], 10, "scores must be finite"),
        ([0.1, 1.5], 10, r"scores must lie in \[0, 1\]"),
        ([0.1, -0.01], 10, r"scores must lie in \[0, 1\]"),
        ([0.1], 0, "bins must be >= 1"),
        ([0.1], [0.5], "at least 2"),
        ([0.1], [0.0, 0.5, 0.5, 1.0], "strictly increasing"),
        ([0.1], [0.0, 1.2], "strictly increasing"),
        ([0.1], [0.0, math.nan], "bins must be finite"),
    ],
)
def test_bad_inputs_are_refused(
    scores: list[float], bins: int | Sequence[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        relative_error_by_bin(scores, UNIFORM, bins)


def test_bins_without_reference_mass_are_refused() -> None:
    # R concentrated on [0, 0.5]: a bin above it has no expected share to divide by.
    half = Reference.from_quantiles([0.0, 1.0], [0.0, 0.5])
    with pytest.raises(ValueError, match="no probability under"):
        relative_error_by_bin([0.1], half, [0.0, 0.5, 0.8, 1.0])


def test_point_masses_that_merge_edges_are_refused() -> None:
    # Half of R's mass sits at 0: equal-probability edges coincide there.
    atom = Reference.from_quantiles([0.0, 0.5, 1.0], [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="coinciding edges"):
        relative_error_by_bin([0.1], atom, 4)
    with pytest.raises(ValueError, match="coinciding score edges"):
        tail_edges(atom, [0.9, 0.8])


@pytest.mark.parametrize("rates", [[], [0.0], [1.0], [0.1, -0.2]])
def test_tail_edges_refuse_rates_outside_the_open_unit_interval(rates: list[float]) -> None:
    with pytest.raises(ValueError, match="alert_rates must be"):
        tail_edges(UNIFORM, rates)


def test_alignment_bin_label_and_coverage() -> None:
    b = AlignmentBin(
        lower=0.25,
        upper=0.5,
        closed=False,
        expected_share=0.25,
        count=10,
        observed_share=0.1,
        share_low=0.05,
        share_high=0.2,
        relative_error=-0.6,
        error_low=-0.8,
        error_high=-0.2,
    )
    assert b.label == "[0.25, 0.5["
    assert not b.covers_expected
