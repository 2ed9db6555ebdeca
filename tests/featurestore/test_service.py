"""Enrichment in the scoring core, on the quickstart (Parquet store keyed by intent card_id).

A request may omit what the store provides and get the very score it would get sending
it; a required feature the store lacks is a 422-class error naming it; a store outage
fails only the events that need it; shadows never fail live (invariant 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from muse.backends import ModelPool
from muse.errors import FeatureError, FeatureStoreError
from muse.featurestore import FeatureStore, InProcessTable, StorePool
from muse.service import ScoringService
from tests.config_fixtures import QUICKSTART, SAMPLE_EVENT, Deployment
from tests.featurestore.fakes import CountingBackend, DownBackend

CARD = "card-00000"  # the sample event's card (examples/quickstart/build.py)
STORE_FEATURES = ("card_age_days", "email_age_days")
LEAN = {k: v for k, v in SAMPLE_EVENT.items() if k not in STORE_FEATURES}


@pytest.fixture(scope="module")
def service() -> ScoringService:
    return ScoringService.from_config(QUICKSTART / "muse.yaml")


def with_backend(service: ScoringService, backend: Any) -> ScoringService:
    """The same deployment, its feature store answering through ``backend``."""
    snap = service.snapshot
    assert snap.store is not None
    store = FeatureStore(snap.store.spec, backend)
    return ScoringService(dataclasses.replace(snap, store=store), service.pool)


def counted(service: ScoringService) -> tuple[ScoringService, CountingBackend]:
    assert service.snapshot.store is not None
    backend = service.snapshot.store.backend
    assert isinstance(backend, InProcessTable)
    counting = CountingBackend(backend)
    return with_backend(service, counting), counting


def test_the_quickstart_store_holds_the_sample_events_card(service: ScoringService) -> None:
    store = service.snapshot.store
    assert store is not None
    got = store.backend.fetch([(CARD,)], STORE_FEATURES)
    assert got.tolist() == [[SAMPLE_EVENT[f] for f in STORE_FEATURES]]


@pytest.mark.parametrize("tenant", ["bank1", "bank2", "fintech3"])
def test_omitting_store_features_gives_the_same_scores_live_and_shadow(
    service: ScoringService, tenant: str
) -> None:
    full = service.score({"tenant": tenant}, SAMPLE_EVENT)
    lean = service.score({"tenant": tenant, "card_id": CARD}, LEAN)
    assert lean.live == full.live
    assert lean.shadows == full.shadows
    assert lean.shadow_errors == {}


def test_a_mixed_batch_through_the_live_path_and_deferred_shadows(service: ScoringService) -> None:
    tenants = ["bank2", "bank1", "fintech3", "bank2"]
    cards = [CARD, CARD, "card-00001", "card-00001"]
    store = service.snapshot.store
    assert store is not None
    card1 = store.backend.fetch([("card-00001",)], STORE_FEATURES)[0]
    full_rows = [
        SAMPLE_EVENT,
        SAMPLE_EVENT,
        *[{**SAMPLE_EVENT, **dict(zip(STORE_FEATURES, card1.tolist(), strict=True))}] * 2,
    ]
    expected = service.score_batch([{"tenant": t} for t in tenants], full_rows)
    intents = [{"tenant": t, "card_id": c} for t, c in zip(tenants, cards, strict=True)]
    outcome = service.score_live(intents, [LEAN] * 4, event_ids=list("abcd"))
    assert [r.live for r in outcome.results] == [r.live for r in expected]
    assert outcome.deferred is not None
    shadowed = outcome.deferred.run()
    assert [r.shadows for r in shadowed] == [r.shadows for r in expected]
    assert all(r.shadow_errors == {} for r in shadowed)


def test_one_lookup_per_batch_with_shadow_features_riding_along(service: ScoringService) -> None:
    svc, backend = counted(service)
    intents = [{"tenant": "bank2", "card_id": c} for c in (CARD, "card-00001", CARD)]
    outcome = svc.score_live(intents, [LEAN] * 3)
    # bank2's live single-v1 needs card age; the shadow ensemble also email age: one call,
    # each distinct card once.
    assert backend.calls == [([(CARD,), ("card-00001",)], ["card_age_days", "email_age_days"])]
    assert outcome.deferred is not None
    assert all(not r.shadow_errors for r in outcome.deferred.run())
    assert len(backend.calls) == 1


def test_requests_carrying_every_store_feature_never_ask_the_store(
    service: ScoringService,
) -> None:
    down = DownBackend()
    svc = with_backend(service, down)
    r = svc.score({"tenant": "bank2", "card_id": CARD}, SAMPLE_EVENT)
    assert r.score == service.score({"tenant": "bank2"}, SAMPLE_EVENT).score
    assert r.shadow_errors == {}
    assert down.calls == 0


def test_values_in_the_request_win_over_the_store(service: ScoringService) -> None:
    mine = {**SAMPLE_EVENT, "card_age_days": 3.0}
    r = service.score({"tenant": "bank1", "card_id": CARD}, mine)
    assert r.score == service.score({"tenant": "bank1"}, mine).score
    assert r.score != service.score({"tenant": "bank1"}, SAMPLE_EVENT).score


def test_a_default_stands_in_for_an_unknown_entity(service: ScoringService) -> None:
    without_email = {k: v for k, v in SAMPLE_EVENT.items() if k != "email_age_days"}
    r = service.score({"tenant": "bank1", "card_id": "never-seen"}, without_email)
    assert (
        r.score == service.score({"tenant": "bank1"}, {**SAMPLE_EVENT, "email_age_days": 0.0}).score
    )


@pytest.mark.parametrize(
    ("intent", "message"),
    [
        ({"tenant": "bank1", "card_id": "never-seen"}, "no value for card_id 'never-seen'"),
        ({"tenant": "bank1"}, "has no intent.card_id"),
    ],
)
def test_a_required_feature_without_a_value_is_a_feature_error_naming_it(
    service: ScoringService, intent: Mapping[str, str], message: str
) -> None:
    with pytest.raises(FeatureError, match=message) as info:
        service.score_batch([{"tenant": "bank1", "card_id": CARD}, intent], [LEAN, LEAN])
    assert (info.value.feature, info.value.index) == ("card_age_days", 1)


def test_an_outage_fails_events_that_need_the_store_and_only_shadows_elsewhere(
    service: ScoringService,
) -> None:
    svc = with_backend(service, DownBackend())
    with pytest.raises(FeatureStoreError, match="feature store is unavailable") as info:
        svc.score({"tenant": "bank1", "card_id": CARD}, LEAN)
    assert info.value.features == STORE_FEATURES
    # bank2: live single-v1 has all it needs; only the shadow ensemble needs email age.
    no_email = {k: v for k, v in SAMPLE_EVENT.items() if k != "email_age_days"}
    r = svc.score({"tenant": "bank2", "card_id": CARD}, no_email)
    assert r.live == service.score({"tenant": "bank2"}, SAMPLE_EVENT).live
    assert r.shadows == ()
    assert "feature store is unavailable" in r.shadow_errors["ensemble-v1"]
    outcome = svc.score_live([{"tenant": "bank2", "card_id": CARD}], [no_email])
    assert outcome.deferred is not None
    assert "unavailable" in outcome.deferred.run()[0].shadow_errors["ensemble-v1"]


def test_a_shadow_skips_only_the_events_it_lacks_a_value_for(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    doc["feature_store"]["features"]["email_age_days"] = "required"
    quickstart.write(doc)
    service = ScoringService.from_config(quickstart.config)
    no_email = {k: v for k, v in SAMPLE_EVENT.items() if k != "email_age_days"}
    intents = [{"tenant": "bank2", "card_id": c} for c in (CARD, "never-seen", CARD)]
    for results in (
        service.score_batch(intents, [no_email] * 3),
        service.score_live(intents, [no_email] * 3).deferred.run(),  # type: ignore[union-attr]
    ):
        assert [len(r.shadows) for r in results] == [1, 0, 1]
        assert "no value for card_id 'never-seen'" in results[1].shadow_errors["ensemble-v1"]
        assert results[0].shadow_errors == results[2].shadow_errors == {}
        assert results[0].shadows == results[2].shadows
        reference = service.score({"tenant": "bank2"}, SAMPLE_EVENT)
        assert results[0].shadows == reference.shadows
        assert all(r.live.predictor == "single-v1" for r in results)


def test_a_key_sent_as_a_feature_is_accepted_and_used(quickstart: Deployment) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cards = pq.read_table(quickstart.root / "features" / "cards.parquet")
    numbers = pa.array(range(cards.num_rows), type=pa.int64())
    pq.write_table(
        cards.append_column("card_num", numbers), quickstart.root / "features" / "n.parquet"
    )
    doc = quickstart.doc()
    doc["feature_store"].update(key=["card_num"], parquet="features/n.parquet")
    quickstart.write(doc)
    service = ScoringService.from_config(quickstart.config)
    r = service.score({"tenant": "bank1"}, {**LEAN, "card_num": 0})
    assert r.score == service.score({"tenant": "bank1"}, SAMPLE_EVENT).score


def test_reload_reuses_an_unchanged_store_and_closes_a_replaced_one(
    quickstart: Deployment,
) -> None:
    stores = StorePool()
    service = ScoringService.from_config(quickstart.config, pool=ModelPool(), stores=stores)
    first = service.snapshot.store
    assert first is not None
    service.reload()
    second = service.snapshot.store
    assert second is not None
    assert second.backend is first.backend  # same file, same digest: not loaded again
    (quickstart.root / "features" / "cards.parquet").write_bytes(
        (quickstart.root / "features" / "cards.parquet").read_bytes()  # same bytes: reused
    )
    service.reload()
    store = service.snapshot.store
    assert store is not None
    assert store.backend is first.backend
    doc = quickstart.doc()
    del doc["feature_store"]
    quickstart.write(doc)
    service.reload()
    assert service.snapshot.store is None
    assert len(stores) == 0
    assert service.score({"tenant": "bank1"}, SAMPLE_EVENT).score == pytest.approx(
        ScoringService.from_config(QUICKSTART / "muse.yaml")
        .score({"tenant": "bank1"}, SAMPLE_EVENT)
        .score
    )
    with pytest.raises(FeatureError, match="card_age_days"):
        service.score({"tenant": "bank1", "card_id": CARD}, LEAN)
    service.close()


def test_nan_never_reaches_a_model(service: ScoringService) -> None:
    """Events not needing a store feature carry NaN in its column; no model may see it."""
    seen: list[np.ndarray] = []
    snap = service.snapshot
    backends = dict(snap.backends)
    m1 = backends["m1"]

    class Spy:
        kind = m1.kind
        feature_names = m1.feature_names
        digest = m1.digest

        def predict(self, features: np.ndarray) -> np.ndarray:
            seen.append(features.copy())
            return m1.predict(features)

    spied = dataclasses.replace(snap, backends={**backends, "m1": Spy()})
    svc = ScoringService(spied, service.pool)
    # m1 (card age) runs for all events; bank1's ensemble (email age) only for event 0.
    svc.score_batch(
        [{"tenant": "bank1", "card_id": CARD}, {"tenant": "fintech3", "card_id": CARD}],
        [LEAN, LEAN],
    )
    assert seen
    assert all(np.isfinite(m).all() for m in seen)
