"""Canary splits wired in: the routing block's ``targets``, the scoring pass's arms, the
lake's ``arm`` column (issue: canary splits sticky by entity)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from muse.errors import ConfigError
from muse.routing import Router
from muse.scorelog import rows_to_table
from muse.scorelog.results import result_rows
from muse.service import ScoringService
from muse.splits import Split, bucket_of, default_salt, key_text
from tests.config_fixtures import SAMPLE_EVENT, Deployment

SPLIT_RULE: dict[str, Any] = {
    "description": "canary: the ensemble takes 10 % of the other tenants' cards",
    "condition": {},
    "targets": [
        {"predictor": "single-v1", "weight": 90},
        {"predictor": "ensemble-v1", "weight": 10},
    ],
    "stickyBy": "card_id",
}


def routing(rule: dict[str, Any]) -> dict[str, Any]:
    return {"scoringRules": [rule]}


def issues(block: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        Router.from_config(block, attributes=("tenant", "card_id"))
    return {i.path: i.message for i in info.value.issues}


# -- the routing block --------------------------------------------------------------------


def test_a_split_rule_loads_and_round_trips() -> None:
    router = Router.from_config(routing(SPLIT_RULE), attributes=("tenant", "card_id"))
    (split,) = router.splits
    assert [(a.predictor, a.weight) for a in split.arms] == [
        ("single-v1", 90.0),
        ("ensemble-v1", 10.0),
    ]
    assert split.sticky_by == "card_id"
    assert split.salt == default_salt(split.arms) == "ensemble-v1+single-v1"
    assert router.predictor_names() == {"single-v1", "ensemble-v1"}
    assert router.scoring_rules[0].predictors == ("single-v1", "ensemble-v1")
    # card_id is an intent attribute: no request feature to allow
    assert router.sticky_keys() == frozenset()
    again = Router.from_config(router.to_config(), attributes=("tenant", "card_id"))
    assert again.scoring_rules == router.scoring_rules
    route = router.route({"tenant": "bank9"})
    assert route.split == split
    assert route.predictors == ("single-v1", "ensemble-v1")
    assert route.live_for("card-1") == split.predictor_for("card-1")


def test_the_salt_is_kept_when_weights_change_and_can_be_named() -> None:
    grown = {
        **SPLIT_RULE,
        "targets": [
            {**SPLIT_RULE["targets"][0], "weight": 80},
            {**SPLIT_RULE["targets"][1], "weight": 20},
        ],
    }
    a = Router.from_config(routing(SPLIT_RULE)).splits[0]
    b = Router.from_config(routing(grown)).splits[0]
    assert a.salt == b.salt
    named = Router.from_config(routing({**SPLIT_RULE, "salt": "canary-2026-12"})).splits[0]
    assert named.salt == "canary-2026-12"


def test_a_sticky_feature_is_a_key_a_request_may_carry() -> None:
    router = Router.from_config(routing({**SPLIT_RULE, "stickyBy": "account_id"}))
    assert router.sticky_keys() == {"account_id"}


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"targetPredictorName": "single-v1"}, "scoringRules[0].targets", "not both"),
        ({"targets": [{"predictor": "a", "weight": 1}]}, "scoringRules[0].targets", "at least two"),
        ({"targets": "single-v1"}, "scoringRules[0].targets", "at least two"),
        ({"targets": ["a", "b"]}, "scoringRules[0].targets[0]", "expected an arm"),
        (
            {"targets": [{"predictor": "a"}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].weight",
            "missing",
        ),
        (
            {"targets": [{"predictor": "a", "weight": -1}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].weight",
            ">= 0",
        ),
        (
            {"targets": [{"predictor": "a", "weight": True}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].weight",
            "finite number",
        ),
        (
            {"targets": [{"predictor": "a", "weight": 10**400}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].weight",
            "finite number",
        ),
        (
            {"targets": [{"predictor": "a", "weight": 1e300}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].weight",
            "finite number",
        ),
        (
            {"targets": [{"predictor": "a", "weight": "10%"}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].weight",
            "finite number",
        ),
        (
            {"targets": [{"predictor": "a", "weight": 1}, {"predictor": "a", "weight": 1}]},
            "scoringRules[0].targets[1].predictor",
            "already an arm",
        ),
        (
            {"targets": [{"predictor": "a", "weight": 0}, {"predictor": "b", "weight": 0}]},
            "scoringRules[0].targets",
            "every weight is 0",
        ),
        (
            {
                "targets": [
                    {"predictor": "a", "weight": 1, "wieght": 2},
                    {"predictor": "b", "weight": 1},
                ]
            },
            "scoringRules[0].targets[0].wieght",
            "did you mean 'weight'",
        ),
        (
            {"targets": [{"weight": 1}, {"predictor": "b", "weight": 1}]},
            "scoringRules[0].targets[0].predictor",
            "missing",
        ),
        ({"stickyBy": ["card_id"]}, "scoringRules[0].stickyBy", "intent attribute or a request"),
        ({"salt": 7}, "scoringRules[0].salt", "quote it"),
    ],
)
def test_every_split_mistake_is_reported_by_path(
    change: dict[str, Any], path: str, words: str
) -> None:
    found = issues(routing({**SPLIT_RULE, **change}))
    assert path in found, found
    assert words in found[path]


def test_sticky_by_and_salt_need_targets() -> None:
    rule = {"condition": {}, "targetPredictorName": "single-v1", "stickyBy": "card_id", "salt": "x"}
    found = issues(routing(rule))
    assert "belongs to a split" in found["scoringRules[0].stickyBy"]
    assert "belongs to a split" in found["scoringRules[0].salt"]


def test_the_deployment_config_checks_the_arms(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "d")
    doc = d.doc()
    doc["routing"]["scoringRules"][1] = {
        **SPLIT_RULE,
        "targets": [
            {"predictor": "single-v1", "weight": 90},
            {"predictor": "ensembel-v1", "weight": 10},
        ],
    }
    d.write(doc)
    found = d.issues()
    assert (
        "unknown predictor 'ensembel-v1'"
        in found["routing.scoringRules[1].targets[1].predictor"][0]
    )


def test_the_arms_of_a_split_share_one_reference(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "d")
    doc = d.doc()
    doc["references"]["fraud-v2"] = {"beta": {"a": 1.0, "b": 5.0}}
    doc["predictors"]["ensemble-v1"]["reference"] = "fraud-v2"
    doc["routing"]["scoringRules"][1] = SPLIT_RULE
    d.write(doc)
    found = d.issues()
    assert any("same reference" in m for m in found.get("routing.scoringRules[1].targets", [])), (
        found
    )


# -- scoring ------------------------------------------------------------------------------


def split_deployment(tmp_path: Path, rule: dict[str, Any] = SPLIT_RULE) -> Deployment:
    d = Deployment.copy_quickstart(tmp_path / "split")
    doc = d.doc()
    doc["routing"]["scoringRules"][1] = rule
    d.write(doc)
    return d


def score_cards(service: ScoringService, cards: list[str], tenant: str = "bank9") -> list[str]:
    intents = [{"tenant": tenant, "card_id": c} for c in cards]
    rows = [SAMPLE_EVENT] * len(cards)
    ids = [f"e-{i}" for i in range(len(cards))]
    return [r.live.predictor for r in service.score_batch(intents, rows, event_ids=ids)]


def test_each_card_gets_its_arm_on_every_service_and_the_shares_follow_the_weights(
    tmp_path: Path,
) -> None:
    d = split_deployment(tmp_path)
    cards = [f"card-{i}" for i in range(4000)]
    one = ScoringService.from_config(d.config)
    two = ScoringService.from_config(d.config)  # another replica: its own process state
    try:
        first = score_cards(one, cards)
        assert score_cards(two, list(reversed(cards))) == list(reversed(first))
        assert score_cards(one, cards) == first  # and again, in another batch
        share = first.count("ensemble-v1") / len(cards)
        # 10 %: a binomial's 4 standard deviations over 4,000 cards is ±1.9 points
        assert abs(share - 0.10) < 4 * np.sqrt(0.1 * 0.9 / len(cards))
        split = one.snapshot.router.splits[0]
        assert first == [split.predictor_for(c) for c in cards]
    finally:
        one.close()
        two.close()


def test_an_arm_is_the_live_result_and_never_its_own_shadow(tmp_path: Path) -> None:
    d = split_deployment(tmp_path)
    doc = d.doc()  # mirror the other tenants to the ensemble too: a paired view inside the split
    doc["routing"]["shadowRules"][0]["condition"] = {}
    d.write(doc)
    service = ScoringService.from_config(d.config)
    try:
        cards = [f"c{i}" for i in range(300)]
        results = service.score_batch(
            [{"tenant": "bank9", "card_id": c} for c in cards], [SAMPLE_EVENT] * len(cards)
        )
        arms = {r.arm for r in results}
        assert arms == {"single-v1", "ensemble-v1"}
        for r in results:
            assert r.arm == r.live.predictor
            assert r.live.predictor not in [s.predictor for s in r.shadows]
            if r.arm == "single-v1":
                assert [s.predictor for s in r.shadows] == ["ensemble-v1"]
        # bank1 keeps its own rule: no split, no arm
        plain = service.score({"tenant": "bank1"}, SAMPLE_EVENT, event_id="x")
        assert plain.arm is None
        assert plain.live.predictor == "ensemble-v1"
    finally:
        service.close()


def test_growing_the_candidate_keeps_its_cards(tmp_path: Path) -> None:
    d = split_deployment(tmp_path)
    service = ScoringService.from_config(d.config)
    try:
        cards = [f"card-{i}" for i in range(3000)]
        before = score_cards(service, cards)
        grown = {
            **SPLIT_RULE,
            "targets": [
                {"predictor": "single-v1", "weight": 80},
                {"predictor": "ensemble-v1", "weight": 20},
            ],
        }
        doc = d.doc()
        doc["routing"]["scoringRules"][1] = grown
        d.write(doc)
        service.reload()
        after = score_cards(service, cards)
        kept = [a for b, a in zip(before, after, strict=True) if b == "ensemble-v1"]
        assert kept
        assert set(kept) == {"ensemble-v1"}
        assert after.count("ensemble-v1") > before.count("ensemble-v1")
    finally:
        service.close()


def test_a_sticky_request_feature_then_the_event_id(tmp_path: Path) -> None:
    d = split_deployment(tmp_path, {**SPLIT_RULE, "stickyBy": "account_id"})
    service = ScoringService.from_config(d.config)
    try:
        assert "account_id" in service.snapshot.known_features
        split = service.snapshot.router.splits[0]
        accounts = [float(a) for a in range(500)]
        rows = [{**SAMPLE_EVENT, "account_id": a} for a in accounts]
        intents = [{"tenant": "bank9"}] * len(rows)
        ids = [f"e{i}" for i in range(len(rows))]
        got = [r.live.predictor for r in service.score_batch(intents, rows, event_ids=ids)]
        # 42.0, 42 and "42" are one account
        assert got == [split.predictor_for(str(int(a))) for a in accounts]
        # without the feature: by event id
        bare = service.score_batch(intents, [SAMPLE_EVENT] * len(rows), event_ids=ids)
        assert [r.live.predictor for r in bare] == [split.predictor_for(i) for i in ids]
    finally:
        service.close()


def test_the_lake_records_the_arm_on_live_and_shadow_rows(tmp_path: Path) -> None:
    d = split_deployment(tmp_path)
    doc = d.doc()
    doc["routing"]["shadowRules"][0]["condition"] = {}
    d.write(doc)
    service = ScoringService.from_config(d.config)
    try:
        results = service.score_batch(
            [{"tenant": "bank9", "card_id": f"c{i}"} for i in range(50)] + [{"tenant": "bank1"}],
            [SAMPLE_EVENT] * 51,
            event_ids=[f"e{i}" for i in range(51)],
        )
    finally:
        service.close()
    now = datetime.now(UTC)
    table = rows_to_table([row for r in results for row in result_rows(r, now)])
    rows = table.to_pylist()
    for row in rows:
        if row["tenant"] == "bank1":
            assert row["arm"] is None
        else:
            live = next(x for x in rows if x["event_id"] == row["event_id"] and x["role"] == "live")
            assert row["arm"] == live["predictor"]
    assert table.schema.metadata[b"muse.lake_format"] == b"muse/score-lake@2"


def test_key_text_reads_one_entity_alike() -> None:
    assert key_text(42.0) == key_text(42) == key_text("42") == "42"
    assert key_text(float("nan")) is None
    assert key_text("") is None
    assert key_text(None) is None
    assert key_text(0.5) == "0.5"
    assert bucket_of("42", "s") == bucket_of(str(key_text(np.float64(42.0))), "s")


def test_split_objects_compare_by_value() -> None:
    a = Router.from_config(routing(SPLIT_RULE)).splits[0]
    assert isinstance(a, Split)
    assert hash(a) == hash(Router.from_config(routing(SPLIT_RULE)).splits[0])


# -- the command line ---------------------------------------------------------------------


def test_muse_route_shows_the_arms_and_the_arm_of_a_key(tmp_path: Path) -> None:
    import json

    from tests.cli_support import invoke

    d = split_deployment(tmp_path)
    split = ScoringService.from_config(d.config).snapshot.router.splits[0]
    r = invoke("route", str(d.config), "--intent", "tenant=bank9")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["live"] is None  # it depends on the event
    assert [a["predictor"] for a in doc["split"]["arms"]] == ["single-v1", "ensemble-v1"]
    assert [a["share"] for a in doc["split"]["arms"]] == [0.9, 0.1]
    assert doc["split"]["stickyBy"] == "card_id"
    for card in ("card-1", "card-2", "card-3"):
        by_key = json.loads(
            invoke("route", str(d.config), "-i", "tenant=bank9", "--key", card).output
        )
        by_intent = json.loads(
            invoke("route", str(d.config), "-i", "tenant=bank9", "-i", f"card_id={card}").output
        )
        assert by_key["live"] == by_intent["live"] == split.predictor_for(card)
    plain = json.loads(invoke("route", str(d.config), "-i", "tenant=bank1").output)
    assert plain["live"] == "ensemble-v1"
    assert "split" not in plain


def test_muse_score_names_the_arm(tmp_path: Path) -> None:
    import json

    from tests.cli_support import invoke

    d = split_deployment(tmp_path)
    r = invoke(
        "score", str(d.config), "-i", "tenant=bank9", "-i", "card_id=card-7",
        "--features", json.dumps(SAMPLE_EVENT),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["arm"] == doc["live"]["predictor"]
