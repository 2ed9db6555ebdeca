"""The automated refresh's two judgements, on generated tenants: the drift monitor's verdict
(aligned / drifting / too few events, with its figures) and the refit policy
(``muse.fitting.refresh_map``) that picks, per tenant, what to fit the next map on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.fitting import (
    Candidate,
    InsufficientSamplesError,
    choose_refresh,
    drift_verdict,
    judge_alert_counts,
    level_threshold,
    refresh_map,
    required_samples,
)
from muse.fitting.local_level import GRID, PERSISTENCE, _filter, _forecast_weights, fit_local_level
from muse.fitting.refresh import CANDIDATES, METHODS, alert_rate_error, effective_size
from muse.transforms import QuantileMap, Reference

R = Reference.beta(0.8, 9.0)


def from_reference(n: int, seed: int) -> np.ndarray:
    """Final scores that follow R exactly in distribution."""
    return R.ppf(np.random.default_rng(seed).random(n))


def tenant_period(n: int, fraud_rate: float, seed: int, shift: float = 0.0) -> np.ndarray:
    """One period of a tenant's raw aggregates: legitimate events ~ Beta(2, 20) (+ shift),
    frauds ~ Beta(6, 4)."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < fraud_rate
    raw = np.where(fraud, rng.beta(6, 4, n), rng.beta(2, 20, n))
    return np.asarray(np.clip(raw + shift * ~fraud, 0.0, 1.0), dtype=np.float64)


# -- the drift monitor ------------------------------------------------------------------------


def test_scores_that_follow_r_are_aligned() -> None:
    verdict = drift_verdict(from_reference(200_000, 1), R)
    assert verdict.verdict == "aligned"
    assert all(c.judged for c in verdict.levels if c.level >= 0.005)
    assert not any(c.drifting for c in verdict.levels)
    assert verdict.ks < 0.01
    assert verdict.reason.startswith("aligned at 5.00%")


def test_a_doubled_alert_rate_is_drifting_with_its_figures() -> None:
    """Scores pushed up so that twice the promised share crosses each threshold."""
    u = np.random.default_rng(2).random(100_000)
    drifted = R.ppf((1.0 + u) / 2.0)  # P(F_R(score) > 1 - a) = 2a at every level a < 1/2
    verdict = drift_verdict(drifted, R, levels=[0.01])
    (check,) = verdict.levels
    assert verdict.verdict == "drifting"
    assert check.judged
    assert check.drifting
    assert check.relative_error == pytest.approx(1.0, abs=0.15)
    assert check.low > 0.01
    assert check.threshold == pytest.approx(float(R.ppf([0.99])[0]))
    assert "drifting at 1.00%" in verdict.reason


def test_a_small_deviation_within_tolerance_is_not_drift() -> None:
    """12 % more alerts than promised: real, but within the 20 % that matters."""
    scores = from_reference(400_000, 3)
    t = float(R.ppf([0.99])[0])
    extra = np.flatnonzero(scores < t)[:480]  # +0.12 % of events, +12 % at the 1 % level
    scores[extra] = t + 1e-6
    verdict = drift_verdict(scores, R, levels=[0.01])
    assert verdict.levels[0].relative_error == pytest.approx(0.12, abs=0.03)
    assert verdict.verdict == "aligned"


def test_too_few_events_are_not_judged_and_the_verdict_says_why() -> None:
    scores = np.full(500, 0.99)  # every event alerts, but 500 events prove little at 1 %
    verdict = drift_verdict(scores, R, levels=[0.01, 0.005])
    assert verdict.verdict == "too_few_events"
    assert not any(c.judged for c in verdict.levels)
    assert f"needs {required_samples(0.01, 0.2):,}" in verdict.reason
    assert drift_verdict([], R).verdict == "too_few_events"


