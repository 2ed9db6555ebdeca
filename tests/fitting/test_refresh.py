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
    refresh_map,
    required_samples,
)
from muse.fitting.refresh import alert_rate_error, effective_size
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


# -- the refit policy -------------------------------------------------------------------------


def test_a_strongly_drifting_tenant_is_refitted_on_its_latest_period() -> None:
    """Legitimate scores creep up every period: old periods mislead, the last one is best."""
    windows = [tenant_period(40_000, 0.01, seed=i, shift=0.04 * i) for i in range(6)]
    choice = choose_refresh(windows, R)
    assert choice.candidate.name in {"last-1", "decay-1"}
    nxt = tenant_period(40_000, 0.01, seed=99, shift=0.04 * 6)
    pooled = QuantileMap.fit(np.concatenate(windows), R)
    chosen_error = alert_rate_error(choice.quantile_map, nxt, R, [0.05, 0.01])
    assert chosen_error < alert_rate_error(pooled, nxt, R, [0.05, 0.01]) / 2


def test_a_stable_tenant_with_small_periods_pools_its_history() -> None:
    """Small periods whose fraud rate swings around a steady mean: the last period alone
    is always off the next one in the other direction; pooled periods are not."""
    rates = [0.005, 0.03] * 4
    windows = [tenant_period(6_000, r, seed=i) for i, r in enumerate(rates)]
    choice = choose_refresh(windows, R, alert_rate=0.05, min_alerts=5)
    assert choice.candidate.name not in {"last-1", "decay-1"}
    assert choice.backtest[choice.candidate.name] < choice.backtest["last-1"] / 2


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
    choice = choose_refresh(windows, R)
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
    with pytest.raises(ValueError, match="windows\\[1\\]"):
        refresh_map([[0.1], [float("nan")]], R)
