"""T^C, A, T^Q and R (paper §2.3): worked examples and properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muse.transforms import (
    QuantileMap,
    Reference,
    default_levels,
    posterior_correction,
    weighted_mean,
)
from tests.strategies import betas, expert_matrices, samples, score_arrays, unit, weights

REF = Reference.beta(0.8, 9.0)

# -- posterior correction (Eq. 3) ---------------------------------------------------------


def test_posterior_correction_worked_example() -> None:
    # β = 0.1, ỹ = 0.5: 0.05 / (1 − 0.9·0.5) = 0.05 / 0.55
    out = posterior_correction([0.0, 0.5, 1.0], 0.1)
    assert out.tolist() == pytest.approx([0.0, 0.05 / 0.55, 1.0], abs=1e-15)


@given(score_arrays())
def test_posterior_correction_is_identity_at_beta_one(s: np.ndarray) -> None:
    assert np.array_equal(posterior_correction(s, 1.0), s)


@given(score_arrays(), betas)
def test_posterior_correction_is_monotone_and_bounded(s: np.ndarray, beta: float) -> None:
    order = np.argsort(s, kind="stable")
    out = posterior_correction(s, beta)
    assert (np.diff(out[order]) >= 0).all()
    assert ((out >= 0) & (out <= 1)).all()
    assert (out <= s + 1e-15).all()  # undersampling inflates scores; correction lowers them


@given(score_arrays(), betas)
def test_posterior_correction_scalar_equals_vectorised(s: np.ndarray, beta: float) -> None:
    batch = posterior_correction(s, beta)
    one_by_one = np.array([posterior_correction(float(x), beta) for x in s])
    assert np.array_equal(batch, one_by_one)


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_scalars_give_0d_results(beta: float) -> None:
    out = posterior_correction(0.5, beta)
    assert out.shape == ()
    assert float(out) == pytest.approx(0.5 * beta / (1 - (1 - beta) * 0.5))
    qm = QuantileMap.fit(np.linspace(0, 1, 101), Reference.from_quantiles([0.0, 1.0], [0.0, 1.0]))
    assert qm(0.25).shape == ()
    assert float(qm(np.float64(0.25))) == pytest.approx(0.25)


def test_weights_near_float_max_are_normalised_without_overflow() -> None:
    assert weighted_mean([[0.2, 0.8]], [1e308, 1e308]).tolist() == pytest.approx([0.5])


@pytest.mark.parametrize(
    ("scores", "beta", "message"),
    [
        ([0.5, float("nan")], 0.5, "finite"),
        ([0.5, float("inf")], 0.5, "finite"),
        ([1.2], 0.5, r"\[0, 1\]"),
        ([-0.1], 0.5, r"\[0, 1\]"),
        ([0.5], 0.0, r"beta"),
        ([0.5], 1.5, r"beta"),
        ([0.5], float("nan"), r"beta"),
        ([0.5], None, r"beta"),
        ([0.5], "0.5", r"beta"),
        ([0.5], True, r"beta"),
    ],
)
def test_posterior_correction_rejects_bad_input(
    scores: list[float], beta: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        posterior_correction(scores, beta)


def test_posterior_correction_inverts_undersampling() -> None:
    # A perfectly calibrated model on undersampled data scores p' = p / (p + β(1 − p));
    # Eq. 3 must recover p exactly (Dal Pozzolo et al. 2015).
    p = np.linspace(0.0, 1.0, 101)
    beta = 0.02
    p_under = p / (p + beta * (1 - p))
    assert np.allclose(posterior_correction(p_under, beta), p, atol=1e-12)


# -- weighted mean ------------------------------------------------------------------------


@given(expert_matrices(), st.data())
def test_weighted_mean_lies_within_row_min_max(s: np.ndarray, data: st.DataObject) -> None:
    w = data.draw(st.lists(weights, min_size=s.shape[1], max_size=s.shape[1]))
    out = weighted_mean(s, w)
    assert out.shape == (s.shape[0],)
    assert (out >= s.min(axis=1)).all()
    assert (out <= s.max(axis=1)).all()


@given(expert_matrices(), st.data())
def test_weighted_mean_only_weight_ratios_matter(s: np.ndarray, data: st.DataObject) -> None:
    w = np.array(data.draw(st.lists(weights, min_size=s.shape[1], max_size=s.shape[1])))
    assert np.allclose(weighted_mean(s, w), weighted_mean(s, w * 7.0), atol=1e-12)


def test_weighted_mean_worked_example() -> None:
    s = np.array([[0.1, 0.3], [0.5, 0.5]])
    assert weighted_mean(s, [1, 3]).tolist() == pytest.approx([0.25, 0.5])
    assert weighted_mean(s[:, :1], [2.0]).tolist() == [0.1, 0.5]


@pytest.mark.parametrize(
    ("w", "message"),
    [
        ([1, 0], "> 0"),
        ([1, -1], "> 0"),
        ([1, float("nan")], "finite"),
        ([1], "one weight per expert"),
    ],
)
def test_weighted_mean_rejects_bad_weights(w: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        weighted_mean(np.full((3, 2), 0.5), w)


def test_weighted_mean_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="n_events, n_experts"):
        weighted_mean([0.1, 0.2], [1.0])


# -- reference ----------------------------------------------------------------------------


def test_beta_reference_matches_scipy() -> None:
    from scipy import stats

    levels = np.array([0.0, 0.1, 0.5, 0.99, 0.999, 1.0])
    assert np.allclose(REF.ppf(levels), stats.beta(0.8, 9.0).ppf(levels))
    xs = np.array([0.0, 0.05, 0.3, 1.0])
    assert np.allclose(REF.cdf(xs), stats.beta(0.8, 9.0).cdf(xs))


# Scores on a 1e-9 grid: inverting a piecewise-linear table between knots a few subnormal
# ulps apart is beyond float resolution, and no score distribution lives at that scale.
@given(st.lists(unit.map(lambda v: round(v, 9)), min_size=2, max_size=100))
def test_sample_reference_ppf_is_numpy_quantile_and_cdf_inverts_it(xs: list[float]) -> None:
    ref = Reference.from_samples(xs)
    levels = np.linspace(0, 1, 37)
    assert np.allclose(ref.ppf(levels), np.quantile(xs, levels), atol=1e-12)
    # cdf(ppf(p)) >= p (right-continuous) and ppf(cdf(x)) == x where x is a sample value
    assert (ref.cdf(ref.ppf(levels)) >= levels - 1e-9).all()
    arr = np.array(xs)
    assert np.allclose(ref.ppf(ref.cdf(arr)), arr, atol=1e-9)


def test_quantile_reference_extends_tails_and_round_trips() -> None:
    ref = Reference.from_quantiles([0.5, 0.99], [0.1, 0.6])
    assert ref.ppf([0.0, 0.25, 0.5, 0.99, 1.0]).tolist() == pytest.approx(
        [0.0, 0.05, 0.1, 0.6, 1.0]
    )
    assert ref.cdf([0.1, 0.6]).tolist() == pytest.approx([0.5, 0.99])
    again = Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert again == ref
    assert Reference.from_dict(REF.to_dict()) == REF


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Reference.beta(0, 1), "a must be finite and > 0"),
        (lambda: Reference.beta(1, float("inf")), "b must be finite"),
        (lambda: Reference.from_samples([0.5]), "at least 2"),
        (lambda: Reference.from_samples([0.5, 1.5]), r"\[0, 1\]"),
        (lambda: Reference.from_quantiles([0.5, 0.4], [0.1, 0.2]), "strictly increasing"),
        (lambda: Reference.from_quantiles([0.4, 0.5], [0.3, 0.2]), "non-decreasing"),
        (lambda: Reference.from_quantiles([0.4], [0.3, 0.2]), "equal length"),
    ],
)
def test_reference_rejects_bad_parameters(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# -- quantile map (Eq. 4) -----------------------------------------------------------------


def test_quantile_map_worked_example_follows_eq4() -> None:
    # Source uniform on [0, 1] → reference uniform on [0, 0.5]: T^Q(y) = y / 2 between knots.
    ref = Reference.from_quantiles([0.0, 1.0], [0.0, 0.5])
    qm = QuantileMap.fit(np.linspace(0, 1, 10_001), ref, levels=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert qm.source.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert qm.target.tolist() == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert qm([0.1, 0.3, 0.8]).tolist() == pytest.approx([0.05, 0.15, 0.4])


def test_quantile_map_clamps_outside_its_knots() -> None:
    qm = QuantileMap.fit(np.linspace(0.2, 0.6, 1000), REF)
    out = qm([0.0, 0.1, 0.2, 0.6, 0.9, 1.0])
    assert out[0] == out[1] == out[2] == qm.target[0]
    assert out[3] == out[4] == out[5] == qm.target[-1]


@given(samples, score_arrays())
def test_quantile_map_is_monotone_and_maps_into_unit_interval(
    x: np.ndarray, probe: np.ndarray
) -> None:
    qm = QuantileMap.fit(x, REF, n_quantiles=50)
    xs = np.sort(np.concatenate([probe, x, qm.source, np.nextafter(qm.source, -1.0)]))
    ys = qm(xs)
    assert (np.diff(ys) >= 0).all()
    assert ((ys >= 0) & (ys <= 1)).all()
    assert (np.diff(qm.source) > 0).all()  # a function: tied knots were merged


@given(samples, score_arrays())
def test_quantile_map_scalar_path_equals_vectorised(x: np.ndarray, probe: np.ndarray) -> None:
    qm = QuantileMap.fit(x, REF, n_quantiles=50)
    probe = np.concatenate([probe, qm.source])
    batch = qm(probe)
    assert [qm.map_one(float(v)) for v in probe] == batch.tolist()


@given(samples)
def test_quantile_map_round_trips_through_json_exactly(x: np.ndarray) -> None:
    qm = QuantileMap.fit(x, REF, n_quantiles=40)
    again = QuantileMap.from_dict(json.loads(json.dumps(qm.to_dict())))
    assert again == qm
    probe = np.linspace(-0.1, 1.1, 97)
    assert np.array_equal(again(probe), qm(probe))


def test_tied_value_maps_to_reference_quantile_at_middle_of_its_span() -> None:
    # 60 % of events score exactly 0.1 (ranks 20..79 of 100), the rest are distinct.
    x = np.concatenate([np.linspace(0.0, 0.09, 20), np.full(60, 0.1), np.linspace(0.2, 0.9, 20)])
    qm = QuantileMap.fit(x, REF)
    assert np.count_nonzero(qm.source == 0.1) == 1
    # sorted positions 20..79 of 100 → level span [20/99, 79/99], middle 49.5/99 = 0.5
    assert qm(np.array([0.1]))[0] == pytest.approx(REF.ppf([0.5])[0], rel=1e-12)


def test_constant_sample_maps_everything_to_the_reference_median() -> None:
    qm = QuantileMap.fit(np.full(1000, 0.3), REF)
    assert qm.source.tolist() == [0.3]
    assert qm([0.0, 0.3, 1.0]).tolist() == pytest.approx([REF.ppf([0.5])[0]] * 3)


def test_fitted_map_reproduces_reference_alert_rates() -> None:
    rng = np.random.default_rng(7)
    raw = rng.beta(2.0, 40.0, 400_000)
    qm = QuantileMap.fit(raw[:200_000], REF)
    mapped = qm(raw[200_000:])
    for alert_rate in (0.02, 0.01, 0.005, 0.001, 0.0005):
        threshold = REF.ppf([1 - alert_rate])[0]
        observed = (mapped > threshold).mean()
        # 200k test events: binomial relative sd at 0.05 % is 10 %; allow 4 sd
        sd = math.sqrt(alert_rate * (1 - alert_rate) / 200_000) / alert_rate
        assert abs(observed / alert_rate - 1) < 4 * sd + 0.02


def test_default_grid_resolves_the_tail_where_a_uniform_grid_does_not() -> None:
    levels = default_levels(1000)
    assert levels[0] == 0.0
    assert levels[-1] == 1.0
    assert (np.diff(levels) > 0).all()
    tail = (levels >= 1 - 0.02) & (levels <= 1 - 0.0005)
    uniform = np.linspace(0, 1, 1000)
    uniform_tail = (uniform >= 1 - 0.02) & (uniform <= 1 - 0.0005)
    assert tail.sum() >= 150
    assert uniform_tail.sum() <= 20
    # Consequence: fitted on a noiseless "sample" (the raw distribution's exact quantiles at
    # 2M mid-points) and measured against the true distribution, the only error left is the
    # grid's interpolation: the default grid keeps alert rates of 0.05 %–2 % within 1 %; a
    # uniform grid interpolates linearly from the 99.9th percentile to the maximum.
    from scipy import stats

    raw_dist = stats.beta(1.0, 60.0)
    n = 2_000_000
    fit = raw_dist.ppf((np.arange(n) + 0.5) / n)

    def true_alert_rate(qm: QuantileMap, alert_rate: float) -> float:
        t = REF.ppf([1 - alert_rate])[0]
        x_t = np.interp(t, qm.target, qm.source)  # raw score that maps to the threshold
        return float(raw_dist.sf(x_t))

    dense = QuantileMap.fit(fit, REF)
    coarse = QuantileMap.fit(fit, REF, levels=uniform)
    for a in (0.02, 0.01, 0.005, 0.001, 0.0005):
        assert abs(true_alert_rate(dense, a) / a - 1) < 0.01, a
    assert abs(true_alert_rate(coarse, 0.0005) / 0.0005 - 1) > 0.1


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "other"}, "format"),
        (
            {"format": "muse/quantile-map@1", "n_samples": 3, "levels": [0.5], "source": [0.1]},
            "missing key 'target'",
        ),
        (
            {
                "format": "muse/quantile-map@1",
                "n_samples": 3,
                "levels": [0.1, 0.2],
                "source": [0.2, 0.1],
                "target": [0.1, 0.2],
            },
            "strictly increasing",
        ),
        (
            {
                "format": "muse/quantile-map@1",
                "n_samples": 3,
                "levels": [0.1, 0.2],
                "source": [0.1, 0.2],
                "target": [0.3, 0.2],
            },
            "non-decreasing",
        ),
        (
            {
                "format": "muse/quantile-map@1",
                "n_samples": 3,
                "levels": [0.1, 0.2],
                "source": [0.1, 0.2],
                "target": [0.1, 1.2],
            },
            r"\[0, 1\]",
        ),
    ],
)
def test_quantile_map_from_dict_rejects_broken_documents(
    doc: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        QuantileMap.from_dict(doc)


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")]])
def test_quantile_map_fit_rejects_bad_samples(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"empty|finite"):
        QuantileMap.fit(bad, REF)


def test_quantile_map_call_rejects_non_finite() -> None:
    qm = QuantileMap.fit(np.linspace(0, 1, 100), REF)
    with pytest.raises(ValueError, match="finite"):
        qm([0.1, float("inf")])


@given(samples, st.integers(0, 2**32 - 1))
def test_bucket_index_of_large_batches_equals_the_binary_search(x: np.ndarray, seed: int) -> None:
    # Batches of >= 512 scores locate knots through a bucket index; it must agree exactly
    # with the scalar path's bisection, including at knots and one ulp either side of them.
    qm = QuantileMap.fit(x, REF, n_quantiles=60)
    rng = np.random.default_rng(seed)
    probe = np.concatenate(
        [
            rng.uniform(-0.1, 1.1, 600),
            qm.source,
            np.nextafter(qm.source, -1.0),
            np.nextafter(qm.source, 2.0),
        ]
    )
    assert probe.size >= 512
    batch = qm(probe)
    assert batch.tolist() == [qm.map_one(float(v)) for v in probe]
    order = np.argsort(probe, kind="stable")
    assert (np.diff(batch[order]) >= 0).all()


def test_bucket_index_on_a_realistic_map_matches_the_binary_search() -> None:
    from muse.transforms.quantile import _BucketIndex

    rng = np.random.default_rng(5)
    qm = QuantileMap.fit(rng.beta(2.0, 30.0, 200_000), REF)
    index = _BucketIndex.build(qm.source)
    assert index is not None
    x = np.clip(rng.beta(2.0, 30.0, 100_000), qm.source[0], qm.source[-1])
    assert np.array_equal(index.locate(x), np.searchsorted(qm.source, x, side="right") - 1)
