"""Fitting a tenant map: the Eq. 5 guard, the held-out split, what the artifact records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muse.artifacts import QuantileArtifact, reference_digest
from muse.fitting import required_samples
from muse.fitting.quantiles import (
    InsufficientSamplesError,
    TenantFit,
    fit_tenant_map,
    split_holdout,
)
from muse.transforms import Reference

REF = Reference.beta(0.8, 9.0)


def fit(
    raw: np.ndarray,
    *,
    fingerprint: str = "fp",
    version: int = 1,
    window: dict[str, str] | None = None,
    alert_rate: float = 0.005,
    rel_error: float = 0.2,
    holdout: float = 0.2,
    force: bool = False,
) -> TenantFit:
    """``fit_tenant_map`` for predictor p1, tenant bank1, reference fraud-v1."""
    return fit_tenant_map(
        raw,
        REF,
        reference_name="fraud-v1",
        fingerprint=fingerprint,
        predictor="p1",
        tenant="bank1",
        version=version,
        window=window,
        alert_rate=alert_rate,
        rel_error=rel_error,
        holdout=holdout,
        force=force,
    )


def test_refuses_fewer_events_than_eq5_naming_both_counts() -> None:
    raw = np.random.default_rng(0).beta(2, 30, 10_000)
    with pytest.raises(InsufficientSamplesError) as info:
        fit(
            raw,
            alert_rate=0.01,
            rel_error=0.1,
            holdout=0.0,
        )
    assert info.value.n == 10_000
    assert info.value.required == 38_032
    assert "10,000" in str(info.value)
    assert "38,032" in str(info.value)


def test_the_guard_counts_only_the_part_that_is_fitted() -> None:
    need = required_samples(0.01, 0.2)
    raw = np.random.default_rng(1).beta(2, 30, need)  # enough in total, not after holdout
    with pytest.raises(InsufficientSamplesError) as info:
        fit(
            raw,
            alert_rate=0.01,
            rel_error=0.2,
            holdout=0.2,
        )
    assert info.value.n == need - round(need * 0.2)


def test_force_fits_a_small_sample() -> None:
    raw = np.random.default_rng(2).beta(2, 30, 500)
    result = fit(
        raw,
        force=True,
    )
    assert result.n_fit == 400
    assert result.n_holdout == 100
    assert result.artifact.quantile_map.n_samples == 400


def test_artifact_records_what_it_was_fitted_for() -> None:
    raw = np.random.default_rng(3).beta(2, 30, 60_000)
    result = fit(
        raw,
        fingerprint="fp-abc",
        version=3,
        window={"since": "2026-11-01T00:00:00+00:00", "until": "2026-11-08T00:00:00+00:00"},
    )
    art = result.artifact
    assert (art.fingerprint, art.predictor, art.tenant, art.version) == ("fp-abc", "p1", "bank1", 3)
    assert art.reference == "fraud-v1"
    assert art.reference_digest == reference_digest(REF)
    assert art.window == {
        "since": "2026-11-01T00:00:00+00:00",
        "until": "2026-11-08T00:00:00+00:00",
    }
    assert art.created_at  # stamped
    doc = art.to_dict()
    for key in ("source", "target", "levels", "n_samples"):
        assert key in doc["map"]
    assert QuantileArtifact.from_dict(doc).quantile_map == art.quantile_map


def test_holdout_scores_follow_the_reference_when_traffic_is_stable() -> None:
    raw = np.random.default_rng(4).beta(2, 30, 200_000)
    result = fit(
        raw,
    )
    held = result.holdout_scores
    assert held.size == 40_000
    for alert_rate in (0.1, 0.01):
        threshold = float(REF.ppf(np.array([1 - alert_rate]))[0])
        observed = float(np.mean(held > threshold))
        assert observed == pytest.approx(alert_rate, rel=0.2)


def test_holdout_reveals_drift_at_the_end_of_the_window() -> None:
    rng = np.random.default_rng(5)
    raw = np.concatenate([rng.beta(2, 30, 160_000), rng.beta(2, 15, 40_000)])  # scores rise
    result = fit(
        raw,
    )
    threshold = float(REF.ppf(np.array([0.99]))[0])
    assert float(np.mean(result.holdout_scores > threshold)) > 0.03  # 1 % expected


@given(st.integers(0, 500), st.floats(0.0, 0.9))
def test_split_keeps_order_and_every_event(n: int, holdout: float) -> None:
    x = np.arange(n, dtype=np.float64)
    fit_part, held = split_holdout(x, holdout)
    assert np.array_equal(np.concatenate([fit_part, held]), x)
    assert held.size == round(n * holdout)


@pytest.mark.parametrize("holdout", [-0.1, 1.0, 2.0])
def test_split_rejects_bad_fractions(holdout: float) -> None:
    with pytest.raises(ValueError, match="holdout"):
        split_holdout(np.zeros(10), holdout)
