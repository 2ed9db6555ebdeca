"""Weighted quantile maps (``QuantileMap.fit(..., weights=...)``): a weight of k is the
event k times — exactly, bit for bit — and real weights interpolate between those."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muse.transforms import QuantileMap, Reference
from tests.strategies import samples, unit

R = Reference.beta(0.8, 9.0)


def same(a: QuantileMap, b: QuantileMap) -> bool:
    return (
        np.array_equal(a.source, b.source)
        and np.array_equal(a.target, b.target)
        and np.array_equal(a.levels, b.levels)
        and a.n_samples == b.n_samples
    )


@given(
    st.lists(st.tuples(unit, st.integers(0, 6)), min_size=1, max_size=120).filter(
        lambda pairs: any(w for _, w in pairs)
    ),
    st.integers(10, 300),
)
def test_an_integer_weight_is_the_event_repeated(
    pairs: list[tuple[float, int]], n_quantiles: int
) -> None:
    x = np.array([s for s, _ in pairs])
    w = np.array([k for _, k in pairs])
    weighted = QuantileMap.fit(x, R, n_quantiles, weights=w)
    repeated = QuantileMap.fit(np.repeat(x, w), R, n_quantiles)
    assert same(weighted, repeated)


@given(
    st.lists(st.sampled_from([0.1, 0.2, 0.25, 0.5, 0.7]), min_size=1, max_size=60),
    st.data(),
)
def test_ties_are_placed_as_in_the_repeated_sample(xs: list[float], data: st.DataObject) -> None:
    """Tree ensembles emit repeated scores: a tied value's knot sits at the middle of its
    span of the repeated sample, weighted or not."""
    w = np.array(data.draw(st.lists(st.integers(1, 9), min_size=len(xs), max_size=len(xs))))
    x = np.array(xs)
    assert same(QuantileMap.fit(x, R, 100, weights=w), QuantileMap.fit(np.repeat(x, w), R, 100))


@given(samples)
def test_unit_weights_change_nothing(x: list[float] | np.ndarray) -> None:
    x = np.asarray(x, dtype=np.float64)
    assert same(QuantileMap.fit(x, R, 200, weights=np.ones(x.size)), QuantileMap.fit(x, R, 200))


@given(samples, st.data())
def test_real_weights_give_a_monotone_map_between_their_floor_and_ceiling(
    x: list[float] | np.ndarray, data: st.DataObject
) -> None:
    x = np.asarray(x, dtype=np.float64)
    w = np.array(data.draw(st.lists(st.floats(0.05, 20.0), min_size=x.size, max_size=x.size)))
    m = QuantileMap.fit(x, R, 200, weights=w)
    assert np.all(np.diff(m.source) > 0)
    assert np.all(np.diff(m.target) >= 0)
    assert m.target[0] >= 0.0
    assert m.target[-1] <= 1.0
    assert m.n_samples == max(1, round(float(w.sum())))
    assert m.source[0] >= x.min()
    assert m.source[-1] <= x.max()


def test_a_worked_example() -> None:
    """Scores 0.1 (weight 3) and 0.9 (weight 1): the repeated sample is 0.1 0.1 0.1 0.9,
    so the median is 0.1 and the 0.9 knot is the top level."""
    m = QuantileMap.fit([0.1, 0.9], R, levels=[0.0, 0.5, 1.0], weights=[3, 1])
    assert m.source.tolist() == [0.1, 0.9]
    # 0.1 fills positions 0..2 of 4: its knot is at the middle rank 1 / 3.
    assert m.levels.tolist() == [1 / 3, 1.0]
    assert m.n_samples == 4


def test_decayed_weights_follow_recent_traffic() -> None:
    """Old traffic centred at 0.2, recent at 0.6: decaying weights by age moves the map's
    median towards the recent scores, and further with a faster decay."""
    rng = np.random.default_rng(3)
    old, recent = rng.normal(0.2, 0.05, 5000), rng.normal(0.6, 0.05, 5000)
    x = np.clip(np.concatenate([old, recent]), 0, 1)
    age = np.concatenate([np.full(5000, 1.0), np.zeros(5000)])  # periods ago

    def median(half_life: float) -> float:
        m = QuantileMap.fit(x, R, 101, weights=0.5 ** (age / half_life))
        return float(np.interp(R.ppf([0.5])[0], m.target, m.source))

    assert median(1e9) == pytest.approx(np.median(x), abs=0.02)  # no decay: the pool
    assert median(1.0) > median(1e9) + 0.05
    assert median(0.25) > median(1.0)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -1.0], "weights must be >= 0, got -1.0"),
        ([1.0, float("nan")], "weights"),
        ([1.0], "one weight per score: 1 weights for 2 scores"),
        ([0.0, 0.0], "no positive weight"),
    ],
)
def test_bad_weights_are_refused_by_name(weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        QuantileMap.fit([0.1, 0.2], R, weights=weights)
