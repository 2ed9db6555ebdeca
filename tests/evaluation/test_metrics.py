"""Report metrics (paper §3, Table 1): worked examples, properties, and reference implementations."""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from muse.evaluation import brier_score, ece_sweep_em, pr_auc, recall_at_fpr, wilson_interval

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Scores drawn from a few values, so ties (which thresholds cannot split) are common.
_tied = st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0])
_continuous = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def scored_labels(
    draw: st.DrawFn, min_size: int = 1, both: bool = False
) -> tuple[FloatArray, IntArray]:
    """(scores, labels); with ``both`` at least one positive and one negative."""
    pairs = draw(
        st.lists(
            st.tuples(st.one_of(_tied, _continuous), st.integers(0, 1)),
            min_size=min_size,
            max_size=120,
        )
    )
    s = np.array([p[0] for p in pairs], dtype=np.float64)
    y = np.array([p[1] for p in pairs], dtype=np.int64)
    if both:
        y[0], y[-1] = 1, 0
        if y.size == 1:
            s, y = np.append(s, s), np.array([1, 0])
    return s, y


# -- public surface --------------------------------------------------------------------------


def test_public_names_and_signatures_are_pinned() -> None:
    mod = importlib.import_module("muse.evaluation")
    assert sorted(mod.__all__) == [
        "AlignmentBin",
        "BinAlignment",
        "brier_score",
        "ece_sweep_em",
        "pr_auc",
        "recall_at_fpr",
        "relative_error_by_bin",
        "tail_edges",
        "wilson_interval",
    ]
    expected = {
        "wilson_interval": ["k", "n", "z"],
        "relative_error_by_bin": ["scores", "reference", "bins", "z"],
        "ece_sweep_em": ["probs", "labels", "p"],
        "brier_score": ["probs", "labels"],
        "recall_at_fpr": ["scores", "labels", "fpr"],
        "pr_auc": ["scores", "labels"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(mod, name)).parameters) == params
    assert inspect.signature(wilson_interval).parameters["z"].default == 1.96
    assert inspect.signature(ece_sweep_em).parameters["p"].default == 1


# -- Wilson interval -------------------------------------------------------------------------


def test_wilson_worked_examples() -> None:
    # k = 3, n = 4, z² = 3.8416: centre (3 + 1.9208) / 7.8416 = 0.627525,
    # half-width 1.96 / 7.8416 · sqrt(3·1/4 + 0.9604) = 0.326889.
    assert wilson_interval(3, 4) == pytest.approx((0.300636, 0.954414), abs=1e-6)
    # k = 0: [0, z² / (n + z²)] = [0, 3.8416 / 13.8416].
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277540), abs=1e-6)
    assert wilson_interval(10, 10) == pytest.approx((1.0 - 0.277540, 1.0), abs=1e-6)
    # A wider z gives a wider interval around the same point.
    lo95, hi95 = wilson_interval(30, 100)
    lo99, hi99 = wilson_interval(30, 100, z=2.576)
    assert lo99 < lo95 < 0.3 < hi95 < hi99


