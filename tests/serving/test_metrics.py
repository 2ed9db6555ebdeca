"""The per-event histograms observed in bulk expose what prometheus-client's own would."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from muse.serving.metrics import _SCORE_BUCKETS, _Histograms

values = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from(_SCORE_BUCKETS),  # exactly on a bound: the bound's bucket (le)
    st.floats(-1e6, 1e6, allow_nan=False),
)


def exposition(collector: object) -> list[str]:
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    lines = generate_latest(registry).decode().splitlines()
    return [ln for ln in lines if ln.startswith("h_") and "_created" not in ln]


@settings(max_examples=100)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.lists(values, max_size=50)), max_size=6))
def test_bulk_and_single_observations_match_prometheus_client(
    batches: list[tuple[str, list[float]]],
) -> None:
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "h", "doc", ("tenant",), registry=reference_registry, buckets=_SCORE_BUCKETS
    )
    ours = _Histograms("h", "doc", ("tenant",), _SCORE_BUCKETS)
    for tenant, scores in batches:
        for v in scores:
            reference.labels(tenant).observe(v)
        if len(scores) == 1:
            ours.observe((tenant,), scores[0])
        elif scores:
            ours.observe_many((tenant,), scores)

    def parsed(lines: list[str]) -> dict[str, float]:
        return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines}

    want = parsed(
        [
            ln
            for ln in generate_latest(reference_registry).decode().splitlines()
            if ln.startswith("h_") and "_created" not in ln
        ]
    )
    got = parsed(exposition(ours))
    assert set(got) == set(want)
    for name, value in want.items():
        assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-6), name


def test_nan_is_observed_nowhere_alone_or_in_a_batch() -> None:
    h = _Histograms("h", "doc", ("tenant",), (0.5,))
    h.observe(("a",), float("nan"))
    h.observe_many(("a",), [0.2, float("nan"), 0.7])
    counts, total = h.value(("a",))
    assert counts == [1, 2]
    assert total == pytest.approx(0.9)


def test_repeated_observations_count_each_time() -> None:
    h = _Histograms("h", "doc", ("tenant",), (0.001, 0.01, 0.1))
    h.observe(("a",), 0.005, times=3)
    h.observe(("a",), 0.001)
    assert h.value(("a",)) == ([1, 4, 4, 4], 0.016)
    assert h.value(("b",)) == ([0, 0, 0, 0], 0.0)