@pytest.mark.parametrize(
    ("levels", "message"), [([], "levels is empty"), ([0.0], "lie in \\(0, 1\\)")]
)
def test_bad_levels_are_refused(levels: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drift_verdict([0.1], R, levels=levels)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2_000), st.integers(0, 10_000))
def test_the_verdict_counts_alerts_exactly(n: int, seed: int) -> None:
    scores = from_reference(n, seed)
    for c in drift_verdict(scores, R, levels=[0.05, 0.01]).levels:
        assert c.alerts == int(np.sum(scores > c.threshold))
        assert c.low <= c.observed <= c.high


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3_000), st.integers(0, 10_000), st.floats(0.5, 2.0))
def test_judging_counts_is_judging_the_sample_they_came_from(
    n: int, seed: int, stretch: float
) -> None:
    """The console judges counts from lake histograms; it must agree with the sample path."""
    scores = R.ppf(np.random.default_rng(seed).random(n) ** stretch)
    levels = [0.05, 0.01, 0.005]
    direct = drift_verdict(scores, R, levels=levels)
    alerts = {a: int(np.sum(scores > level_threshold(R, a))) for a in levels}
    assert judge_alert_counts(n, alerts, R, ks=direct.ks) == direct


def test_judging_counts_worked_example() -> None:
    """4,000 events, 80 above the 1 % threshold: 2 %, Wilson [1.61 %, 2.48 %] excludes 1 %,
    and Eq. 5 asks 9,508 events for 1 % at ±20 %: not judged, so too few events."""
    verdict = judge_alert_counts(4_000, {0.01: 80}, R, ks=0.1)
    (check,) = verdict.levels
    assert (check.observed, check.judged, verdict.verdict) == (0.02, False, "too_few_events")
    assert check.low == pytest.approx(0.01613, abs=1e-4)
    assert check.high == pytest.approx(0.02479, abs=1e-4)
    assert check.required == required_samples(0.01, 0.2)
    judged = judge_alert_counts(40_000, {0.01: 800}, R, ks=0.1)
    assert judged.verdict == "drifting"