@given(st.integers(1, 10**7).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_proportion_within_unit_interval(kn: tuple[int, int]) -> None:
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@given(st.integers(1, 10**6).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_narrows_with_more_trials_at_the_same_proportion(kn: tuple[int, int]) -> None:
    k, n = kn
    lo, hi = wilson_interval(k, n)
    lo2, hi2 = wilson_interval(4 * k, 4 * n)
    assert hi2 - lo2 < hi - lo


@pytest.mark.parametrize(
    ("k", "n", "z", "match"),
    [
        (0, 0, 1.96, "n must be a positive"),
        (1, -2, 1.96, "n must be a positive"),
        (5, 4, 1.96, "k must lie in"),
        (-1, 4, 1.96, "k must lie in"),
        (1, 4, 0.0, "z must be"),
        (1, 4, math.nan, "z must be"),
        (1.5, 4, 1.96, "k must be an integer"),
    ],
)
def test_wilson_refuses_bad_counts(k: int, n: int, z: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        wilson_interval(k, n, z)


# -- Brier -----------------------------------------------------------------------------------


def test_brier_worked_example() -> None:
    # (0.1² + 0.1² + 0.5²) / 3 = 0.27 / 3
    assert brier_score([0.1, 0.9, 0.5], [0, 1, 1]) == pytest.approx(0.09, abs=1e-15)
    assert brier_score([0.0, 1.0], [True, False]) == 1.0


@given(scored_labels())
def test_brier_matches_the_formula(data: tuple[FloatArray, IntArray]) -> None:
    p, y = data
    manual = sum((float(pi) - int(yi)) ** 2 for pi, yi in zip(p, y, strict=True)) / len(p)
    assert brier_score(p, y) == pytest.approx(manual, rel=1e-12, abs=1e-15)


# -- ECE_SWEEP^EM ----------------------------------------------------------------------------


def _ece_sweep_em_by_loops(fx: FloatArray, y: IntArray, p: int) -> float:
    """The sweep as Roelofs et al. describe it (caltrain/calibration_metrics.py), one bin at a time."""
    n = fx.size
    order = np.argsort(fx, kind="stable")

    def assign(b: int) -> IntArray:
        bins = np.empty(n, dtype=np.int64)
        bins[order] = np.minimum(b - 1, np.floor(np.arange(n) / n * b)).astype(np.int64)
        return bins

    def ece_and_monotone(bins: IntArray) -> tuple[float, bool]:
        total, last, monotone = 0.0, -math.inf, True
        for j in range(int(bins.max()) + 1):
            members = bins == j
            if members.any():
                acc = float(y[members].mean())
                monotone &= acc >= last
                last = acc
                total += members.sum() * abs(acc - float(fx[members].mean())) ** p
        return (total / n) ** (1.0 / p), monotone

    chosen = np.zeros(n, dtype=np.int64)
    for b in range(2, n):
        candidate = assign(b)
        if not ece_and_monotone(candidate)[1]:
            break
        chosen = candidate
    return ece_and_monotone(chosen)[0]


def test_ece_worked_example() -> None:
    probs = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
    labels = [0, 0, 1, 0, 1, 1]
    # 2 bins: label means 1/3, 2/3 (monotone); 3 bins {0.1, 0.2} {0.3, 0.4} {0.6, 0.8}: 0, ½, 1
    # (monotone); 4 bins {0.1, 0.2} {0.3} {0.4, 0.6} {0.8}: 0, 1, ½, 1 (not) -> keep 3 bins.
    # p = 1: (2·|0.15 − 0| + 2·|0.35 − 0.5| + 2·|0.7 − 1|) / 6 = 1.2 / 6
    assert ece_sweep_em(probs, labels) == pytest.approx(0.2, abs=1e-12)
    # p = 2: sqrt((2·0.0225 + 2·0.0225 + 2·0.09) / 6) = sqrt(0.045)
    assert ece_sweep_em(probs, labels, p=2) == pytest.approx(math.sqrt(0.045), abs=1e-12)


def test_ece_uses_one_bin_below_three_examples() -> None:
    # The reference sweeps b = 2 … N − 1, so N = 2 is a single bin: |0.5 − 0.5| = 0.
    assert ece_sweep_em([0.2, 0.8], [0, 1]) == pytest.approx(0.0, abs=1e-15)
    assert ece_sweep_em([0.3], [1]) == pytest.approx(0.7)


def test_ece_reproduces_the_reference_float_bin_edges() -> None:
    # N = 44, b = 22: (30 / 44) · 22 evaluates to 14.999…, so the reference puts rank 30 in
    # bin 14 (three members, {28, 29, 30}) and leaves bin 15 one ({31}); exact arithmetic
    # would split them {28, 29} {30, 31}. Labels 1 from rank 30 on, except rank 31: the
    # reference's binning sees the dip at b = 22 and keeps 21 bins, exact binning would go
    # on to 26 bins and report 0.26652.
    n = 44
    probs = np.linspace(0.01, 0.99, n)
    labels = (np.arange(n) >= 30).astype(np.int64)
    labels[31] = 0
    assert ece_sweep_em(probs, labels) == pytest.approx(0.2783720930, abs=1e-9)
    assert ece_sweep_em(probs, labels) == pytest.approx(
        _ece_sweep_em_by_loops(probs, labels, 1), abs=1e-12
    )


def test_ece_is_small_on_calibrated_and_large_on_miscalibrated_data() -> None:
    rng = np.random.default_rng(7)
    probs = rng.random(20_000)
    labels = (rng.random(20_000) < probs).astype(np.int64)
    assert ece_sweep_em(probs, labels) < 0.02
    assert ece_sweep_em(probs**2, labels) > 0.1  # E|p − p²| = 1/6
    assert ece_sweep_em(np.clip(probs + 0.2, 0.0, 1.0), labels) > 0.1
    # Fraud-shaped: rare positives, scores dense near 0.
    fraud = rng.beta(0.8, 9.0, 20_000)
    fraud_labels = (rng.random(20_000) < fraud).astype(np.int64)
    assert ece_sweep_em(fraud, fraud_labels) < 0.02
    assert ece_sweep_em(np.sqrt(fraud), fraud_labels) > 0.1


def test_ece_on_separated_labels_matches_the_full_sweep() -> None:
    rng = np.random.default_rng(3)
    probs = np.sort(rng.random(200))
    labels = (probs > 0.6).astype(np.int64)
    assert ece_sweep_em(probs, labels) == pytest.approx(
        _ece_sweep_em_by_loops(probs, labels, 1), abs=1e-12
    )


@given(scored_labels(), st.sampled_from([1, 2, 3]))
def test_ece_matches_the_loop_implementation(data: tuple[FloatArray, IntArray], p: int) -> None:
    probs, labels = data
    assert ece_sweep_em(probs, labels, p) == pytest.approx(
        _ece_sweep_em_by_loops(probs, labels, p), abs=1e-12
    )


@given(scored_labels())
def test_ece_is_a_bounded_norm_increasing_in_p(data: tuple[FloatArray, IntArray]) -> None:
    probs, labels = data
    e1, e2 = ece_sweep_em(probs, labels, 1), ece_sweep_em(probs, labels, 2)
    # Same bins for every p (the sweep looks at labels only), so the power-mean inequality holds.
    assert 0.0 <= e1 <= e2 + 1e-12 <= 1.0 + 1e-12


def test_ece_refuses_bad_norms() -> None:
    for p in (0, -1, True):
        with pytest.raises(ValueError, match="p must be an integer norm"):
            ece_sweep_em([0.5], [1], p=p)


# -- recall at fixed FPR ---------------------------------------------------------------------

_SCORES = [0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
_LABELS = [1, 1, 0, 1, 0, 1, 0, 0]


@pytest.mark.parametrize(
    ("fpr", "recall"),
    [
        # Thresholds (TP, FP) with 4 positives and 4 negatives: 0.9 (1, 0), 0.8 (2, 1),
        # 0.7 (3, 1), 0.6 (3, 2), 0.5 (4, 2), 0.4 (4, 3), 0.3 (4, 4).
        (0.0, 0.25),  # not 0.5: the tie at 0.8 takes its negative along with its positive
        (0.2, 0.25),
        (0.25, 0.75),
        (0.49, 0.75),
        (0.5, 1.0),
        (1.0, 1.0),
    ],
)
def test_recall_at_fpr_worked_example(fpr: float, recall: float) -> None:
    assert recall_at_fpr(_SCORES, _LABELS, fpr) == recall


def test_recall_at_fpr_is_zero_when_no_threshold_fits() -> None:
    # The top score is a negative: any alert at all costs FPR 1/2.
    assert recall_at_fpr([0.9, 0.5, 0.1], [0, 1, 0], 0.4) == 0.0


def _recall_at_fpr_brute_force(s: FloatArray, y: IntArray, fpr: float) -> float:
    pos, neg = int(y.sum()), int((1 - y).sum())
    best = 0.0
    for t in [*np.unique(s).tolist(), math.inf]:
        alert = s >= t
        if int((alert & (y == 0)).sum()) / neg <= fpr:
            best = max(best, int((alert & (y == 1)).sum()) / pos)
    return best


@given(scored_labels(both=True), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_recall_at_fpr_is_the_brute_force_maximum_and_monotone(
    data: tuple[FloatArray, IntArray], f1: float, f2: float
) -> None:
    s, y = data
    lo, hi = sorted((f1, f2))
    r_lo, r_hi = recall_at_fpr(s, y, lo), recall_at_fpr(s, y, hi)
    assert r_lo == pytest.approx(_recall_at_fpr_brute_force(s, y, lo), abs=1e-15)
    assert r_hi == pytest.approx(_recall_at_fpr_brute_force(s, y, hi), abs=1e-15)
    assert r_lo <= r_hi
    assert recall_at_fpr(s, y, 1.0) == 1.0


def test_recall_at_fpr_ranks_any_finite_scores() -> None:
    # Raw margins work: only the order matters.
    assert recall_at_fpr([-3.0, 2.5, 10.0, 0.0], [0, 1, 1, 0], 0.0) == 1.0


@pytest.mark.parametrize(
    ("labels", "fpr", "match"),
    [
        ([0, 0, 0], 0.1, "at least one positive"),
        ([1, 1, 1], 0.1, "at least one negative"),
        ([1, 0, 1], 1.5, "fpr must be"),
        ([1, 0, 1], -0.1, "fpr must be"),
        ([1, 0, 1], math.nan, "fpr must be"),
    ],
)
def test_recall_at_fpr_refuses_undefined_cases(labels: list[int], fpr: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        recall_at_fpr([0.2, 0.5, 0.9], labels, fpr)


# -- average precision -----------------------------------------------------------------------


def test_pr_auc_worked_example() -> None:
    # Recall steps of ¼ at thresholds 0.9, 0.8, 0.7, 0.5 with precision 1, 2/3, 3/4, 4/6:
    # ¼ · (1 + 2/3 + 3/4 + 2/3) = 37/48.
    assert pr_auc(_SCORES, _LABELS) == pytest.approx(37 / 48, abs=1e-15)
    assert pr_auc([0.1, 0.9], [0, 1]) == 1.0
    assert pr_auc([0.5, 0.5], [0, 1]) == 0.5  # one tied threshold: precision ½ at recall 1


@pytest.mark.parametrize("seed", range(5))
def test_pr_auc_equals_sklearn_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000
    y = (rng.random(n) < 0.05).astype(np.int64)
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0.0, 1.0)
    if seed % 2:
        s = np.round(s, 2)  # heavy ties, as tree ensembles emit
    assert pr_auc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@given(scored_labels(both=True))
def test_pr_auc_equals_sklearn(data: tuple[FloatArray, IntArray]) -> None:
    s, y = data
    assert pr_auc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_pr_auc_needs_a_positive() -> None:
    with pytest.raises(ValueError, match="at least one positive"):
        pr_auc([0.1, 0.2], [0, 0])


# -- input validation, shared by every metric ------------------------------------------------


@pytest.mark.parametrize("metric", [brier_score, ece_sweep_em])
@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        ([0.1, 0.2], [0, 1, 1], "labels must have the same shape"),
        ([0.1, math.nan], [0, 1], "probs must be finite"),
        ([0.1, 1.2], [0, 1], r"probs must lie in \[0, 1\]"),
        ([0.1, -0.1], [0, 1], r"probs must lie in \[0, 1\]"),
        ([0.1, 0.2], [0, 2], "labels must be 0 or 1"),
        ([0.1, 0.2], [0, 0.5], "labels must be 0 or 1"),
        ([0.1, 0.2], [0, math.nan], "labels must be 0 or 1"),
        ([0.1, 0.2], ["0", "1"], "labels must be 0/1"),
        ([], [], "must not be empty"),
    ],
)
def test_probability_metrics_validate_inputs(
    metric: object, probs: list[float], labels: list[object], match: str
) -> None:
    assert callable(metric)
    with pytest.raises(ValueError, match=match):
        metric(probs, labels)


@pytest.mark.parametrize("metric", [pr_auc, recall_at_fpr])
@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2], [1], "labels must have the same shape"),
        ([0.1, math.inf], [0, 1], "scores must be finite"),
        ([0.1, 0.2], [-1, 1], "labels must be 0 or 1"),
        ([], [], "must not be empty"),
    ],
)
def test_ranking_metrics_validate_inputs(
    metric: object, scores: list[float], labels: list[int], match: str
) -> None:
    args = (scores, labels) if metric is pr_auc else (scores, labels, 0.1)
    assert callable(metric)
    with pytest.raises(ValueError, match=match):
        metric(*args)


def test_labels_may_be_bool_int_or_float() -> None:
    probs = [0.2, 0.7, 0.9]
    expected = brier_score(probs, [0, 1, 1])
    assert brier_score(probs, np.array([False, True, True])) == expected
    assert brier_score(probs, np.array([0.0, 1.0, 1.0])) == expected
