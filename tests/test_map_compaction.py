"""Thinning a quantile map for serving (``QuantileMap.compact``): kept knots are original
knots, no knot's alert rate moves by more than the tolerance, the two mapping paths still
agree bit for bit, and a served config holds thinned maps while its artifacts stay whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.artifacts import read_artifact
from muse.config import load_config
from muse.transforms import QuantileMap, Reference
from tests.config_fixtures import Deployment as Quickstart

REFERENCE = Reference.beta(0.8, 9.0)


def _alert_at(m: QuantileMap, y: np.ndarray) -> np.ndarray:
    """The alert rate a final score ``y`` means, through ``m``'s own (target, level) pairs."""
    out: np.ndarray = 1.0 - np.interp(y, m.target, m.levels)
    return out


def test_collinear_knots_thin_to_the_two_ends() -> None:
    levels = np.linspace(0.0, 1.0, 101)
    m = QuantileMap(source=levels * 0.5, target=levels.copy(), levels=levels, n_samples=1000)
    thin = m.compact(0.001)
    assert thin.source.tolist() == [0.0, 0.5]
    assert thin.target.tolist() == [0.0, 1.0]
    x = np.linspace(-0.1, 0.6, 57)
    assert np.array_equal(thin(x), m(x))


def test_no_tolerance_is_the_map_itself_and_bad_tolerances_are_refused() -> None:
    m = QuantileMap.fit(np.random.default_rng(0).beta(2, 30, 5000), REFERENCE)
    assert m.compact(0.0) is m
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="tolerance"):
            m.compact(bad)


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.5, 5.0),
    b=st.floats(5.0, 60.0),
    n=st.integers(200, 20_000),
    decimals=st.sampled_from([None, 2, 3, 4]),
    tolerance=st.sampled_from([0.0005, 0.002, 0.01]),
    seed=st.integers(0, 2**16),
)
def test_kept_knots_are_original_and_no_alert_rate_moves_beyond_the_tolerance(
    a: float, b: float, n: int, decimals: int | None, tolerance: float, seed: int
) -> None:
    raw = np.random.default_rng(seed).beta(a, b, n)
    if decimals is not None:  # tree models: tied scores, merged knots
        raw = np.round(raw, decimals)
    m = QuantileMap.fit(raw, REFERENCE)
    thin = m.compact(tolerance)
    assert thin.n_samples == m.n_samples
    assert thin.source.size <= m.source.size
    kept = np.searchsorted(m.source, thin.source)
    assert np.array_equal(m.source[kept], thin.source)
    assert np.array_equal(m.target[kept], thin.target)
    assert np.array_equal(m.levels[kept], thin.levels)
    # At every original knot, the alert rate the thinned map gives is within the tolerance
    # of the one the full map gives (a few ulps of slack for the interpolations).
    full = _alert_at(m, m.target)
    served = _alert_at(m, thin(m.source))
    assert (np.abs(served - full) <= tolerance * full * (1 + 1e-9) + 1e-12).all()
    # Both mapping paths agree bit for bit on the thinned map too.
    x = np.concatenate((m.source, np.random.default_rng(seed + 1).uniform(-0.1, 1.1, 64)))
    vector = thin(x)
    assert [thin.map_one(float(v)) for v in x] == vector.tolist()


def test_the_default_grid_thins_several_fold_without_moving_tail_alert_rates() -> None:
    rng = np.random.default_rng(3)
    m = QuantileMap.fit(rng.beta(2, 30, 50_000), REFERENCE)
    thin = m.compact(0.002)
    assert thin.source.size < m.source.size / 3
    held = rng.beta(2, 30, 400_000)
    for alert in (0.01, 0.001):
        threshold = float(REFERENCE.ppf(np.array([1 - alert]))[0])
        full = float(np.mean(m(held) > threshold))
        served = float(np.mean(thin(held) > threshold))
        assert abs(served - full) <= 0.002 * full + 2 / held.size


def test_a_served_config_holds_thinned_maps_and_the_artifact_stays_whole(
    tmp_path: Path,
) -> None:
    q = Quickstart.copy_quickstart(tmp_path / "q")
    file = q.artifact("single-v1", "bank1")
    whole = read_artifact(file).quantile_map
    served = load_config(q.config).transforms["single-v1"].tenants["bank1"].quantile_map
    assert served.source.size < whole.source.size
    assert served == whole.compact(0.002)
    # The tools that fit maps load leniently and get them whole.
    lenient = load_config(q.config, require_transforms=False)
    assert lenient.transforms["single-v1"].tenants["bank1"].quantile_map == whole
    doc = q.doc()
    doc.setdefault("server", {})["map_tolerance"] = 0
    q.write(doc)
    assert load_config(q.config).transforms["single-v1"].tenants["bank1"].quantile_map == whole
