"""Tests for muse.routing: the paper's intent-based routing (§2.5.1, Figure 2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.errors import ConfigError, IntentError, NoRouteError
from muse.routing import (
    DEFAULT_ATTRIBUTES,
    Route,
    Router,
    ScoringRule,
    ShadowRule,
    condition_key,
)

# Figure 2 of the paper, character for character (including the `{}# Catch-all` comment
# and the descriptions that wrap inside their quotes).
FIGURE_2 = """
routing:
  scoringRules:
    - description: "Custom DAG for bank1"
      condition:
        tenants: ["bank1"]
      targetPredictorName: "bank1-predictor-v1"
    - description: "Custom DAG for tenants in US or LATAM,
      using schema v1"
      condition:
        geographies: ["NAMER", "LATAM"]
        schemas: ["fraud_v1"]
      targetPredictorName: "america-predictor-v1"
    - description: "Default DAG for cold start clients"
      condition: {}# Catch-all
      targetPredictorName: "global-predictor-v3"
  shadowRules:
    - description: "Evaluate predictor v2 in shadow mode for
      bank1"
      condition:
        tenants: ["bank1"]
      targetPredictorNames: ["bank1-predictor-v2"]
"""

BANK1 = "Custom DAG for bank1"
AMERICA = "Custom DAG for tenants in US or LATAM, using schema v1"
DEFAULT = "Default DAG for cold start clients"


def figure_2_block() -> dict[str, Any]:
    block: dict[str, Any] = yaml.safe_load(FIGURE_2)["routing"]
    return block


@pytest.fixture
def figure_2() -> Router:
    return Router.from_config(figure_2_block())


def config_error(block: Mapping[str, Any], **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Router.from_config(block, **kwargs)
    return info.value


def issue_paths(error: ConfigError) -> list[str]:
    return [issue.path for issue in error.issues]


def rule(condition: dict[str, Any], target: str, **extra: Any) -> dict[str, Any]:
    return {"condition": condition, "targetPredictorName": target, **extra}


def shadow(condition: dict[str, Any], *targets: str) -> dict[str, Any]:
    return {"condition": condition, "targetPredictorNames": list(targets)}


# --- Figure 2 -------------------------------------------------------------------------


def test_figure_2_loads_verbatim(figure_2: Router) -> None:
    assert figure_2.attributes == DEFAULT_ATTRIBUTES
    assert figure_2.scoring_rules == (
        ScoringRule(BANK1, {"tenant": frozenset({"bank1"})}, "bank1-predictor-v1"),
        ScoringRule(
            AMERICA,
            {"geography": frozenset({"NAMER", "LATAM"}), "schema": frozenset({"fraud_v1"})},
            "america-predictor-v1",
        ),
        ScoringRule(DEFAULT, {}, "global-predictor-v3"),
    )
    assert figure_2.shadow_rules == (
        ShadowRule(
            "Evaluate predictor v2 in shadow mode for bank1",
            {"tenant": frozenset({"bank1"})},
            ("bank1-predictor-v2",),
        ),
    )
    assert figure_2.predictor_names() == {
        "bank1-predictor-v1",
        "bank1-predictor-v2",
        "america-predictor-v1",
        "global-predictor-v3",
    }


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        ({"tenant": "bank1"}, Route("bank1-predictor-v1", ("bank1-predictor-v2",), BANK1)),
        (
            {"tenant": "bank1", "geography": "NAMER", "schema": "fraud_v1"},
            Route("bank1-predictor-v1", ("bank1-predictor-v2",), BANK1),
        ),
        (
            {"tenant": "bank7", "geography": "NAMER", "schema": "fraud_v1"},
            Route("america-predictor-v1", (), AMERICA),
        ),
        (
            {"tenant": "bank7", "geography": "NAMER", "schema": "fraud_v2"},
            Route("global-predictor-v3", (), DEFAULT),
        ),
        ({"geography": "LATAM", "schema": "fraud_v1"}, Route("america-predictor-v1", (), AMERICA)),
        ({"geography": "EMEA", "schema": "fraud_v1"}, Route("global-predictor-v3", (), DEFAULT)),
        ({"geography": "NAMER"}, Route("global-predictor-v3", (), DEFAULT)),
        ({"tenant": "unknown-bank"}, Route("global-predictor-v3", (), DEFAULT)),
        ({"channel": "card"}, Route("global-predictor-v3", (), DEFAULT)),
        ({}, Route("global-predictor-v3", (), DEFAULT)),
    ],
)
def test_figure_2_routing_table(figure_2: Router, intent: dict[str, str], expected: Route) -> None:
    assert figure_2.route(intent) == expected


def test_figure_2_round_trips_through_to_config(figure_2: Router) -> None:
    config = figure_2.to_config()
    assert config["scoringRules"][1] == {
        "description": AMERICA,
        "condition": {"geographies": ["LATAM", "NAMER"], "schemas": ["fraud_v1"]},
        "targetPredictorName": "america-predictor-v1",
    }
    assert config["scoringRules"][2]["condition"] == {}
    assert config["shadowRules"][0]["targetPredictorNames"] == ["bank1-predictor-v2"]
    again = Router.from_config(yaml.safe_load(yaml.safe_dump(config)))
    assert again.scoring_rules == figure_2.scoring_rules
    assert again.shadow_rules == figure_2.shadow_rules


def test_routes_are_prebuilt_and_immutable(figure_2: Router) -> None:
    route = figure_2.route({"tenant": "bank1"})
    assert figure_2.route({"tenant": "bank1"}) is route  # no allocation on the hot path
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.live = "other"  # type: ignore[misc]


def test_rules_are_hashable_frozen_values(figure_2: Router) -> None:
    assert len(set(figure_2.scoring_rules)) == 3
    with pytest.raises(TypeError):
        figure_2.scoring_rules[0].condition["tenant"] = frozenset()  # type: ignore[index]


# --- scoring semantics ----------------------------------------------------------------


def test_first_match_wins() -> None:
    router = Router.from_config(
        {
            "scoringRules": [
                rule({"geographies": ["EU"]}, "first"),
                rule({"tenants": ["t1"], "geographies": ["EU"]}, "second"),
                rule({}, "catch-all"),
            ]
        }
    )
    assert router.route({"tenant": "t1", "geography": "EU"}).live == "first"
    assert router.route({"tenant": "t1", "geography": "US"}).live == "catch-all"


def test_empty_condition_matches_everything() -> None:
    router = Router.from_config({"scoringRules": [rule({}, "all")]})
    assert router.route({}).live == "all"
    intent = {"tenant": "t", "geography": "g", "schema": "s", "channel": "c"}
    assert router.route(intent) == Route("all", (), None)


def test_missing_attribute_does_not_match() -> None:
    router = Router.from_config(
        {
            "scoringRules": [
                rule({"tenants": ["t1"], "channels": ["card"]}, "card"),
                rule({"channels": ["web"]}, "web"),
                rule({}, "default"),
            ]
        }
    )
    assert router.route({"tenant": "t1"}).live == "default"
    assert router.route({"channel": "card"}).live == "default"
    assert router.route({"tenant": "t1", "channel": "card"}).live == "card"
    assert router.route({"tenant": "t1", "channel": "web"}).live == "web"


def test_no_matching_rule_raises_no_route_error_naming_the_intent() -> None:
    router = Router.from_config({"scoringRules": [rule({"tenants": ["bank1"]}, "p")]})
    intent = {"tenant": "bank2", "channel": "card"}
    with pytest.raises(NoRouteError) as info:
        router.route(intent)
    assert info.value.intent == intent
    assert "'bank2'" in str(info.value)
    assert "catch-all" in str(info.value)


def test_tenant_index_keeps_config_order_across_tenant_and_other_rules() -> None:
    router = Router.from_config(
        {
            "scoringRules": [
                rule({"tenants": ["a"], "schemas": ["v2"]}, "a-v2"),
                rule({"schemas": ["v2"]}, "any-v2"),
                rule({"tenants": ["a", "b"]}, "a-or-b"),
                rule({"geographies": ["EU"]}, "eu"),
                rule({"tenants": ["c"]}, "c"),
            ],
            "shadowRules": [shadow({"tenants": ["z"]}, "z-shadow")],
        }
    )
    assert router.route({"tenant": "a", "schema": "v2"}).live == "a-v2"
    assert router.route({"tenant": "b", "schema": "v2"}).live == "any-v2"
    assert router.route({"tenant": "a", "schema": "v1"}).live == "a-or-b"
    assert router.route({"tenant": "c", "geography": "EU"}).live == "eu"
    assert router.route({"tenant": "c", "geography": "US"}).live == "c"
    assert router.route({"tenant": "z", "geography": "EU"}) == Route("eu", ("z-shadow",), None)
    with pytest.raises(NoRouteError):
        router.route({"tenant": "z"})


# --- shadow semantics -----------------------------------------------------------------


def test_every_matching_shadow_rule_fires_deduplicated_in_order_without_live() -> None:
    router = Router.from_config(
        {
            "scoringRules": [rule({"tenants": ["bank1"]}, "live"), rule({}, "default")],
            "shadowRules": [
                shadow({"tenants": ["bank1"]}, "s2", "live", "s1"),
                shadow({"channels": ["card"]}, "s3", "s2"),
                shadow({}, "s1", "s4", "default"),
            ],
        }
    )
    card = {"tenant": "bank1", "channel": "card"}
    assert router.route(card) == Route("live", ("s2", "s1", "s3", "s4", "default"), None)
    assert router.route({"tenant": "bank1"}).shadows == ("s2", "s1", "s4", "default")
    assert router.route({"channel": "card"}) == Route("default", ("s3", "s2", "s1", "s4"), None)
    assert router.route({}).shadows == ("s1", "s4")


def test_shadow_rules_are_optional() -> None:
    router = Router.from_config({"scoringRules": [rule({}, "p")], "shadowRules": []})
    assert router.route({"tenant": "x"}) == Route("p", (), None)
    assert Router.from_config({"scoringRules": [rule({}, "p")]}).shadow_rules == ()


# --- config validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("tennants", "tenants"), ("tenant", "tenants"), ("geographys", "geographies")],
)
def test_misspelt_condition_key_fails_loudly_with_suggestion(key: str, suggestion: str) -> None:
    block = figure_2_block()
    block["scoringRules"][1]["condition"][key] = ["bank1"]
    error = config_error(block)
    assert issue_paths(error) == [f"scoringRules[1].condition.{key}"]
    message = error.issues[0].message
    assert f"did you mean {suggestion!r}?" in message
    assert "tenants, geographies, schemas, channels" in message


def test_unknown_condition_key_without_close_match_lists_valid_keys() -> None:
    error = config_error({"scoringRules": [rule({"colours": ["red"]}, "p")]})
    assert "did you mean" not in str(error)
    assert "valid keys" in str(error)


def test_extra_attributes_are_declared_with_plural_keys() -> None:
    attributes = (*DEFAULT_ATTRIBUTES, "merchant_category", "device_class")
    router = Router.from_config(
        {
            "scoringRules": [
                rule({"merchant_categories": ["5411"], "device_classes": ["mobile"]}, "grocery"),
                rule({}, "default"),
            ]
        },
        attributes=attributes,
    )
    assert router.attributes == attributes
    assert router.scoring_rules[0].condition == {
        "merchant_category": frozenset({"5411"}),
        "device_class": frozenset({"mobile"}),
    }
    intent = {"tenant": "t", "merchant_category": "5411", "device_class": "mobile"}
    assert router.route(intent).live == "grocery"
    # Undeclared by default: the same block is rejected without the extra attributes.
    error = config_error({"scoringRules": [rule({"merchant_categories": ["5411"]}, "p")]})
    assert issue_paths(error) == ["scoringRules[0].condition.merchant_categories"]


@pytest.mark.parametrize(
    ("attribute", "key"),
    [
        ("tenant", "tenants"),
        ("geography", "geographies"),
        ("schema", "schemas"),
        ("channel", "channels"),
        ("merchant_category", "merchant_categories"),
        ("device_class", "device_classes"),
        ("box", "boxes"),
        ("branch", "branches"),
        ("wish", "wishes"),
        ("day", "days"),
        ("key", "keys"),
    ],
)
def test_condition_key_is_the_english_plural(attribute: str, key: str) -> None:
    assert condition_key(attribute) == key


def test_bare_string_condition_value_explains_list_syntax() -> None:
    error = config_error({"scoringRules": [rule({"tenants": "bank1"}, "p")]})
    assert issue_paths(error) == ["scoringRules[0].condition.tenants"]
    assert "expected a list, e.g. tenants: [bank1]" in error.issues[0].message


def test_all_issues_of_a_block_are_reported_at_once() -> None:
    block = {
        "scoringRule": [],
        "scoringRules": [
            {"condition": {"tenants": "bank1"}, "targetPredictorName": "p1"},
            {"condition": {"schemas": []}, "targetPredictorName": "p2", "priority": 1},
            {"description": "no target", "condition": {"tennants": ["x"]}},
            {"condition": {"channels": [3, ""]}, "targetPredictorName": ""},
            {"targetPredictorName": "p5"},
            "not-a-rule",
        ],
        "shadowRules": [
            {"condition": {}, "targetPredictorNames": "s1"},
            {"condition": {}, "targetPredictorNames": []},
            {"description": 7, "condition": None},
        ],
    }
    error = config_error(block)
    assert issue_paths(error) == [
        "scoringRule",
        "scoringRules[5]",
        "scoringRules[0].condition.tenants",
        "scoringRules[1].priority",
        "scoringRules[1].condition.schemas",
        "scoringRules[2].condition.tennants",
        "scoringRules[2].targetPredictorName",
        "scoringRules[3].condition.channels[0]",
        "scoringRules[3].condition.channels[1]",
        "scoringRules[3].targetPredictorName",
        "scoringRules[4].condition",
        "shadowRules[0].targetPredictorNames",
        "shadowRules[1].targetPredictorNames",
        "shadowRules[2].description",
        "shadowRules[2].condition",
        "shadowRules[2].targetPredictorNames",
    ]
    text = str(error)
    assert "16 problem(s)" in text
    assert "did you mean 'scoringRules'?" in text
    assert "int 3" in text
    assert "condition: {}" in text


@pytest.mark.parametrize(
    "block",
    [{}, {"scoringRules": None}, {"scoringRules": []}, {"shadowRules": [shadow({}, "s")]}],
)
def test_scoring_rules_are_required_and_non_empty(block: dict[str, Any]) -> None:
    error = config_error(block)
    assert issue_paths(error) == ["scoringRules"]
    assert "catch-all" in error.issues[0].message


@pytest.mark.parametrize("block", [None, [], "scoringRules", {"scoringRules": {"a": 1}}])
def test_malformed_block_shapes_are_config_errors(block: Any) -> None:
    error = config_error(block)
    assert len(error.issues) == 1
    assert repr(block) in error.issues[0].message or "got" in error.issues[0].message


def test_target_key_mixups_get_a_specific_hint() -> None:
    error = config_error(
        {
            "scoringRules": [{"condition": {}, "targetPredictorNames": ["a", "b"]}],
            "shadowRules": [{"condition": {}, "targetPredictorName": "s"}],
        }
    )
    assert issue_paths(error) == [
        "scoringRules[0].targetPredictorNames",
        "shadowRules[0].targetPredictorName",
    ]
    assert "one live predictor per event" in error.issues[0].message
    assert "targetPredictorNames: [" in error.issues[1].message


def test_list_as_scoring_target_is_rejected() -> None:
    error = config_error({"scoringRules": [{"condition": {}, "targetPredictorName": ["a"]}]})
    assert issue_paths(error) == ["scoringRules[0].targetPredictorName"]
    assert "shadow rule" in error.issues[0].message


def test_config_error_paths_can_be_prefixed_by_the_caller() -> None:
    error = config_error({"scoringRules": [rule({"tennants": ["x"]}, "p")]})
    assert issue_paths(error.prefixed("routing")) == ["routing.scoringRules[0].condition.tennants"]


def test_duplicate_values_and_targets_are_collapsed() -> None:
    router = Router.from_config(
        {
            "scoringRules": [rule({"tenants": ["a", "a"]}, "p"), rule({}, "d")],
            "shadowRules": [shadow({}, "s", "s", "t")],
        }
    )
    assert router.scoring_rules[0].condition == {"tenant": frozenset({"a"})}
    assert router.shadow_rules[0].targets == ("s", "t")


@pytest.mark.parametrize(
    "attributes",
    [("tenant", "tenant"), ("tenant", ""), (), ("tenant", "bad name"), ("box", "boxe")],
)
def test_invalid_attribute_declarations_are_config_errors(attributes: tuple[str, ...]) -> None:
    config_error({"scoringRules": [rule({}, "p")]}, attributes=attributes)


def test_attributes_given_as_a_bare_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\('tenant',\)"):
        Router.from_config({"scoringRules": [rule({}, "p")]}, attributes="tenant")


def test_direct_construction_validates_rules_against_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        Router(
            [ScoringRule(None, {"region": frozenset({"eu"})}, "p")],
            [ShadowRule(None, {}, ())],
        )
    assert issue_paths(info.value) == ["scoringRules[0].condition.regions", "shadowRules[0]"]
    with pytest.raises(ConfigError):
        Router([])


def test_rule_objects_reject_bare_strings_that_would_split_into_letters() -> None:
    with pytest.raises(TypeError, match="bare string 'bank1'"):
        ScoringRule(None, {"tenant": "bank1"}, "p")  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="bare string 's1'"):
        ShadowRule(None, {}, "s1")  # type: ignore[arg-type]


# --- intent validation ----------------------------------------------------------------


def test_undeclared_intent_attribute_is_an_intent_error(figure_2: Router) -> None:
    with pytest.raises(IntentError) as info:
        figure_2.route({"tenants": "bank1"})
    assert info.value.attribute == "tenants"
    message = str(info.value)
    assert "'tenants'" in message
    assert "did you mean 'tenant'?" in message
    assert "tenant, geography, schema, channel" in message


def test_non_string_intent_value_is_an_intent_error(figure_2: Router) -> None:
    with pytest.raises(IntentError) as info:
        figure_2.route({"tenant": "bank1", "schema": 1})  # type: ignore[dict-item]
    assert info.value.attribute == "schema"
    assert "int 1" in str(info.value)


# --- properties: the index equals a naive linear scan ---------------------------------

VALUES = {
    "tenant": ["t0", "t1", "t2", "t3", "t4"],
    "geography": ["g0", "g1"],
    "schema": ["s0", "s1"],
    "channel": ["c0", "c1"],
}
PREDICTORS = ["p0", "p1", "p2", "p3", "p4"]

conditions = st.dictionaries(
    st.sampled_from(DEFAULT_ATTRIBUTES), st.just(None), max_size=3
).flatmap(
    lambda keys: st.fixed_dictionaries(
        {
            condition_key(attr): st.lists(
                st.sampled_from(VALUES[attr]), min_size=1, max_size=3, unique=True
            )
            for attr in keys
        }
    )
)
scoring_rules = st.lists(
    st.builds(rule, conditions, st.sampled_from(PREDICTORS)), min_size=1, max_size=8
)
shadow_rules = st.lists(
    st.builds(
        lambda condition, targets: shadow(condition, *targets),
        conditions,
        st.lists(st.sampled_from(PREDICTORS), min_size=1, max_size=3),
    ),
    max_size=5,
)
# Each attribute optional; "x" is a value no rule names.
intents = st.fixed_dictionaries(
    {}, optional={attr: st.sampled_from([*VALUES[attr], "x"]) for attr in DEFAULT_ATTRIBUTES}
)


def reference_route(block: Mapping[str, Any], intent: Mapping[str, str]) -> Route | None:
    """Linear first-match scan, straight from the paper's description."""
    plural = {condition_key(a): a for a in DEFAULT_ATTRIBUTES}

    def matches(condition: Mapping[str, list[str]]) -> bool:
        return all(intent.get(plural[key]) in values for key, values in condition.items())

    live = next((r for r in block["scoringRules"] if matches(r["condition"])), None)
    if live is None:
        return None
    shadows: list[str] = []
    for r in block.get("shadowRules", []):
        if matches(r["condition"]):
            for target in r["targetPredictorNames"]:
                if target != live["targetPredictorName"] and target not in shadows:
                    shadows.append(target)
    return Route(live["targetPredictorName"], tuple(shadows), live.get("description"))


