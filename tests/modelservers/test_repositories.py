"""The model repositories generated for Triton and MLServer (no server started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from muse.testing import (
    ModelServerError,
    mlserver_settings,
    read_lightgbm_header,
    triton_repository,
)
from tests.modelservers.support import M1, REPO

M1_FEATURES = (
    "amount",
    "hour",
    "merchant_risk",
    "velocity_1h",
    "distance_km",
    "card_age_days",
    "device_risk",
    "n_declines_24h",
)


def test_lightgbm_header_gives_the_feature_names_in_column_order() -> None:
    assert read_lightgbm_header(M1).feature_names == M1_FEATURES


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_triton_repository_layout_and_config(tmp_path: Path, datatype: str) -> None:
    repo = triton_repository({"m1": M1}, tmp_path / "repo", datatype=datatype, max_batch_size=64)  # type: ignore[arg-type]
    assert (repo / "m1" / "1" / "model.txt").read_bytes() == M1.read_bytes()
    assert "class TritonPythonModel" in (repo / "m1" / "1" / "model.py").read_text()
    config = (repo / "m1" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config
    assert "max_batch_size: 64" in config
    assert f'name: "features", data_type: TYPE_{datatype}, dims: [ 8 ]' in config
    assert f'name: "probability", data_type: TYPE_{datatype}, dims: [ 1 ]' in config
    assert "dynamic_batching { max_queue_delay_microseconds: 0 }" in config
    assert f'string_value: "{",".join(M1_FEATURES)}"' in config


def test_triton_repository_replaces_a_model_folder_of_the_same_name(tmp_path: Path) -> None:
    stale = tmp_path / "repo" / "m1" / "2"
    stale.mkdir(parents=True)
    triton_repository({"m1": M1}, tmp_path / "repo")
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "repo" / "m1").iterdir()) == ["1", "config.pbtxt"]


def test_mlserver_settings_bind_loopback_without_metrics(tmp_path: Path) -> None:
    folder = mlserver_settings({"m1": M1, "m1-copy": M1}, tmp_path / "mls", parallel_workers=0)
    server = json.loads((folder / "settings.json").read_text())
    assert server["host"] == "127.0.0.1"
    assert server["metrics_endpoint"] is None
    assert server["parallel_workers"] == 0
    assert "http_port" not in server  # ports are given per start
    assert "grpc_port" not in server
    for name in ("m1", "m1-copy"):
        model = json.loads((folder / name / "model-settings.json").read_text())
        assert model["name"] == name
        assert model["implementation"] == "mlserver_lightgbm.LightGBMModel"
        assert model["parameters"] == {"uri": "./model.txt", "version": "1"}
        assert model["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}]
        assert model["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1, 1]}]
        assert (folder / name / "model.txt").read_bytes() == M1.read_bytes()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({}, "models is empty"),
        ({"../m1": M1}, "'../m1' is not a valid folder name"),
        ({"m2": REPO / "examples/quickstart/models/m2.onnx"}, "is not a LightGBM text model"),
        ({"m9": REPO / "no/such/model.txt"}, "could not be read"),
    ],
    ids=["empty", "bad-name", "onnx", "missing"],
)
def test_bad_models_are_refused_by_both_generators(
    tmp_path: Path, models: dict[str, Path], message: str
) -> None:
    with pytest.raises(ModelServerError, match=message):
        triton_repository(models, tmp_path / "repo")
    with pytest.raises(ModelServerError, match=message):
        mlserver_settings(models, tmp_path / "mls")


def test_triton_repository_refuses_an_unknown_datatype(tmp_path: Path) -> None:
    with pytest.raises(ModelServerError, match="datatype must be 'FP32' or 'FP64', got 'INT8'"):
        triton_repository({"m1": M1}, tmp_path / "repo", datatype="INT8")  # type: ignore[arg-type]
