"""Reason codes through T^C, A and T^Q (``muse.transforms.attribution``): the contributions
sum to the final score the transforms compute, keep their sign, and merge experts' features
by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from muse.transforms import QuantileMap, Reference, posterior_correction, weighted_mean
from muse.transforms.attribution import Attribution, ExpertContributions, attribute
from tests.strategies import betas, weights

R = Reference.beta(0.8, 9.0)
MAP = QuantileMap.fit(np.random.default_rng(0).beta(1.2, 6.0, 20_000), R)
FEATURES = ("amount", "velocity_1h", "merchant_risk", "hour")


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def final_scores(
    experts: list[ExpertContributions], b: list[float], w: list[float], qmap: QuantileMap
) -> np.ndarray:
    """The score the predictor serves for outputs p_i = σ(bias + Σ φ): T^C, A, T^Q."""
    outputs = [sigmoid(e.bias + e.values.sum(axis=1)) for e in experts]
    if len(experts) == 1:
        return qmap(outputs[0])
    corrected = np.column_stack(
        [posterior_correction(p, beta) for p, beta in zip(outputs, b, strict=True)]
    )
    return qmap(weighted_mean(corrected, w))


contribution = st.floats(-4.0, 4.0, allow_nan=False)


@st.composite
def ensembles(draw: st.DrawFn) -> tuple[list[ExpertContributions], list[float], list[float]]:
    n = draw(st.integers(1, 30))
    k = draw(st.integers(1, 3))
    experts = []
    for _ in range(k):
        used = draw(st.lists(st.sampled_from(FEATURES), min_size=1, max_size=4, unique=True))
        values = draw(hnp.arrays(np.float64, (n, len(used)), elements=contribution))
        bias = draw(hnp.arrays(np.float64, n, elements=st.floats(-5.0, 1.0)))
        experts.append(ExpertContributions(tuple(used), values, bias))
    b = [draw(betas.filter(lambda x: x > 1e-3)) for _ in range(k)]
    w = [draw(weights) for _ in range(k)]
    return experts, b, w


@settings(max_examples=200, deadline=None)
@given(ensembles())
def test_contributions_sum_to_the_final_score(
    ensemble: tuple[list[ExpertContributions], list[float], list[float]],
) -> None:
    experts, b, w = ensemble
    found = attribute(experts, b, w, MAP)
    expected = final_scores(experts, b, w, MAP)
    total = found.base + found.contributions.sum(axis=1)
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(ensembles(), st.floats(-1e-3, 1e-3))
def test_served_outputs_off_the_explanation_keep_signs_and_end_at_the_served_score(
    ensemble: tuple[list[ExpertContributions], list[float], list[float]], gap: float
) -> None:
    """A float32 export answers a little off its tree model: the gap is the base's, never
    a feature's (a feature's contribution keeps its sign), and the reasons end at the
    served score."""
    experts, b, w = ensemble
    served = [
        ExpertContributions(
            e.features, e.values, e.bias,
            np.clip(sigmoid(e.bias + e.values.sum(axis=1)) + gap, 0.0, 1.0),
        )
        for e in experts
    ]  # fmt: skip
    final = np.random.default_rng(0).uniform(0.0, 1.0, experts[0].bias.size)
    found = attribute(served, b, w, MAP, final=final)
    np.testing.assert_allclose(found.base + found.contributions.sum(axis=1), final, atol=1e-12)
    plain = attribute(experts, b, w, MAP)
    agree = np.sign(found.contributions) * np.sign(plain.contributions)
    assert (agree >= 0).all()


def test_a_tiny_explanation_with_a_rounded_output_does_not_flip_signs() -> None:
    """φ nearly cancels and the served output is a hair below the base: the old rule
    divided that gap by the tiny Σφ and reported the rising feature as falling."""
    e = ExpertContributions(
        ("up", "down"), np.array([[1.5, -1.5 + 1e-6]]), np.array([-4.0]),
        sigmoid(np.array([-4.0])) - 1e-8,
    )  # fmt: skip
    found = attribute([e], [1.0], [1.0], MAP)
    assert found.contributions[0, 0] >= 0.0
    assert found.contributions[0, 1] <= 0.0


def test_huge_weights_are_only_ratios() -> None:
    e = ExpertContributions(("a",), np.array([[1.0]]), np.array([-2.0]))
    huge = attribute([e, e], [0.5, 0.5], [1e308, 1e308], MAP)
    one = attribute([e, e], [0.5, 0.5], [1.0, 1.0], MAP)
    np.testing.assert_allclose(huge.contributions, one.contributions)
    assert huge.contributions[0, 0] > 0


@settings(max_examples=200, deadline=None)
@given(ensembles())
def test_a_feature_every_expert_pushes_up_pushes_the_score_up(
    ensemble: tuple[list[ExpertContributions], list[float], list[float]],
) -> None:
    experts, b, w = ensemble
    found = attribute(experts, b, w, MAP)
    for j, f in enumerate(found.features):
        signs = [np.sign(e.values[:, e.features.index(f)]) for e in experts if f in e.features]
        all_up = np.all([s >= 0 for s in signs], axis=0)
        all_down = np.all([s <= 0 for s in signs], axis=0)
        assert (found.contributions[all_up, j] >= -1e-15).all()
        assert (found.contributions[all_down, j] <= 1e-15).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), betas.filter(lambda x: x > 1e-3))
def test_t_c_moves_only_the_base_of_an_experts_margin(n: int, beta: float) -> None:
    """Two experts, the second a copy of the first under another β: their margins differ by
    log β only, so with the same weights the split among features is the same shape."""
    rng = np.random.default_rng(n)
    values = rng.normal(size=(n, 3))
    bias = rng.normal(-2.0, 1.0, size=n)
    e = ExpertContributions(FEATURES[:3], values, bias)
    one = attribute([e, e], [beta, beta], [1.0, 1.0], MAP)
    alone = attribute([e], [1.0], [1.0], MAP)  # served raw: no T^C
    moved = one.contributions.sum(axis=1)
    assert np.all(np.sign(moved) == np.sign(values.sum(axis=1)) * (moved != 0))
    # the ensemble of two identical experts is one expert corrected by β
    np.testing.assert_allclose(
        one.base + moved,
        MAP(posterior_correction(sigmoid(bias + values.sum(axis=1)), beta)),
        atol=1e-9,
    )
    # one expert alone is served raw (no T^C): its contributions sum to T^Q(p)
    np.testing.assert_allclose(
        alone.base + alone.contributions.sum(axis=1),
        MAP(sigmoid(bias + values.sum(axis=1))),
        atol=1e-9,
    )


def test_a_worked_example() -> None:
    """One expert, identity-like map: φ = (+1, −0.5) from bias −2 → margin −1.5."""
    identity = QuantileMap(
        source=np.array([0.0, 1.0]), target=np.array([0.0, 1.0]),
        levels=np.array([0.0, 1.0]), n_samples=2,
    )  # fmt: skip
    e = ExpertContributions(("a", "b"), np.array([[1.0, -0.5]]), np.array([-2.0]))
    found = attribute([e], [1.0], [1.0], identity)
    base, p = sigmoid(np.array([-2.0]))[0], sigmoid(np.array([-1.5]))[0]
    # the move p − base (0.0634) shared 1 : −0.5 over a net 0.5 of margin
    assert found.base[0] == pytest.approx(base)
    assert found.contributions[0, 0] == pytest.approx((p - base) * 2.0)
    assert found.contributions[0, 1] == pytest.approx(-(p - base) * 1.0)
    ((name, value),) = found.top(0, 1)
    assert name == "a"
    assert value == pytest.approx((p - base) * 2.0)


def test_features_merge_by_name_across_experts() -> None:
    e1 = ExpertContributions(("a", "b"), np.array([[1.0, 0.0]]), np.array([-1.0]))
    e2 = ExpertContributions(("b", "c"), np.array([[0.5, 0.25]]), np.array([-1.0]))
    found = attribute([e1, e2], [0.5, 0.5], [1.0, 1.0], MAP)
    assert found.features == ("a", "b", "c")
    assert isinstance(found, Attribution)
    assert (found.contributions > 0).sum() == 3


def test_bad_calls_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="shape"):
        ExpertContributions(("a",), np.zeros((2, 2)), np.zeros(2))
    e = ExpertContributions(("a",), np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="one contribution set"):
        attribute([e], [1.0, 1.0], [1.0], MAP)
    other = ExpertContributions(("a",), np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="same events"):
        attribute([e, other], [1.0, 1.0], [1.0, 1.0], MAP)
