"""``muse export triton-repository``: the repository a real Triton serves a deployment's
remote models from — the config's own tensor names, versions and model files — and the
clear refusals when a model cannot be exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped, unused-ignore]
import lightgbm
import numpy as np
import pytest
from typer.testing import Result

from muse.export import ExportError, TritonModel, triton_models, write_triton_repository
from muse.service import ScoringService
from muse.testing import start_triton
from tests.cli_support import invoke
from tests.config_fixtures import Deployment, write_placeholder_map
from tests.e2e.support import SAMPLE
from tests.modelservers.test_kserve_backend import FEATURES

REPO = Path(__file__).resolve().parents[2]
M1 = REPO / "examples" / "quickstart" / "models" / "m1.txt"


def with_remote(d: Deployment, **entry: Any) -> None:
    """The quickstart + model ``r1``: m1's file served by a model server as ``m1-remote``,
    and predictor ``remote-v1`` on it, live for bank2."""
    doc = d.doc()
    doc["models"]["r1"] = {
        "backend": "kserve-v2",
        "url": "http://127.0.0.1:9",
        "model": "m1-remote",
        "version": "3",
        "uri": "models/m1.txt",
        "features": list(FEATURES),
        "undersampling": 0.18,
        **entry,
    }
    doc["predictors"]["remote-v1"] = {
        "experts": [{"model": "r1"}],
        "reference": "fraud-v1",
        "transforms": "transforms/single-v1",
    }
    rules = doc["routing"]["scoringRules"]
    if rules[0]["description"] != "bank2 remote":
        rules.insert(
            0,
            {
                "description": "bank2 remote",
                "condition": {"tenants": ["bank2"]},
                "targetPredictorName": "remote-v1",
            },
        )
    d.write(doc)


def export(d: Deployment, dest: Path, *args: str) -> Result:
    return invoke("export", "triton-repository", str(d.config), "--out", str(dest), *args)


@pytest.fixture
def quickstart(tmp_path: Path) -> Deployment:
    d = Deployment.copy_quickstart(tmp_path / "deploy")
    with_remote(d)
    return d


def test_the_command_writes_each_remote_model_with_its_tensors(
    quickstart: Deployment, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    result = export(quickstart, repo)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(repo / "m1-remote" / "3")
    assert sorted(p.name for p in repo.iterdir()) == ["m1-remote"]
    version = repo / "m1-remote" / "3"
    assert (version / "model.txt").read_bytes() == M1.read_bytes()
    assert "class TritonPythonModel" in (version / "model.py").read_text()
    config = (repo / "m1-remote" / "config.pbtxt").read_text()
    assert 'name: "m1-remote"' in config
    assert 'backend: "python"' in config
    assert '{ name: "input__0", data_type: TYPE_FP32, dims: [ 8 ] }' in config  # the defaults
    assert '{ name: "probability", data_type: TYPE_FP32, dims: [ 1 ] }' in config
    assert "max_batch_size: 256" in config  # the client's largest request
    assert "version_policy: { all: { } }" in config
    assert f'string_value: "{",".join(FEATURES)}"' in config


def test_a_new_version_keeps_the_previous_one_for_replicas_still_on_it(
    quickstart: Deployment, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    assert export(quickstart, repo).exit_code == 0
    with_remote(quickstart, version="4", datatype="FP64", input_name="x", output_name="p")
    assert export(quickstart, repo).exit_code == 0
    assert sorted(p.name for p in (repo / "m1-remote").iterdir()) == ["3", "4", "config.pbtxt"]
    config = (repo / "m1-remote" / "config.pbtxt").read_text()
    assert '{ name: "x", data_type: TYPE_FP64, dims: [ 8 ] }' in config


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"uri": None}, "models.r1: no `uri`"),
        ({"uri": "models/m2.onnx"}, "is not a LightGBM text model"),
        ({"version": "v2"}, "Triton versions are whole numbers, got 'v2'"),
        ({"features": list(reversed(FEATURES))}, "Triton would be fed columns in the wrong order"),
    ],
    ids=["no-uri", "onnx", "version", "feature-order"],
)
def test_a_model_that_cannot_be_exported_is_named_and_nothing_is_written(
    quickstart: Deployment, tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    doc = quickstart.doc()
    doc["models"]["r1"].update(entry)
    if entry.get("uri", "") is None:
        del doc["models"]["r1"]["uri"]
    quickstart.write(doc)
    repo = tmp_path / "repo"
    result = export(quickstart, repo)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert not repo.exists()


def test_an_unknown_model_or_a_config_without_remote_models_is_refused(
    quickstart: Deployment, tmp_path: Path
) -> None:
    result = export(quickstart, tmp_path, "-m", "m1")
    assert result.exit_code == 2
    assert "no kserve-v2 model named ['m1']; kserve-v2 models: ['r1']" in " ".join(
        result.stderr.split()
    )
    plain = Deployment.copy_quickstart(tmp_path / "plain")
    result = export(plain, tmp_path)
    assert result.exit_code == 2
    assert "has no kserve-v2 model" in result.stderr


def test_an_invalid_config_lists_its_problems(quickstart: Deployment, tmp_path: Path) -> None:
    quickstart.replace("reference: fraud-v1", "reference: nowhere", count=3)
    result = export(quickstart, tmp_path)
    assert result.exit_code == 2
    assert "invalid" in result.stderr


def test_a_repository_on_an_fsspec_url(quickstart: Deployment) -> None:
    written = write_triton_repository(triton_models(quickstart.config), "memory://triton/models")
    fs = fsspec.filesystem("memory")
    assert written == ["/triton/models/m1-remote/3"]
    assert fs.cat("/triton/models/m1-remote/3/model.txt") == M1.read_bytes()
    assert fs.exists("/triton/models/m1-remote/config.pbtxt")


def test_two_models_with_the_same_name_and_version_are_refused(tmp_path: Path) -> None:
    twice = [TritonModel(name="m", file=M1), TritonModel(name="m", file=M1)]
    with pytest.raises(ExportError, match="two models share a name and version"):
        write_triton_repository(twice, tmp_path)


def test_a_real_triton_serves_the_exported_repository_as_the_config_expects(
    quickstart: Deployment, tmp_path: Path
) -> None:
    """The exported repository on a real Triton, the config pointed at it: bank2's remote
    expert answers exactly what m1's file answers in process."""
    with_remote(quickstart, datatype="FP64")  # LightGBM sees the very same float64 features
    repo = tmp_path / "repo"
    assert export(quickstart, repo).exit_code == 0
    server = start_triton(repo)
    try:
        with_remote(quickstart, url=server.http_url, datatype="FP64")
        fit_remote_maps(quickstart)
        service = ScoringService.from_config(quickstart.config)
        booster = lightgbm.Booster(model_file=str(M1))
        rng = np.random.default_rng(7)
        for _ in range(20):
            features = {k: v * float(rng.uniform(0.5, 1.5)) for k, v in SAMPLE.items()}
            got = service.score({"tenant": "bank2"}, features, shadows=False)
            assert got.live.predictor == "remote-v1"
            row = np.array([[features[f] for f in FEATURES]], dtype=np.float64)
            assert got.live.experts["r1"] == pytest.approx(booster.predict(row)[0], abs=1e-12)
    finally:
        server.stop()


def fit_remote_maps(d: Deployment) -> None:
    """A map of its own for ``remote-v1`` (maps are bound to their predictor's identity)."""
    doc = d.doc()
    doc["predictors"]["remote-v1"]["transforms"] = "transforms/remote-v1"
    d.write(doc)
    write_placeholder_map(d.config, "remote-v1")
