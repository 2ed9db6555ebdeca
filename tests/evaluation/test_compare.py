"""The model-CI gate: a stale candidate map fails it, a fresh one passes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muse.evaluation import relative_error_by_bin
from muse.evaluation.compare import ALLOW, assign_actions, compare_predictors, proven_error
from muse.schema import ModelCIConfig
from muse.transforms import QuantileMap, Reference

REF = Reference.beta(0.8, 9.0)
# Thresholds where the reference alerts on ~5 % (review) and ~0.5 % (block) of traffic.
THRESHOLDS = {"review": 0.25, "block": 0.42}


def traffic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw scores of a live and a candidate model on the same events, and labels.

    Both see the same latent risk plus their own noise; the candidate is on another scale
    (a different model), which is why it needs its own map.
    """
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(risk * 2.5 - 7)))).astype(np.int8)
    live_raw = 1 / (1 + np.exp(-(risk + 0.15 * rng.normal(size=n))))
    cand_raw = np.exp(0.7 * (risk + 0.15 * rng.normal(size=n))) / 20
    return live_raw, cand_raw, labels


@pytest.fixture(scope="module")
def scenario() -> dict[str, np.ndarray]:
    live_hist, cand_hist, _ = traffic(200_000, seed=1)  # the window maps were fitted on
    live_raw, cand_raw, labels = traffic(40_000, seed=2)  # the shadow window being compared
    live_map = QuantileMap.fit(live_hist, REF)
    fresh = QuantileMap.fit(cand_hist, REF)
    # Stale: fitted when the candidate model scored lower (e.g. before a retrain).
    stale = QuantileMap.fit(cand_hist * 0.8, REF)
    return {
        "live": live_map(live_raw),
        "fresh": fresh(cand_raw),
        "stale": stale(cand_raw),
        "p1.5": live_map(cand_raw),  # new model, old model's map (paper §3.2)
        "labels": labels,
    }


def test_a_fresh_map_passes_the_gate(scenario: dict[str, np.ndarray]) -> None:
    c = compare_predictors(
        scenario["live"],
        scenario["fresh"],
        reference=REF,
        thresholds=THRESHOLDS,
        labels=scenario["labels"],
    )
    assert c.passed, [(x.metric, x.candidate, x.note) for x in c.failed]
    assert {x.metric for x in c.checks} >= {
        "paired events",
        "action changes",
        "alert rate at review >= 0.25",
        "alert rate at block >= 0.42",
        "recall at 1.0% FPR",
        "PR-AUC",
    }


@pytest.mark.parametrize("candidate", ["stale", "p1.5"])
def test_a_stale_map_fails_on_alignment_and_alert_rates(
    scenario: dict[str, np.ndarray], candidate: str
) -> None:
    c = compare_predictors(
        scenario["live"], scenario[candidate], reference=REF, thresholds=THRESHOLDS
    )
    assert not c.passed
    failed = {x.metric for x in c.failed}
    assert "alignment to R: proven max |rel. error|" in failed
    assert "alert rate at block >= 0.42" in failed


def test_a_map_cannot_change_ranking(scenario: dict[str, np.ndarray]) -> None:
    # Fresh and stale maps of the same candidate are both monotone: identical recall/PR-AUC.
    kw = {"reference": REF, "thresholds": THRESHOLDS, "labels": scenario["labels"]}
    fresh = compare_predictors(scenario["live"], scenario["fresh"], **kw)  # type: ignore[arg-type]
    stale = compare_predictors(scenario["live"], scenario["stale"], **kw)  # type: ignore[arg-type]
    pick = {"recall at 1.0% FPR", "PR-AUC"}
    assert [x.candidate for x in fresh.checks if x.metric in pick] == [
        x.candidate for x in stale.checks if x.metric in pick
    ]


def test_a_worse_model_fails_on_ranking(scenario: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    noisy = np.clip(scenario["live"] + rng.normal(0, 0.05, scenario["live"].size), 0, 1)
    worse = QuantileMap.fit(noisy, REF)(noisy)
    c = compare_predictors(
        scenario["live"], worse, reference=REF, thresholds=THRESHOLDS, labels=scenario["labels"]
    )
    failed = {x.metric for x in c.failed}
    assert "recall at 1.0% FPR" in failed or "PR-AUC" in failed


def test_too_few_events_fail_the_gate() -> None:
    live = REF.ppf(np.random.default_rng(0).random(100))
    c = compare_predictors(live, live, reference=REF, thresholds=THRESHOLDS)
    assert [x.metric for x in c.failed] == ["paired events"]
    c = compare_predictors(
        live, live, reference=REF, thresholds=THRESHOLDS, limits=ModelCIConfig(min_events=50)
    )
    assert "paired events" not in {x.metric for x in c.failed}


def test_identical_scores_change_no_action() -> None:
    x = REF.ppf(np.random.default_rng(0).random(5_000))
    c = compare_predictors(x, x, reference=REF, thresholds=THRESHOLDS)
    row = next(r for r in c.checks if r.metric == "action changes")
    assert row.candidate == "0.00%"
    assert c.transitions == {}
    assert c.passed


def test_transitions_count_each_change() -> None:
    live = np.array([0.1, 0.3, 0.5, 0.5, 0.1])
    cand = np.array([0.3, 0.3, 0.3, 0.1, 0.1])
    c = compare_predictors(
        live,
        cand,
        reference=REF,
        thresholds=THRESHOLDS,
        limits=ModelCIConfig(min_events=1),
    )
    assert c.transitions == {("allow", "review"): 1, ("block", "review"): 1, ("block", "allow"): 1}
    row = next(r for r in c.checks if r.metric == "action changes")
    assert row.candidate == "60.00%"


def test_no_thresholds_is_reported_not_failed() -> None:
    x = REF.ppf(np.random.default_rng(0).random(2_000))
    c = compare_predictors(x, x, reference=REF, thresholds={})
    row = next(r for r in c.checks if r.metric == "action changes")
    assert row.status == "info"
    assert "thresholds" in row.note


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="pair up"):
        compare_predictors(np.zeros(3), np.zeros(4), reference=REF, thresholds={})
    with pytest.raises(ValueError, match="no paired events"):
        compare_predictors(np.zeros(0), np.zeros(0), reference=REF, thresholds={})
    with pytest.raises(ValueError, match="labels"):
        compare_predictors(
            np.zeros(3), np.zeros(3), reference=REF, thresholds={}, labels=np.zeros(2)
        )


def test_actions_worked_example() -> None:
    got = assign_actions([0.0, 0.2499, 0.25, 0.3, 0.42, 1.0], THRESHOLDS)
    assert got.tolist() == [ALLOW, ALLOW, "review", "review", "block", "block"]


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=50),
    st.lists(st.floats(0.01, 1), min_size=1, max_size=4, unique=True),
)
def test_actions_are_monotone_in_the_score(scores: list[float], cuts: list[float]) -> None:
    thresholds = {f"a{i}": t for i, t in enumerate(sorted(cuts))}
    order = [ALLOW, *thresholds]
    ranks = [order.index(a) for a in assign_actions(sorted(scores), thresholds)]
    assert ranks == sorted(ranks)


def test_proven_error_ignores_noise_and_sees_real_errors() -> None:
    rng = np.random.default_rng(0)
    aligned = relative_error_by_bin(REF.ppf(rng.random(2_000)), REF, 10)
    assert proven_error(aligned) <= 0.15
    shifted = relative_error_by_bin(np.clip(REF.ppf(rng.random(20_000)) * 1.5, 0, 1), REF, 10)
    assert proven_error(shifted) > 0.3
