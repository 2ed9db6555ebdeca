"""A canary split over HTTP: two ``muse serve`` replicas agree on every card's arm, the
observed split is the weights', and growing the candidate by a reload keeps its cards."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds

from tests.e2e.conftest import StartMuse
from tests.e2e.support import Deployment, MuseProcess, event, features, metric_value, wait_until

CARDS = [f"card-{i:05d}" for i in range(2_000)]
TENANT = "bank9"  # no rule of its own: the catch-all, which is the split


def split_rule(candidate_weight: float) -> dict[str, Any]:
    return {
        "description": "canary: ensemble-v1 for a share of the other tenants' cards",
        "condition": {},
        "targets": [
            {"predictor": "single-v1", "weight": 100 - candidate_weight},
            {"predictor": "ensemble-v1", "weight": candidate_weight},
        ],
        "stickyBy": "card_id",
    }


def canary(root: Path, version: str, weight: float) -> Deployment:
    d = Deployment.copy_quickstart(root)
    with d.editing() as doc:
        doc["version"] = version
        doc["routing"]["scoringRules"][-1] = split_rule(weight)
    return d


def send(server: MuseProcess, cards: Iterable[str], prefix: str) -> None:
    """Every card once, in batches of 50, each event with its own id."""
    batch: list[dict[str, Any]] = []
    with server.client() as client:
        for i, card in enumerate(cards):
            batch.append(event(f"{prefix}-{i}", TENANT, features(i), card_id=card))
            if len(batch) == 50:
                answer = client.post("/v1/score", json={"events": batch})
                assert answer.status_code == 200, answer.text
                batch = []
        if batch:
            assert client.post("/v1/score", json={"events": batch}).status_code == 200


def arms(lake: Path) -> dict[str, dict[str, str]]:
    """config version → card → the arm its live row names."""
    table = ds.dataset(lake, format="parquet", partitioning="hive").to_table()
    out: dict[str, dict[str, str]] = {}
    for row in table.to_pylist():
        if row["role"] != "live" or row["tenant"] != TENANT:
            continue
        assert row["arm"] == row["predictor"], row
        card = dict(row["intent"])["card_id"]
        seen = out.setdefault(row["config_version"], {})
        assert seen.get(card, row["arm"]) == row["arm"], f"{card} changed arm within a version"
        seen[card] = row["arm"]
    return out


def within_sampling_error(share: float, weight: float, n: int) -> bool:
    return abs(share - weight) < 4 * float(np.sqrt(weight * (1 - weight) / n))


def test_replicas_agree_on_every_cards_arm_and_a_reload_keeps_the_candidates_cards(
    tmp_path: Path, start_muse: StartMuse
) -> None:
    a = canary(tmp_path / "a", "canary-10", 10)
    b = canary(tmp_path / "b", "canary-10", 10)
    server_a, server_b = start_muse(a), start_muse(b)

    send(server_a, CARDS, "a")
    send(server_b, reversed(CARDS), "b")  # another order, other event ids
    with server_a.client() as client:
        text = client.get("/metrics").text
    on_a = {
        arm: metric_value(text, "muse_split_events_total", tenant=TENANT, arm=arm)
        for arm in ("single-v1", "ensemble-v1")
    }
    assert on_a["single-v1"] + on_a["ensemble-v1"] == len(CARDS)

    # Grow the candidate to 20 % on replica a, by a reload.
    with a.editing() as doc:
        doc["version"] = "canary-20"
        doc["routing"]["scoringRules"][-1] = split_rule(20)
    server_a.signal(signal.SIGHUP)

    def reloaded() -> bool:
        with server_a.client() as client:
            answer = client.post("/v1/score", json=event("probe", TENANT, card_id=CARDS[0]))
        return bool(answer.headers.get("x-muse-config-version") == "canary-20")

    wait_until(reloaded, 20.0, "replica a to serve canary-20")
    send(server_a, CARDS, "a2")
    server_a.stop_gracefully()
    server_b.stop_gracefully()

    on_a_lake, on_b_lake = arms(a.lake), arms(b.lake)
    first, grown = on_a_lake["canary-10"], on_a_lake["canary-20"]
    other = on_b_lake["canary-10"]
    assert len(first) == len(other) == len(CARDS)
    assert first == other  # the same card, the same arm, on both replicas
    candidate = {c for c, arm in first.items() if arm == "ensemble-v1"}
    assert len(candidate) == on_a["ensemble-v1"]  # the metric counts what the lake holds
    assert within_sampling_error(len(candidate) / len(CARDS), 0.10, len(CARDS))
    grown_candidate = {c for c, arm in grown.items() if arm == "ensemble-v1"}
    assert candidate <= grown_candidate  # no card left the candidate when it grew
    assert within_sampling_error(len(grown_candidate) / len(CARDS), 0.20, len(CARDS))


def test_without_the_sticky_feature_an_event_is_split_by_its_id(
    tmp_path: Path, start_muse: StartMuse
) -> None:
    """A batch may send the sticky feature for some events only: those get the account's
    arm, the others their event id's (even split, within sampling error), and a client's
    retry of one event id gets the same arm."""
    d = canary(tmp_path / "d", "canary-acct", 50)
    with d.editing() as doc:
        doc["routing"]["scoringRules"][-1]["stickyBy"] = "account_id"
    server = start_muse(d)
    n = 400
    with server.client() as client:
        for lo in range(0, n, 50):
            batch = [
                event(
                    f"e{i}", TENANT, {**features(i), **({"account_id": 1000 + i} if i % 2 else {})}
                )
                for i in range(lo, lo + 50)
            ]
            answer = client.post("/v1/score", json={"events": batch})
            assert answer.status_code == 200, answer.text
        for _ in range(2):  # e0 again, without the feature: a retry
            assert client.post("/v1/score", json=event("e0", TENANT)).status_code == 200
    server.stop_gracefully()
    split = d.service().snapshot.router.splits[0]
    table = ds.dataset(d.lake, format="parquet", partitioning="hive").to_table().to_pylist()
    live = [r for r in table if r["role"] == "live"]
    assert len(live) == n + 2
    for row in live:
        i = int(row["event_id"][1:])
        key = str(1000 + i) if i % 2 else row["event_id"]
        assert row["arm"] == row["predictor"] == split.predictor_for(key)
    by_id = [r for r in live if int(r["event_id"][1:]) % 2 == 0]
    share = sum(r["arm"] == "ensemble-v1" for r in by_id) / len(by_id)
    assert within_sampling_error(share, 0.5, len(by_id))
