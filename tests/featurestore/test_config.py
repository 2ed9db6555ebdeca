"""The ``feature_store`` section: resolved into a spec, every mistake reported at its YAML path."""

from __future__ import annotations

from typing import Any

import pytest

from muse.config import load_config
from muse.errors import ConfigError
from muse.featurestore import EntityKey, ParquetSource, RedisSource, StoreFeature
from muse.service import ScoringService
from tests.config_fixtures import Deployment
from tests.featurestore.fakes import write_table


def edit(d: Deployment, **section: Any) -> None:
    doc = d.doc()
    doc["feature_store"] = {**doc["feature_store"], **section}
    d.write(doc)


def test_the_quickstart_section_is_resolved(quickstart: Deployment) -> None:
    spec = quickstart.load().feature_store
    assert spec is not None
    assert spec.keys == (EntityKey("card_id", from_intent=True),)
    assert spec.features == (StoreFeature("card_age_days"), StoreFeature("email_age_days", 0.0))
    assert isinstance(spec.source, ParquetSource)
    assert spec.source.path == (quickstart.root / "features" / "cards.parquet").resolve()
    assert spec.source.digest.startswith("sha256:")


def test_a_redis_section_with_its_breaker(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    doc["feature_store"] = {
        "key": ["tenant", "card_num"],
        "redis": {
            "url": "redis://127.0.0.1:6380/2",
            "key_prefix": "card:",
            "timeout_ms": 15,
            "circuit_breaker": {"failure_threshold": 2, "reset_timeout_s": 0.5},
        },
        "features": {"card_age_days": {"default": 1.5}},
    }
    quickstart.write(doc)
    spec = quickstart.load().feature_store
    assert spec is not None
    assert spec.keys == (EntityKey("tenant", True), EntityKey("card_num", False))
    assert spec.source == RedisSource(
        url="redis://127.0.0.1:6380/2",
        key_prefix="card:",
        timeout_s=0.015,
        failure_threshold=2,
        reset_timeout_s=0.5,
    )
    assert spec.features == (StoreFeature("card_age_days", 1.5),)


def test_changing_the_table_changes_the_config_digest(quickstart: Deployment) -> None:
    before = quickstart.load().digest
    write_table(
        quickstart.root / "features" / "cards.parquet",
        {"card_id": ["x"], "card_age_days": [1.0], "email_age_days": [2.0]},
    )
    assert quickstart.load().digest != before


@pytest.mark.parametrize(
    ("section", "path", "fragment"),
    [
        ({"redis": {"url": "redis://h:1"}}, "feature_store", "exactly one of parquet, redis"),
        ({"parquet": None}, "feature_store", "exactly one of parquet, redis"),
        ({"key": []}, "feature_store.key", "at least 1"),
        ({"key": ["card_id", "card_id"]}, "feature_store.key", "distinct"),
        ({"key": "card_age_days"}, "feature_store", "both the entity key and a feature"),
        ({"features": {}}, "feature_store.features", "at least 1"),
        ({"features": {"f": "requird"}}, "feature_store.features", "expected `required` or"),
        ({"features": {"f": {}}}, "feature_store.features.f", "either `required` or"),
        (
            {"features": {"f": {"default": 1, "required": True}}},
            "feature_store.features.f",
            "either",
        ),
        (
            {"features": {"f": {"default": float("inf")}}},
            "feature_store.features.f.default",
            "finite",
        ),
        ({"colour": "red"}, "feature_store.colour", "unknown key"),
        ({"parquet": "features/absent.parquet"}, "feature_store.parquet", "cannot read"),
        ({"parquet": "muse.yaml"}, "feature_store.parquet", "not a readable Parquet file"),
        (
            {"features": {"card_age_days": "required", "zip": "required"}},
            "feature_store.parquet",
            "lacks column(s) ['zip']",
        ),
    ],
)
def test_mistakes_are_reported_at_their_yaml_path(
    quickstart: Deployment, section: dict[str, Any], path: str, fragment: str
) -> None:
    edit(quickstart, **section)
    issues = quickstart.issues()
    assert path in issues, issues
    assert any(fragment in m for m in issues[path]), issues[path]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://cache.internal:6380", True),
        ("unix:///run/redis.sock", True),
        ("http://127.0.0.1:6379", False),
        ("127.0.0.1:6379", False),
    ],
)
def test_redis_urls(quickstart: Deployment, url: str, ok: bool) -> None:
    doc = quickstart.doc()
    doc["feature_store"] = {"key": "card_id", "redis": {"url": url}, "features": {"f": "required"}}
    quickstart.write(doc)
    if ok:
        assert quickstart.load().feature_store is not None
    else:
        assert any(
            "redis:// " in m or "redis://" in m
            for m in quickstart.issues()["feature_store.redis.url"]
        )


def test_other_problems_are_reported_together_with_the_stores(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    doc["feature_store"]["parquet"] = "features/absent.parquet"
    doc["models"]["m1"]["undersampling"] = 2
    quickstart.write(doc)
    assert {"feature_store.parquet", "models.m1.undersampling"} <= set(quickstart.issues())


def test_a_table_that_fails_to_load_is_a_config_error_at_its_path(quickstart: Deployment) -> None:
    write_table(
        quickstart.root / "features" / "cards.parquet",
        {"card_id": ["a", "a"], "card_age_days": [1.0, 2.0], "email_age_days": [1.0, 2.0]},
    )
    config = load_config(quickstart.config)  # the columns are right: the file loads
    with pytest.raises(ConfigError) as info:
        ScoringService.from_config(quickstart.config)
    assert config.feature_store is not None
    assert [i.path for i in info.value.issues] == ["feature_store.parquet"]
    assert "twice" in info.value.issues[0].message
