"""The feature store in the ASGI app: readiness, reload, error mapping, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from muse.errors import FeatureStoreError
from muse.serving.app import MuseApp
from muse.serving.errors import error_body, from_exception
from muse.serving.metrics import Metrics
from tests.config_fixtures import Deployment
from tests.e2e.support import metric_value
from tests.redis_server import RedisServer


def use_redis(d: Deployment, server: RedisServer) -> None:
    doc = d.doc()
    doc["feature_store"] = {
        "key": "card_id",
        "redis": {"url": server.url, "key_prefix": "app:", "timeout_ms": 100},
        "features": {"card_age_days": "required"},
    }
    d.write(doc)


@pytest.fixture
def dead_redis(tmp_path: Path) -> RedisServer:
    return RedisServer(tmp_path / "dead")  # never started: its port refuses connections


def test_startup_fails_naming_the_store_when_redis_does_not_answer(
    quickstart: Deployment, dead_redis: RedisServer
) -> None:
    use_redis(quickstart, dead_redis)
    app = MuseApp(quickstart.config)
    with pytest.raises(
        FeatureStoreError, match=f"127.0.0.1:{dead_redis.port}/0 does not answer a PING"
    ):
        asyncio.run(app.startup())
    assert not app.ready
    assert app.service is None
    assert len(app.stores) == 0  # its client was closed


def test_a_reload_to_a_store_that_does_not_answer_is_rejected(
    quickstart: Deployment, dead_redis: RedisServer, redis_server: RedisServer
) -> None:
    async def run() -> None:
        app = MuseApp(quickstart.config)
        await app.startup()
        try:
            assert app.service is not None
            before = app.service.snapshot
            use_redis(quickstart, dead_redis)
            with pytest.raises(FeatureStoreError, match="PING"):
                await app.reload()
            assert app.service.snapshot is before  # the running config keeps serving
            use_redis(quickstart, redis_server)
            await app.reload()
            store = app.service.snapshot.store
            assert store is not None
            assert store.backend.kind == "redis"
            assert len(app.stores) == 1  # the Parquet table was let go
            text = (await asyncio.to_thread(app.metrics.render)).decode()
            assert metric_value(text, "muse_config_reloads_total", outcome="rejected") == 1
        finally:
            await app.shutdown()
        assert len(app.stores) == 0

    asyncio.run(run())


def test_an_outage_maps_to_503_naming_features_not_infrastructure() -> None:
    exc = FeatureStoreError(
        "redis redis://10.0.0.7:6379/0 failed (timeout)",
        store="redis redis://10.0.0.7:6379/0",
        features=("card_age_days", "email_age_days"),
    )
    err = from_exception(exc, batch=True)
    assert (err.status, err.code, err.field) == (
        503,
        "feature_store_unavailable",
        "features.card_age_days",
    )
    assert "['card_age_days', 'email_age_days']" in err.message
    assert b"10.0.0.7" not in error_body(err)


def test_store_metrics_are_exposed() -> None:
    m = Metrics()
    m.fetched("redis", 0.0004)
    m.fetched("redis", 0.002)
    m.failed("redis", "timeout")
    m.failed("redis", "circuit_open")
    m.failed("redis", "circuit_open")
    state = {"open": True}
    m.watch_circuit(lambda: state["open"])
    text = m.render().decode()
    assert metric_value(text, "muse_feature_store_duration_seconds_count", store="redis") == 2
    assert (
        metric_value(text, "muse_feature_store_duration_seconds_bucket", store="redis", le="0.0005")
        == 1
    )
    assert metric_value(text, "muse_feature_store_errors_total", reason="circuit_open") == 2
    assert metric_value(text, "muse_feature_store_circuit_open") == 1
    state["open"] = False
    assert metric_value(m.render().decode(), "muse_feature_store_circuit_open") == 0


def test_admin_config_describes_the_store(quickstart: Deployment) -> None:
    from muse.deployment import describe
    from muse.service import ScoringService

    snapshot = ScoringService.from_config(quickstart.config).snapshot
    doc = describe(snapshot)
    assert doc["feature_store"] == {
        "backend": f"parquet {(quickstart.root / 'features' / 'cards.parquet').resolve()}",
        "key": ["card_id"],
        "features": {"card_age_days": "required", "email_age_days": {"default": 0.0}},
    }
