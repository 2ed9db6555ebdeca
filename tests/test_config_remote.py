"""Config of ``kserve-v2`` models: what they need, and their identity in fingerprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from muse.config import load_config
from tests.config_fixtures import Deployment

M1_FEATURES = [
    "amount",
    "hour",
    "merchant_risk",
    "velocity_1h",
    "distance_km",
    "card_age_days",
    "device_risk",
    "n_declines_24h",
]


@pytest.fixture
def quickstart(tmp_path: Path) -> Deployment:
    return Deployment.copy_quickstart(tmp_path / "quickstart")


def with_remote(d: Deployment, **entry: Any) -> None:
    doc = d.doc()
    doc["models"]["r1"] = {
        "backend": "kserve-v2",
        "url": "http://127.0.0.1:8000",
        "model": "m1",
        "version": "1",
        "features": M1_FEATURES,
        "undersampling": 0.18,
        **entry,
    }
    doc["predictors"]["remote-v1"] = {
        "experts": [{"model": "r1"}],
        "reference": "fraud-v1",
        "transforms": "transforms/single-v1",
    }
    d.write(doc)


def test_a_remote_model_loads_into_a_spec_with_its_options(quickstart: Deployment) -> None:
    with_remote(quickstart, protocol="grpc", url="127.0.0.1:8001", timeout_ms=20)
    cfg = load_config(quickstart.config, require_transforms=False)
    spec = cfg.model_specs["r1"]
    options = dict(spec.options)
    assert spec.kind == "kserve-v2"
    assert spec.features == tuple(M1_FEATURES)
    assert options["url"] == "127.0.0.1:8001"
    assert options["protocol"] == "grpc"
    assert float(options["timeout_ms"]) == 20.0
    assert cfg.model_digests["r1"].startswith("sha256:")


def test_the_version_is_part_of_the_identity(quickstart: Deployment) -> None:
    with_remote(quickstart)
    v1 = load_config(quickstart.config, require_transforms=False).fingerprints["remote-v1"]
    with_remote(quickstart, version="2")
    v2 = load_config(quickstart.config, require_transforms=False).fingerprints["remote-v1"]
    with_remote(quickstart, url="http://10.0.0.1:8000")  # another replica: same model
    moved = load_config(quickstart.config, require_transforms=False).fingerprints["remote-v1"]
    assert v1 != v2
    assert moved == v1


def test_a_remote_model_may_be_pinned_to_a_local_copy(quickstart: Deployment) -> None:
    with_remote(quickstart, uri="models/m1.txt")
    a = load_config(quickstart.config, require_transforms=False).model_digests["r1"]
    with_remote(quickstart, uri="models/m2.onnx")
    b = load_config(quickstart.config, require_transforms=False).model_digests["r1"]
    assert a != b


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"version": None}, "needs version"),
        ({"features": None}, "needs `features`"),
        ({"url": "127.0.0.1:8000"}, "starts with http://"),
        ({"protocol": "tcp"}, "'http' or 'grpc'"),
        ({"timeout_ms": 0}, "greater than 0"),
        ({"datatype": "INT8"}, "'FP32' or 'FP64'"),
    ],
)
def test_bad_remote_entries_name_the_problem(
    quickstart: Deployment, entry: dict[str, Any], message: str
) -> None:
    with_remote(quickstart)
    doc = quickstart.doc()
    for k, v in entry.items():
        if v is None:
            del doc["models"]["r1"][k]
        else:
            doc["models"]["r1"][k] = v
    quickstart.write(doc)
    issues = quickstart.issues()
    text = " | ".join(
        m for where, ms in issues.items() if where.startswith("models.r1") for m in ms
    )
    assert message in text, issues


def test_remote_fields_on_a_local_model_are_refused(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    doc["models"]["m1"]["url"] = "http://127.0.0.1:8000"
    quickstart.write(doc)
    issues = quickstart.issues()
    assert any("apply to kserve-v2 models only" in m for m in issues["models.m1"])
