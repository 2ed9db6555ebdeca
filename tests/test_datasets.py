"""Tests for muse.datasets: the synthetic traffic every other test and benchmark relies on."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.datasets import (
    CHANNELS,
    DEFAULT_START,
    FEATURE_NAMES,
    GEOGRAPHIES,
    SCHEMA,
    EventFrame,
    TenantProfile,
    generate_events,
    make_tenants,
    undersample,
)
from muse.errors import FeatureError

FRAME_COLUMNS = ("label", "tenant", "geography", "channel", "schema", "timestamp", "event_id")


@pytest.fixture(scope="module")
def tenants() -> tuple[TenantProfile, ...]:
    return make_tenants(4, seed=0)


@pytest.fixture(scope="module")
def frame(tenants: tuple[TenantProfile, ...]) -> EventFrame:
    return generate_events(tenants, 20_000, seed=3)


@pytest.fixture(scope="module")
def large(tenants: tuple[TenantProfile, ...]) -> EventFrame:
    """Enough events for statistical checks (label rates, drift) at 5 sigma."""
    return generate_events(tenants, 600_000, seed=5)


def assert_frames_identical(a: EventFrame, b: EventFrame) -> None:
    assert a.feature_names == b.feature_names
    for name in a.feature_names:
        assert a.features[name].tobytes() == b.features[name].tobytes(), name
    for column in FRAME_COLUMNS:
        x, y = getattr(a, column), getattr(b, column)
        assert x.dtype == y.dtype, column
        assert np.array_equal(x, y), column


# --- tenants -------------------------------------------------------------------------------


def test_make_tenants_gives_named_varied_profiles() -> None:
    tenants = make_tenants(8, seed=1)
    assert [t.name for t in tenants] == [f"tenant{i:02d}" for i in range(1, 9)]
    assert all(0.001 <= t.fraud_rate <= 0.03 for t in tenants)
    assert len({t.fraud_rate for t in tenants}) == 8
    assert {t.geography for t in tenants[:4]} == set(GEOGRAPHIES)
    assert {t.geography for t in tenants[4:]} == set(GEOGRAPHIES)
    assert all(math.isclose(sum(t.channel_mix), 1.0) for t in tenants)
    assert all(len(t.shift) == len(FEATURE_NAMES) for t in tenants)
    assert all(t.schema == SCHEMA for t in tenants)
    assert len({t.shift for t in tenants}) == 8


def test_make_tenants_is_deterministic_and_prefix_stable() -> None:
    assert make_tenants(5, seed=2) == make_tenants(5, seed=2)
    assert make_tenants(3, seed=2) == make_tenants(10, seed=2)[:3]
    assert make_tenants(3, seed=2) != make_tenants(3, seed=3)


def test_make_tenants_custom_names_and_range() -> None:
    tenants = make_tenants(2, names=["acme", "globex"], fraud_rate_range=(0.02, 0.02))
    assert [t.name for t in tenants] == ["acme", "globex"]
    assert all(t.fraud_rate == 0.02 for t in tenants)
    assert make_tenants(120)[-1].name == "tenant120"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n \\(number of tenants\\) must be an integer >= 1, got 0"),
        ({"n": 2, "seed": -1}, "seed must be a non-negative integer, got -1"),
        ({"n": 2, "fraud_rate_range": (0.0, 0.1)}, "fraud_rate_range must be"),
        ({"n": 2, "fraud_rate_range": (0.05, 0.01)}, "got \\(0.05, 0.01\\)"),
        ({"n": 2, "names": ["a"]}, "names must hold n=2 entries, got 1"),
        ({"n": 2, "names": ["a", "a"]}, "names must be unique"),
    ],
)
def test_make_tenants_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_tenants(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"fraud_rate": 0.0}, "tenant 'x': fraud_rate must be in \\(0, 1\\), got 0.0"),
        ({"fraud_rate": 1.5}, "fraud_rate must be in \\(0, 1\\), got 1.5"),
        ({"geography": ""}, "geography must be a non-empty string"),
        ({"channel_mix": (0.5, 0.5)}, "channel_mix must be 3 non-negative probabilities"),
        ({"channel_mix": (0.5, 0.6, -0.1)}, "channel_mix"),
        ({"shift": (0.0,) * 3}, "shift must be 10 finite numbers"),
        ({"shift": (9.0,) * 10}, "within ±5"),
    ],
)
def test_tenant_profile_rejects_bad_values(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"name": "x", "fraud_rate": 0.01} | kwargs
    with pytest.raises(ValueError, match=match):
        TenantProfile(**args)


def test_tenant_profile_normalises_sequences() -> None:
    profile = TenantProfile("x", 0.01, channel_mix=[0.2, 0.3, 0.5], shift=[0] * 10)  # type: ignore[arg-type]
    assert profile.channel_mix == (0.2, 0.3, 0.5)
    assert profile.shift == (0.0,) * 10
    assert profile == TenantProfile("x", 0.01, channel_mix=(0.2, 0.3, 0.5))


# --- generation ----------------------------------------------------------------------------


def test_frame_has_documented_columns(frame: EventFrame) -> None:
    n = len(frame)
    assert n == 20_000
    assert frame.feature_names == FEATURE_NAMES
    for name in FEATURE_NAMES:
        column = frame.features[name]
        assert column.dtype == np.float64
        assert column.shape == (n,)
        assert np.all(np.isfinite(column)), name
        assert not column.flags.writeable
    assert frame.label.dtype == np.int8
    assert set(np.unique(frame.label).tolist()) == {0, 1}
    assert frame.timestamp.dtype == np.dtype("datetime64[ms]")
    for text_column in ("tenant", "geography", "channel", "schema", "event_id"):
        assert getattr(frame, text_column).dtype.kind == "U", text_column
    assert set(np.unique(frame.channel).tolist()) == set(CHANNELS)
    assert set(np.unique(frame.schema).tolist()) == {SCHEMA}


def test_feature_ranges_are_plausible(frame: EventFrame) -> None:
    f = frame.features
    assert np.all(f["amount"] >= 0.01)
    assert np.all((f["hour"] >= 0) & (f["hour"] < 24))
    for name in ("merchant_risk", "device_risk"):
        assert np.all((f[name] > 0) & (f[name] < 1)), name
    for name in ("velocity_1h", "n_declines_24h", "card_age_days", "email_age_days"):
        assert np.all(f[name] >= 0), name
        assert np.array_equal(f[name], np.floor(f[name])), name
    assert np.all(f["n_items"] >= 1)


def test_same_arguments_give_bit_identical_frames(tenants: tuple[TenantProfile, ...]) -> None:
    kwargs: dict[str, Any] = {"seed": 11, "days": 7.5, "drift": 0.7}
    assert_frames_identical(
        generate_events(tenants, 5_000, **kwargs), generate_events(tenants, 5_000, **kwargs)
    )


def test_different_seeds_give_different_frames(tenants: tuple[TenantProfile, ...]) -> None:
    a = generate_events(tenants, 5_000, seed=1)
    b = generate_events(tenants, 5_000, seed=2)
    assert not np.array_equal(a.features["amount"], b.features["amount"])
    assert not np.array_equal(a.tenant, b.tenant)
    assert not np.array_equal(a.timestamp, b.timestamp)
    assert a.event_id[0] == "evt-1-0"
    assert b.event_id[0] == "evt-2-0"


def test_event_ids_follow_timestamp_order(frame: EventFrame) -> None:
    assert frame.event_id.tolist() == [f"evt-3-{i}" for i in range(len(frame))]
    assert np.all(np.diff(frame.timestamp.astype(np.int64)) >= 0)


def test_timestamps_cover_the_period(tenants: tuple[TenantProfile, ...]) -> None:
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    events = generate_events(tenants, 10_000, start=start, days=2.0)
    first, last = np.datetime64("2025-03-01T12:00", "ms"), np.datetime64("2025-03-03T12:00", "ms")
    assert events.timestamp.min() >= first
    assert events.timestamp.max() < last
    # Uniform over the period: each half holds about half of the events.
    assert abs(np.mean(events.timestamp < first + np.timedelta64(1, "D")) - 0.5) < 0.03


def test_start_defaults_to_2026_and_naive_start_is_utc(tenants: tuple[TenantProfile, ...]) -> None:
    assert datetime(2026, 1, 1, tzinfo=UTC) == DEFAULT_START
    default = generate_events(tenants, 100, days=1.0)
    assert default.timestamp.min() >= np.datetime64("2026-01-01T00:00", "ms")
    naive = generate_events(tenants, 100, start=datetime(2026, 1, 1), days=1.0)
    shifted = generate_events(
        tenants, 100, start=datetime(2026, 1, 1, 1, tzinfo=UTC) + timedelta(hours=-1), days=1.0
    )
    assert np.array_equal(default.timestamp, naive.timestamp)
    assert np.array_equal(default.timestamp, shifted.timestamp)


def test_tenant_weights_split_events_exactly(tenants: tuple[TenantProfile, ...]) -> None:
    events = generate_events(tenants, 1_001, tenant_weights=[1.0, 2.0, 0.0, 7.0])
    counts = {t.name: int(np.sum(events.tenant == t.name)) for t in tenants}
    assert counts == {"tenant01": 100, "tenant02": 200, "tenant03": 0, "tenant04": 701}
    equal = generate_events(tenants, 10)
    assert sorted(np.unique(equal.tenant, return_counts=True)[1].tolist()) == [2, 2, 3, 3]


def test_intents_are_fixed_per_tenant_and_channel_mix_follows_profile(
    large: EventFrame, tenants: tuple[TenantProfile, ...]
) -> None:
    for t in tenants:
        mask = large.tenant == t.name
        n = int(mask.sum())
        assert set(np.unique(large.geography[mask]).tolist()) == {t.geography}
        for channel, p in zip(CHANNELS, t.channel_mix, strict=True):
            share = np.mean(large.channel[mask] == channel)
            assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (t.name, channel)


def test_label_rates_match_profiles(large: EventFrame, tenants: tuple[TenantProfile, ...]) -> None:
    for t in tenants:
        labels = large.label[large.tenant == t.name]
        sigma = math.sqrt(t.fraud_rate * (1 - t.fraud_rate) / len(labels))
        assert abs(labels.mean() - t.fraud_rate) < 5 * sigma, t


def _early_late_z(frame: EventFrame, feature: str, label: int) -> float:
    """z statistic of the difference of a feature's class mean, last vs first tenth of time."""
    n = len(frame)
    cls = frame.label == label
    values = frame.features[feature]
    early = values[: n // 10][cls[: n // 10]]
    late = values[n - n // 10 :][cls[n - n // 10 :]]
    se = math.sqrt(early.var() / len(early) + late.var() / len(late))
    return float((late.mean() - early.mean()) / se)


def test_drift_moves_legit_and_fraud_features(
    large: EventFrame, tenants: tuple[TenantProfile, ...]
) -> None:
    assert _early_late_z(large, "device_risk", label=0) > 5
    assert _early_late_z(large, "amount", label=0) > 5
    assert _early_late_z(large, "amount", label=1) > 5
    # Fraud shifts from card testing (bursts of attempts) to account takeover, so fraud
    # velocity falls while legitimate velocity creeps up: the pattern moves, not just the level.
    assert _early_late_z(large, "velocity_1h", label=0) > 5
    assert _early_late_z(large, "velocity_1h", label=1) < -2


def test_no_drift_is_stationary(tenants: tuple[TenantProfile, ...]) -> None:
    stationary = generate_events(tenants, 600_000, seed=5, drift=0.0)
    for name in FEATURE_NAMES:
        assert abs(_early_late_z(stationary, name, label=0)) < 5, name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_events": 0}, "n_events must be an integer >= 1, got 0"),
        ({"n_events": True}, "n_events must be an integer >= 1, got True"),
        ({"seed": -3}, "seed must be a non-negative integer, got -3"),
        ({"days": 0.0}, "days must be a finite number > 0, got 0.0"),
        ({"days": math.inf}, "days must be a finite number > 0, got inf"),
        ({"drift": -0.5}, "drift must be a finite number >= 0 \\(0 = stationary\\), got -0.5"),
        ({"start": "2026-01-01"}, "start must be a datetime, got str"),
        ({"tenant_weights": [1.0, 2.0]}, "tenant_weights must be 4 finite non-negative"),
        ({"tenant_weights": [1.0, -1.0, 1.0, 1.0]}, "got \\[1.0, -1.0, 1.0, 1.0\\]"),
        ({"tenant_weights": [0.0] * 4}, "with a positive sum"),
    ],
)
def test_generate_events_rejects_bad_arguments(
    tenants: tuple[TenantProfile, ...], kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"n_events": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        generate_events(tenants, **args)


def test_generate_events_rejects_bad_tenants(tenants: tuple[TenantProfile, ...]) -> None:
    with pytest.raises(ValueError, match="at least one TenantProfile"):
        generate_events([], 10)
    with pytest.raises(ValueError, match="duplicates \\['tenant01'\\]"):
        generate_events([tenants[0], tenants[0]], 10)
    with pytest.raises(ValueError, match="must be TenantProfile objects, got str"):
        generate_events(["tenant01"], 10)  # type: ignore[list-item]


@settings(max_examples=40, deadline=None)
@given(
    n_events=st.integers(1, 300),
    n_tenants=st.integers(1, 5),
    seed=st.integers(0, 2**32),
    days=st.floats(1e-3, 400.0),
    drift=st.floats(0.0, 20.0),
)
def test_invariants_hold_for_any_small_frame(
    n_events: int, n_tenants: int, seed: int, days: float, drift: float
) -> None:
    tenants = make_tenants(n_tenants, seed=seed % 1000)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    events = generate_events(tenants, n_events, seed=seed, start=start, days=days, drift=drift)
    assert len(events) == n_events
    for column in FRAME_COLUMNS:
        assert len(getattr(events, column)) == n_events, column
    matrix = events.feature_matrix(FEATURE_NAMES)
    assert matrix.shape == (n_events, len(FEATURE_NAMES))
    assert np.all(np.isfinite(matrix))
    assert set(np.unique(events.label).tolist()) <= {0, 1}
    assert len(set(events.event_id.tolist())) == n_events
    assert set(events.tenant.tolist()) <= {t.name for t in tenants}
    first = np.datetime64(start.replace(tzinfo=None), "ms")
    end = first + np.timedelta64(round(days * 86_400_000), "ms")
    assert np.all(events.timestamp >= first)
    assert np.all(events.timestamp < max(end, first + np.timedelta64(1, "ms")))
    assert np.all(np.diff(events.timestamp.astype(np.int64)) >= 0)


# --- frame ---------------------------------------------------------------------------------


def test_select_by_mask_indices_and_slice(frame: EventFrame) -> None:
    mask = frame.channel == "web"
    web = frame.select(mask)
    assert len(web) == int(mask.sum())
    assert set(web.channel.tolist()) == {"web"}
    picked = frame.select([5, 2, -1])
    assert picked.event_id.tolist() == [frame.event_id[5], frame.event_id[2], frame.event_id[-1]]
    assert picked.features["amount"][0] == frame.features["amount"][5]
    assert frame.select(slice(10, 20)).event_id.tolist() == frame.event_id[10:20].tolist()
    assert len(frame.select([])) == 0
    assert not picked.label.flags.writeable


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (np.ones(3, dtype=bool), "boolean mask must have one entry per event \\(20000\\), got 3"),
        (np.array([0.5]), "boolean mask or integer positions, got dtype float64"),
        (np.zeros((2, 2), dtype=np.intp), "1-D mask or index array, got shape \\(2, 2\\)"),
    ],
)
def test_select_rejects_bad_selectors(
    frame: EventFrame, rows: npt.NDArray[Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        frame.select(rows)


def test_for_tenant_and_intents(frame: EventFrame, tenants: tuple[TenantProfile, ...]) -> None:
    t = tenants[1]
    sub = frame.for_tenant(t.name)
    assert len(sub) == int(np.sum(frame.tenant == t.name))
    intent = sub.intents(0)
    assert intent == {
        "tenant": t.name,
        "geography": t.geography,
        "channel": str(sub.channel[0]),
        "schema": SCHEMA,
    }
    assert all(type(v) is str for v in intent.values())
    with pytest.raises(LookupError, match="tenant 'nobody' has no events in this frame"):
        frame.for_tenant("nobody")


def test_repr_summarises(frame: EventFrame) -> None:
    text = repr(frame)
    assert text.startswith("EventFrame(20000 events, 4 tenants, 10 features, ")
    assert "positive, 2026-01-01T" in text
    assert repr(frame.select([])) == "EventFrame(0 events, 10 features)"


def test_feature_matrix_follows_requested_order(frame: EventFrame) -> None:
    matrix = frame.feature_matrix(["hour", "amount"])
    assert matrix.dtype == np.float64
    assert matrix.flags.writeable
    assert np.array_equal(matrix[:, 0], frame.features["hour"])
    assert np.array_equal(matrix[:, 1], frame.features["amount"])
    with pytest.raises(FeatureError, match="unknown feature\\(s\\) \\['income'\\]") as info:
        frame.feature_matrix(["amount", "income"])
    assert info.value.feature == "income"
    with pytest.raises(TypeError, match="not the string 'amount'"):
        frame.feature_matrix("amount")


def test_to_rows_is_json_ready(frame: EventFrame) -> None:
    rows = frame.to_rows(limit=3)
    assert len(rows) == 3
    assert rows[0]["event_id"] == "evt-3-0"
    assert rows[2]["intent"] == frame.intents(2)
    assert list(rows[1]["features"]) == list(FEATURE_NAMES)
    assert rows[1]["features"]["amount"] == frame.features["amount"][1]
    assert all(type(v) is float for v in rows[1]["features"].values())
    assert len(frame.select(slice(0, 7)).to_rows()) == 7
    with pytest.raises(ValueError, match="limit must be None or a non-negative integer, got -1"):
        frame.to_rows(-1)


def test_event_frame_validates_columns(frame: EventFrame) -> None:
    with pytest.raises(ValueError, match=r"EventFrame\.tenant must be a 1-D numpy array of 20000"):
        EventFrame(
            features=frame.features,
            label=frame.label,
            tenant=frame.tenant[:5],
            geography=frame.geography,
            channel=frame.channel,
            schema=frame.schema,
            timestamp=frame.timestamp,
            event_id=frame.event_id,
        )
    with pytest.raises(ValueError, match="feature 'amount' must be a float64 array"):
        EventFrame(
            features={"amount": frame.features["amount"].astype(np.float32)},
            label=frame.label,
            tenant=frame.tenant,
            geography=frame.geography,
            channel=frame.channel,
            schema=frame.schema,
            timestamp=frame.timestamp,
            event_id=frame.event_id,
        )


# --- undersampling -------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.18, 0.02])
def test_undersample_keeps_positives_and_a_fraction_of_negatives(
    frame: EventFrame, beta: float
) -> None:
    sample = undersample(frame, beta, seed=4)
    n_neg = int(np.sum(frame.label == 0))
    assert int(sample.label.sum()) == int(frame.label.sum())
    assert int(np.sum(sample.label == 0)) == round(beta * n_neg)
    assert set(sample.event_id.tolist()) <= set(frame.event_id.tolist())
    assert np.all(np.diff(sample.timestamp.astype(np.int64)) >= 0)
    assert_frames_identical(sample, undersample(frame, beta, seed=4))
    assert not np.array_equal(sample.event_id, undersample(frame, beta, seed=5).event_id)


def test_undersample_with_beta_one_keeps_everything(frame: EventFrame) -> None:
    assert undersample(frame, 1.0) is frame


@pytest.mark.parametrize("beta", [0.0, -0.1, 1.5, math.nan])
def test_undersample_rejects_beta_outside_unit_interval(frame: EventFrame, beta: float) -> None:
    with pytest.raises(ValueError, match="beta \\(fraction of negatives kept\\) must be in"):
        undersample(frame, beta)


# --- signal: what quantile maps and model updates rely on ----------------------------------


@pytest.mark.slow
def test_a_small_model_learns_an_imperfect_signal_with_tenant_specific_scores() -> None:
    import lightgbm
    from sklearn import metrics

    tenants = make_tenants(4, seed=0)
    train = generate_events(tenants, 50_000, seed=1)
    test = generate_events(tenants, 100_000, seed=2)
    params = {"objective": "binary", "num_threads": 1, "deterministic": True, "verbose": -1}
    model = lightgbm.train(
        params, lightgbm.Dataset(train.feature_matrix(FEATURE_NAMES), train.label), 30
    )
    scores = model.predict(test.feature_matrix(FEATURE_NAMES))
    auc = metrics.roc_auc_score(test.label, scores)
    assert 0.8 < auc < 0.99
    # One model, different raw-score distributions per tenant, even on legitimate traffic
    # alone (so it is the feature shift, not only the fraud rate): hence per-tenant maps.
    legit = test.label == 0
    p99 = [float(np.percentile(scores[legit & (test.tenant == t.name)], 99)) for t in tenants]
    assert max(p99) > 1.1 * min(p99)
