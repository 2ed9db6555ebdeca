"""Enrichment policy: which features for which events, defaults, required, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from muse.errors import FeatureError, FeatureStoreError
from muse.features import FeatureTable
from muse.featurestore import (
    EntityKey,
    FeatureStore,
    FeatureStoreSpec,
    InProcessTable,
    ParquetSource,
    StoreFeature,
)
from muse.featurestore.base import key_text
from muse.featurestore.store import Enrichment
from tests.featurestore.fakes import CountingBackend, DownBackend, cards_table

SOURCE = ParquetSource(path=Path("cards.parquet"), digest="-", keys=("card_id",), features=())


def spec(*keys: EntityKey, email_default: float | None = 0.0) -> FeatureStoreSpec:
    return FeatureStoreSpec(
        keys=keys or (EntityKey("card_id", from_intent=True),),
        features=(StoreFeature("card_age_days"), StoreFeature("email_age_days", email_default)),
        source=SOURCE,
    )


def counting_store(email_default: float | None = 0.0) -> tuple[FeatureStore, CountingBackend]:
    backend = CountingBackend(cards_table())
    return FeatureStore(spec(email_default=email_default), backend), backend


def idx(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.intp)


def test_lookup_asks_each_distinct_entity_once_and_applies_defaults() -> None:
    store, backend = counting_store()
    values, error = store.lookup(
        [("c1",), ("c3",), ("c1",), ("nope",), None], ["card_age_days", "email_age_days"]
    )
    assert error is None
    assert backend.calls == [([("c1",), ("c3",), ("nope",)], ["card_age_days", "email_age_days"])]
    np.testing.assert_array_equal(
        values,
        [
            [10.0, 100.0],
            [30.0, 0.0],  # c3 lacks an email age: the default
            [10.0, 100.0],
            [np.nan, 0.0],  # unknown card: card_age_days is required, email gets the default
            [np.nan, np.nan],  # no card named: nothing was looked up, no default either
        ],
    )
    one, _ = store.lookup([("c3",)], ["email_age_days"])  # the single-event path
    assert one.tolist() == [[0.0]]
    # Defaults are filled into the lookup's own array, never into the table's.
    assert np.isnan(backend.inner.fetch([("c3",)], ["email_age_days"])).all()


def test_an_outage_is_returned_not_raised_and_no_default_hides_it() -> None:
    store = FeatureStore(spec(), DownBackend())
    values, error = store.lookup([("c1",), None], ["email_age_days"])
    assert isinstance(error, FeatureStoreError)
    assert np.isnan(values).all()


def test_fill_fetches_only_absent_provided_features_for_the_events_that_need_them() -> None:
    store, backend = counting_store()
    intents = [{"tenant": "t", "card_id": c} for c in ("c1", "c2", "c3")]
    table = FeatureTable({"amount": [1.0, 2.0, 3.0], "email_age_days": [5.0, 6.0, 7.0]})
    enr = Enrichment(store, intents, 3)
    out = enr.fill(
        table,
        [
            (("amount", "card_age_days"), idx(0, 2)),  # only events 0 and 2 need card age
            (("amount", "email_age_days", "other"), idx(0, 1, 2)),  # email age is in the request
        ],
    )
    assert backend.calls == [([("c1",), ("c3",)], ["card_age_days"])]
    np.testing.assert_array_equal(out["card_age_days"], [10.0, np.nan, 30.0])
    np.testing.assert_array_equal(out["email_age_days"], [5.0, 6.0, 7.0])  # never overridden
    assert "card_age_days" not in table  # the caller's table is left as it was
    assert enr.filled == {"card_age_days"}


def test_a_later_fill_fetches_only_what_was_not_asked_and_also_rides_along() -> None:
    store, backend = counting_store()
    intents = [{"tenant": "t", "card_id": c} for c in ("c1", "c2", "c3")]
    enr = Enrichment(store, intents, 3)
    table = FeatureTable({"amount": [1.0, 2.0, 3.0]})
    # Live: card age for event 0; the shadows' email age rides along in the same call.
    live = enr.fill(table, [(("card_age_days",), idx(0))], also=[(("email_age_days",), idx(1))])
    assert backend.calls == [([("c1",)], ["card_age_days", "email_age_days"])]
    # Shadows, later: email age for events 0-2; event 0 was already asked.
    shadow = enr.fill(live, [(("email_age_days",), idx(0, 1, 2))])
    assert backend.calls[1] == ([("c2",), ("c3",)], ["email_age_days"])
    np.testing.assert_array_equal(shadow["email_age_days"], [100.0, 200.0, 0.0])
    assert enr.fill(shadow, [(("email_age_days", "card_age_days"), idx(0))]) is shadow
    assert len(backend.calls) == 2


def test_gap_names_the_required_feature_and_the_unknown_entity() -> None:
    store, _ = counting_store()
    intents = [
        {"tenant": "t", "card_id": "c1"},
        {"tenant": "t", "card_id": "gone"},
        {"tenant": "t"},
    ]
    enr = Enrichment(store, intents, 3)
    table = enr.fill(
        FeatureTable({"amount": [1.0, 2.0, 3.0]}), [(("card_age_days",), idx(0, 1, 2))]
    )
    assert enr.gap(table, ("amount", "card_age_days"), idx(0)) is None
    gap = enr.gap(table, ("amount", "card_age_days"), idx(0, 1, 2))
    assert gap is not None
    np.testing.assert_array_equal(gap.bad, [False, True, True])
    assert isinstance(gap.error, FeatureError)
    assert (gap.error.feature, gap.error.index) == ("card_age_days", 1)
    assert "no value for card_id 'gone'" in str(gap.error)
    gap2 = enr.gap(table, ("card_age_days",), idx(2))
    assert gap2 is not None
    assert "has no intent.card_id" in str(gap2.error)


def test_gap_of_an_outage_is_a_feature_store_error_naming_the_features() -> None:
    store = FeatureStore(spec(), DownBackend())
    enr = Enrichment(store, [{"tenant": "t", "card_id": "c1"}], 1)
    table = enr.fill(
        FeatureTable({"amount": [1.0]}), [(("card_age_days", "email_age_days"), idx(0))]
    )
    gap = enr.gap(table, ("card_age_days", "email_age_days"), idx(0))
    assert gap is not None
    assert isinstance(gap.error, FeatureStoreError)
    assert gap.error.features == ("card_age_days", "email_age_days")
    assert "feature store is unavailable" in str(gap.error)


def test_keys_from_request_features_and_composite_keys() -> None:
    table = InProcessTable.from_columns(
        [["bank1", "bank1"], [7, 8]], {"card_age_days": [1.0, 2.0], "email_age_days": [3.0, 4.0]}
    )
    store = FeatureStore(
        spec(EntityKey("tenant", from_intent=True), EntityKey("card_num", from_intent=False)),
        table,
    )
    assert store.key_features == ("card_num",)
    features = FeatureTable({"card_num": [8.0, 7.0, 9.0]})
    intents = [{"tenant": "bank1"}] * 3
    enr = Enrichment(store, intents, 3)
    out = enr.fill(features, [(("card_age_days",), idx(0, 1, 2))])
    np.testing.assert_array_equal(out["card_age_days"], [2.0, 1.0, np.nan])
    gap = enr.gap(out, ("card_age_days",), idx(0, 1, 2))
    assert gap is not None
    assert "tenant 'bank1', card_num '9'" in str(gap.error)
    assert store.entity({"tenant": "bank1"}, FeatureTable({"x": [1.0]}), 0) is None
    assert store.describe_key(None) == "intent.tenant and features.card_num"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("card-1", "card-1"),
        (1234.0, "1234"),
        (np.float64(7.0), "7"),
        (12, "12"),
        (2.5, "2.5"),
        (-3.0, "-3"),
        (2.0**60, "1.152921504606847e+18"),
    ],
)
def test_key_text_writes_whole_numbers_without_a_fraction(value: object, text: str) -> None:
    assert key_text(value) == text
