"""Feature-store enrichment over real HTTP: ``muse serve`` against a real redis-server.

The Redis is the test's own (free port, no persistence), killed and restarted by PID to
show what clients see: a request omitting store features gets the score of one that sends
them; a required feature the store lacks is a 422 naming it; with Redis dead, affected
events fail fast with a 503 naming the feature store while events that carry their
features keep scoring; when Redis is back, the breaker's probe closes the circuit and
lookups work again — without a reload. The embedded Parquet store of the quickstart is
checked on the shared read-only server.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Running, StartMuse
from tests.e2e.support import SAMPLE, Deployment, event, metric_value, wait_until
from tests.redis_server import RedisServer, hset_rows, wait_gone

CARD = "card-00000"  # the sample event's card in the quickstart's table
STORE_FEATURES = ("card_age_days", "email_age_days")
LEAN = {k: v for k, v in SAMPLE.items() if k not in STORE_FEATURES}
PREFIX = "card:"


def lean_event(
    event_id: str, tenant: str, card: str, feats: dict[str, float] | None = None
) -> dict[str, Any]:
    return event(event_id, tenant, LEAN if feats is None else feats, card_id=card)


def load_cards(server: RedisServer) -> None:
    hset_rows(
        server,
        PREFIX,
        {
            CARD: {f: SAMPLE[f] for f in STORE_FEATURES},
            "card-no-email": {"card_age_days": 12},
        },
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def use_redis(d: Deployment, server: RedisServer) -> None:
    with d.editing() as doc:
        doc["feature_store"] = {
            "key": "card_id",
            "redis": {
                "url": server.url,
                "key_prefix": PREFIX,
                "timeout_ms": 100,
                "circuit_breaker": {"failure_threshold": 2, "reset_timeout_s": 0.3},
            },
            "features": {"card_age_days": "required", "email_age_days": {"default": 0}},
        }


def score(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/score", json=body)


def test_redis_enrichment_outage_and_recovery_without_a_reload(
    deployment: Deployment, redis_server: RedisServer, start_muse: StartMuse
) -> None:
    load_cards(redis_server)
    use_redis(deployment, redis_server)
    server = start_muse(deployment)
    with server.client() as client:
        full = score(client, event("full", "bank1"))
        assert full.status_code == 200, full.text
        expected = full.json()["score"]

        # 1. Omitted store features, named card: the same score, single and batched.
        lean = score(client, lean_event("lean", "bank1", CARD))
        assert lean.status_code == 200, lean.text
        assert lean.json() == {"event_id": "lean", "score": expected}
        batch = score(
            client,
            {
                "events": [
                    lean_event(f"b{i}", t, CARD) for i, t in enumerate(("bank1", "bank2", "bank1"))
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        assert [r["score"] for r in batch.json()][0::2] == [expected, expected]

        # 2. A card the store does not know: the required feature is named, 422.
        unknown = score(client, lean_event("u", "bank1", "card-unknown"))
        assert unknown.status_code == 422
        error = unknown.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_features", "features.card_age_days")
        assert "card-unknown" in error["message"]
        # …while a missing email age takes its default.
        no_email = {**LEAN, "card_age_days": SAMPLE["card_age_days"]}
        defaulted = score(client, lean_event("d", "bank1", "card-no-email", no_email))
        assert defaulted.status_code == 200, defaulted.text

        # 3. Redis dies: affected events fail fast with a 503; full events keep scoring.
        redis_server.kill()
        wait_gone(redis_server)
        failed = [score(client, lean_event(f"x{i}", "bank1", CARD)) for i in range(3)]
        assert {r.status_code for r in failed} == {503}
        error = failed[-1].json()["error"]
        assert error["code"] == "feature_store_unavailable"
        assert error["field"] == "features.card_age_days"
        assert "feature store" in error["message"]
        assert "127.0.0.1" not in error["message"]  # infrastructure stays server-side
        took = []
        for i in range(20):
            started = time.perf_counter()
            assert score(client, lean_event(f"y{i}", "bank1", CARD)).status_code == 503
            took.append(time.perf_counter() - started)
        assert statistics.median(took) < 0.05  # the breaker: no 100 ms timeout per request
        ok = score(client, event("still-full", "bank1", SAMPLE, card_id=CARD))
        assert ok.status_code == 200
        assert ok.json()["score"] == expected
        # bank2's live predictor has its features; only its shadow needed the store.
        shadowed = score(client, lean_event("s", "bank2", CARD, no_email))
        assert shadowed.status_code == 200, shadowed.text

        metrics = client.get("/metrics").text
        assert (
            metric_value(
                metrics, "muse_feature_store_errors_total", store="redis", reason="unavailable"
            )
            >= 2
        )
        assert (
            metric_value(
                metrics, "muse_feature_store_errors_total", store="redis", reason="circuit_open"
            )
            >= 1
        )
        assert (
            metric_value(metrics, "muse_feature_store_duration_seconds_count", store="redis") >= 4
        )
        assert client.get("/health/ready").status_code == 200  # the service stays in rotation

        # 4. Redis is back (empty: it keeps nothing on disk); no reload, no restart of muse.
        redis_server.start()
        load_cards(redis_server)

        def recovered() -> bool:
            r = score(client, lean_event("r", "bank1", CARD))
            return r.status_code == 200 and r.json()["score"] == expected

        wait_until(recovered, 10.0, "lookups to work again after Redis restarted", interval=0.1)
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "muse_feature_store_circuit_open") == 0
        assert metric_value(metrics, "muse_config_reloads_total") == 0
    server.stop_gracefully()


def test_the_quickstart_serves_from_its_embedded_table(open_server: Running) -> None:
    with open_server.server.client() as client:
        full = score(client, event("full", "bank1")).json()["score"]
        lean = score(client, lean_event("lean", "bank1", CARD))
        assert lean.status_code == 200
        assert lean.json()["score"] == full
        missing = score(client, event("m", "bank1", LEAN))  # no card, no card features
        assert missing.status_code == 422
        assert missing.json()["error"]["field"] == "features.card_age_days"
        assert "intent.card_id" in missing.json()["error"]["message"]


def test_a_batch_may_mix_events_that_send_store_features_and_events_that_leave_them(
    open_server: Running,
) -> None:
    """Found by fuzzing: each event of a batch is valid on its own — one names its card and
    leaves the card features to the store, one sends them, one sends one of them — so the
    batch is too. Each scores exactly as it does alone; an event in it that neither sends
    the features nor names a card is refused by its index."""
    lean = lean_event("lean", "bank1", CARD)
    full = event("full", "bank1")
    half = lean_event("half", "bank1", "card-00002", {**LEAN, "card_age_days": 1.0})
    with open_server.server.client() as client:
        alone = [score(client, e).json()["score"] for e in (lean, full, half)]
        mixed = score(client, {"events": [lean, full, half]})
        assert mixed.status_code == 200, mixed.text
        assert [s["score"] for s in mixed.json()] == alone
        bad = score(client, {"events": [lean, event("nocard", "bank1", LEAN)]})
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert (error["index"], error["field"]) == (1, "features.card_age_days")
        assert "intent.card_id" in error["message"]
        # Features that no store provides must still match across the batch.
        odd = score(client, {"events": [full, event("odd", "bank1", {**SAMPLE, "extra": 1.0})]})
        assert odd.status_code == 422
        assert odd.json()["error"]["index"] == 1
