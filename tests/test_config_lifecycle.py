"""The config sections of the model lifecycle: tenants' thresholds, model-CI limits, and
the lenient load the offline tools use to write maps a predictor does not have yet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from muse.config import load_config
from muse.errors import ConfigError
from tests.config_fixtures import Deployment


@pytest.fixture
def quickstart(tmp_path: Path) -> Deployment:
    return Deployment.copy_quickstart(tmp_path / "quickstart")


def test_thresholds_and_limits_are_loaded(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    doc["tenants"] = {"bank1": {"thresholds": {"review": 0.6, "block": 0.9}}}
    doc["model_ci"] = {"max_action_changes": 0.01, "fpr": 0.005}
    quickstart.write(doc)
    spec = quickstart.load().spec
    assert dict(spec.tenants["bank1"].thresholds) == {"review": 0.6, "block": 0.9}
    assert spec.model_ci.max_action_changes == 0.01
    assert spec.model_ci.fpr == 0.005
    assert spec.model_ci.min_events == 1000  # defaults fill the rest


def test_sections_default_to_empty(quickstart: Deployment) -> None:
    spec = quickstart.load().spec
    assert dict(spec.tenants) == {}
    assert spec.model_ci.max_action_changes == 0.05


@pytest.mark.parametrize(
    ("tenants", "where", "message"),
    [
        ({"bank1": {"thresholds": {"review": 1.5}}}, "tenants.bank1.thresholds", "(0, 1]"),
        ({"bank1": {"thresholds": {"review": 0.0}}}, "tenants.bank1.thresholds", "(0, 1]"),
        ({"bank1": {"thresholds": {"allow": 0.5}}}, "tenants.bank1.thresholds", "'allow'"),
        (
            {"bank1": {"thresholds": {"review": 0.5, "block": 0.5}}},
            "tenants.bank1.thresholds",
            "share a threshold",
        ),
        ({"bank1": {"treshold": {}}}, "tenants.bank1.treshold", "unknown key"),
        ({"bad name": {}}, "tenants.bad name", "letters, digits"),
    ],
)
def test_bad_thresholds_name_their_path(
    quickstart: Deployment, tenants: dict[str, object], where: str, message: str
) -> None:
    doc = quickstart.doc()
    doc["tenants"] = tenants
    quickstart.write(doc)
    issues = quickstart.issues()
    assert where in issues, issues
    assert any(message in m for m in issues[where]), issues[where]


def test_bad_limits_name_their_path(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    doc["model_ci"] = {"fpr": 2, "max_recal_drop": 0.1}
    quickstart.write(doc)
    issues = quickstart.issues()
    assert "model_ci.fpr" in issues
    assert issues["model_ci.max_recal_drop"] == ["unknown key (check its spelling)"]


def test_missing_default_map_fails_serving_but_not_the_offline_tools(
    quickstart: Deployment,
) -> None:
    fingerprint = quickstart.load().fingerprints["ensemble-v1"]
    shutil.rmtree(quickstart.root / "transforms" / "ensemble-v1")
    with pytest.raises(ConfigError, match="missing artifact file"):
        load_config(quickstart.config)
    cfg = load_config(quickstart.config, require_transforms=False)
    assert "ensemble-v1" not in cfg.transforms
    assert "single-v1" in cfg.transforms
    assert cfg.fingerprints["ensemble-v1"] == fingerprint  # what a fresh map must record


def test_stale_maps_are_dropped_by_the_lenient_load(quickstart: Deployment) -> None:
    # Reweighting the ensemble changes its fingerprint: every map it had is stale.
    quickstart.replace("{model: m3, weight: 1}", "{model: m3, weight: 2}")
    with pytest.raises(ConfigError, match="fingerprint mismatch"):
        load_config(quickstart.config)
    cfg = load_config(quickstart.config, require_transforms=False)
    assert "ensemble-v1" not in cfg.transforms
    assert set(cfg.transforms["single-v1"].tenants) == {"bank1", "bank2"}


def test_lenient_load_still_rejects_everything_else(quickstart: Deployment) -> None:
    quickstart.replace("undersampling: 0.02", "undersampling: 2")
    with pytest.raises(ConfigError, match="undersampling"):
        load_config(quickstart.config, require_transforms=False)