@pytest.mark.parametrize(
    ("n", "alerts", "message"),
    [(10, {0.01: 11}, "alert counts must lie in"), (10, {0.01: -1}, "alert counts must lie in"),
     (10, {}, "levels is empty"), (10, {1.5: 1}, "lie in \\(0, 1\\)")],
)  # fmt: skip
def test_bad_counts_are_refused(n: int, alerts: dict[float, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        judge_alert_counts(n, alerts, R, ks=0.0)


# -- the refit policy -------------------------------------------------------------------------


def test_a_strongly_drifting_tenant_is_refitted_on_its_latest_period() -> None:
    """Legitimate scores creep up every period: old periods mislead, the last one is best."""
    windows = [tenant_period(40_000, 0.01, seed=i, shift=0.04 * i) for i in range(6)]
    nxt = tenant_period(40_000, 0.01, seed=99, shift=0.04 * 6)
    pooled = QuantileMap.fit(np.concatenate(windows), R)
    for method in METHODS:
        choice = choose_refresh(windows, R, method=method)
        assert choice.period_weights[-1] > 0.5, method
        chosen_error = alert_rate_error(choice.quantile_map, nxt, R, [0.05, 0.01])
        assert chosen_error < alert_rate_error(pooled, nxt, R, [0.05, 0.01]) / 2, method
    local = choose_refresh(windows, R)
    assert local.model is not None
    assert local.model.drift > 0
    assert local.model.persistence == 1
    assert local.policy.startswith("local-level ")
    assert local.policy.endswith("/6")
    assert choose_refresh(windows, R, method="backtest").candidate in {CANDIDATES[0], CANDIDATES[4]}


def test_a_stable_tenant_with_small_periods_pools_its_history() -> None:
    """Small periods whose fraud rate swings around a steady mean: the last period alone
    is always off the next one in the other direction; pooled periods are not."""
    rates = [0.005, 0.03] * 4
    windows = [tenant_period(6_000, r, seed=i) for i, r in enumerate(rates)]
    following = [tenant_period(6_000, r, seed=8 + i) for i, r in enumerate(rates[:2])]
    last = QuantileMap.fit(windows[-1], R)

    def error(m: QuantileMap) -> float:  # over the next two periods, one of each rate
        return sum(alert_rate_error(m, x, R, [0.05, 0.01], min_alerts=5) for x in following)

    local = choose_refresh(windows, R, alert_rate=0.05, min_alerts=5)
    assert local.model is not None
    assert local.model.persistence < 1.0  # the swings come back
    assert 1.0 / float(np.sum(local.period_weights**2)) > 5.0  # worth > 5 of the 8 periods
    assert error(local.quantile_map) < error(last) * 0.75
    backtest = choose_refresh(windows, R, alert_rate=0.05, min_alerts=5, method="backtest")
    assert backtest.candidate is not None
    assert backtest.candidate.name not in {"last-1", "decay-1"}
    assert backtest.backtest[backtest.candidate.name] < backtest.backtest["last-1"] / 2


def test_a_level_shift_is_followed_and_the_past_let_go() -> None:
    """Fraud rate steps from 1 % to 8 % half-way and stays: the model finds lasting drift
    and puts most weight after the step; pooling would serve the old regime. (Not all:
    a Gaussian model reads one jump partly as a swing that may come back.)"""
    windows = [tenant_period(20_000, 0.01 if i < 5 else 0.08, seed=i) for i in range(10)]
    choice = choose_refresh(windows, R)
    assert choice.model is not None
    assert choice.model.drift > 0
    assert choice.period_weights[5:].sum() > 0.8
    nxt = tenant_period(20_000, 0.08, seed=10)
    pooled = QuantileMap.fit(np.concatenate(windows), R)
    levels = [0.05, 0.01]
    ours = alert_rate_error(choice.quantile_map, nxt, R, levels)
    assert ours < alert_rate_error(pooled, nxt, R, levels) / 3


def test_no_drift_pools_every_event_alike() -> None:
    """Periods of one distribution, sizes differing: the model finds no drift, no swing,
    and weighs each period by its size — the pooled fit, exactly."""
    windows = [tenant_period(n, 0.01, seed=i) for i, n in enumerate([8_000, 20_000, 5_000, 12_000])]
    choice = choose_refresh(windows, R)
    assert choice.model is not None
    assert (choice.model.drift, choice.model.swing) == (0.0, 0.0)
    sizes = np.array([w.size for w in windows])
    np.testing.assert_allclose(choice.period_weights, sizes / sizes.sum(), rtol=1e-9)
    pooled = QuantileMap.fit(np.concatenate(windows), R)
    np.testing.assert_allclose(choice.quantile_map(windows[0]), pooled(windows[0]), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3_000), min_size=1, max_size=12),
    shifts=st.lists(st.floats(-0.05, 0.2), min_size=12, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_local_level_weights_are_a_forecast(
    sizes: list[int], shifts: list[float], seed: int
) -> None:
    """Whatever the history: the period weights are >= 0 and sum to 1, an empty period
    gets none, and the fitted model is one of the grid's."""
    if sum(sizes) == 0:
        sizes = [*sizes[:-1], 1]
    windows = [tenant_period(n, 0.02, seed=seed + i, shift=shifts[i]) for i, n in enumerate(sizes)]
    model = fit_local_level(windows, [0.05, 0.01])
    w = model.period_weights
    assert w.shape == (len(sizes),)
    assert np.all(w >= -1e-12)
    assert w.sum() == pytest.approx(1.0)
    assert all(w[i] == pytest.approx(0.0, abs=1e-12) for i, n in enumerate(sizes) if n == 0)
    assert model.drift in GRID
    assert model.swing in GRID
    assert model.persistence in PERSISTENCE


def test_filter_weights_worked_example() -> None:
    """Two periods of known noise 1 and 1/3 (sizes 1:3), no drift: the random walk's
    forecast is the inverse-variance mean, weights 1/4 and 3/4; with drift 1 and noise 1
    each, the second gain is (1 + 1) / (1 + 1 + 1) = 2/3."""
    y, v = np.array([0.0, 0.0]), np.array([1.0, 1.0 / 3.0])
    one = np.array([1.0])
    _, gains = _filter(y, v, np.array([0.0]), one, np.array([0.0]))
    np.testing.assert_allclose(
        _forecast_weights(gains[:, 0], 1.0, np.array([1.0, 3.0])), [0.25, 0.75]
    )
    _, gains = _filter(y, np.array([1.0, 1.0]), one, one, np.array([0.0]))
    np.testing.assert_allclose(gains[:, 0], [1.0, 2.0 / 3.0])
    # A level that reverts fully (φ = 0) forecasts the long-run mean: the pooled history.
    _, gains = _filter(y, v, one, np.array([0.0]), np.array([0.0]))
    np.testing.assert_allclose(
        _forecast_weights(gains[:, 0], 0.0, np.array([1.0, 3.0])), [0.25, 0.75]
    )


def test_drifting_tenant_short_of_events_gets_a_longer_memory_not_too_few() -> None:
    """Strong drift would put all weight on the last, small period; Eq. 5 asks for more
    events, so the model is refitted with less drift until its weights have them."""
    need = required_samples(0.05, 0.2)
    windows = [tenant_period(need // 3, 0.01, seed=i, shift=0.06 * i) for i in range(8)]
    choice = choose_refresh(windows, R)
    assert choice.effective_events >= need
    assert choice.period_weights[-1] < 0.9
    assert choice.period_weights[-1] == max(choice.period_weights)


def test_never_fits_on_fewer_events_than_eq5_asks() -> None:
    windows = [tenant_period(500, 0.01, seed=i) for i in range(3)]
    need = required_samples(0.05, 0.2)
    with pytest.raises(InsufficientSamplesError, match=f"requires {need:,}"):
        refresh_map(windows, R)
    default = QuantileMap.fit(tenant_period(50_000, 0.01, seed=7), R)
    assert refresh_map(windows, R, fallback=default) is default
    with pytest.raises(TypeError, match="fallback must be a QuantileMap"):
        refresh_map(windows, R, fallback="default")


def test_a_candidate_short_of_events_is_left_out_not_the_tenant() -> None:
    """The last period alone is too small; pooling two is enough: the policy pools."""
    need = required_samples(0.05, 0.2)
    windows = [tenant_period(need // 2 + 200, 0.01, seed=i) for i in range(2)]
    choice = choose_refresh(windows, R, method="backtest")
    assert choice.candidate is not None
    assert choice.candidate.name != "last-1"
    assert choice.effective_events >= need
    assert math.isnan(choice.backtest["last-1"])


def test_one_period_fits_on_it() -> None:
    window = tenant_period(20_000, 0.01, seed=5)
    m = refresh_map([window], R)
    assert m == QuantileMap.fit(window, R)


def test_decayed_candidates_weigh_by_age() -> None:
    windows = [np.full(3, 0.1), np.full(2, 0.2), np.full(1, 0.3)]
    scores, weights = Candidate("d", half_life=1.0).sample(windows)
    assert scores.tolist() == [0.1] * 3 + [0.2] * 2 + [0.3]
    assert weights is not None
    assert weights.tolist() == [0.25] * 3 + [0.5] * 2 + [1.0]
    assert effective_size(weights, 6) == pytest.approx(2.75**2 / (3 * 0.0625 + 2 * 0.25 + 1))
    assert Candidate("l", periods=2).sample(windows)[0].tolist() == [0.2, 0.2, 0.3]


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="windows is empty"):
        refresh_map([], R)
    with pytest.raises(ValueError, match="method must be one of local-level, backtest"):
        refresh_map([[0.1]], R, method="oracle")
    with pytest.raises(ValueError, match="levels must be alert rates"):
        refresh_map([[0.1]], R, levels=[0.05, 1.5])
    with pytest.raises(ValueError, match="windows\\[1\\]"):
        refresh_map([[0.1], [float("nan")]], R)