@settings(max_examples=300, deadline=None)
@given(scoring_rules, shadow_rules, st.lists(intents, min_size=1, max_size=10))
def test_indexed_router_equals_linear_reference(
    scoring: list[dict[str, Any]], shadows: list[dict[str, Any]], cases: list[dict[str, str]]
) -> None:
    block = {"scoringRules": scoring, "shadowRules": shadows}
    router = Router.from_config(block)
    for intent in cases:
        expected = reference_route(block, intent)
        if expected is None:
            with pytest.raises(NoRouteError):
                router.route(intent)
            continue
        got = router.route(intent)
        assert got == expected
        assert got.live not in got.shadows
        assert len(set(got.shadows)) == len(got.shadows)
        rules_match = [r.matches(intent) for r in router.scoring_rules]
        assert router.scoring_rules[rules_match.index(True)].target == got.live


@settings(max_examples=100, deadline=None)
@given(scoring_rules, shadow_rules)
def test_to_config_round_trips(
    scoring: list[dict[str, Any]], shadows: list[dict[str, Any]]
) -> None:
    router = Router.from_config({"scoringRules": scoring, "shadowRules": shadows})
    again = Router.from_config(router.to_config())
    assert again.scoring_rules == router.scoring_rules
    assert again.shadow_rules == router.shadow_rules
    assert again.predictor_names() == router.predictor_names()
