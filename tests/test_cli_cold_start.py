"""``muse cold-start``: a predictor without any map gets its default T^Q_v0 from a Beta mixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from muse.artifacts import read_artifact
from muse.config import load_config
from muse.errors import ConfigError
from muse.fitting.cold_start import BetaMixture
from muse.scorelog import LakeReader
from tests.cli_support import invoke
from tests.config_fixtures import Deployment
from tests.lifecycle_fixtures import filled_lake


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """Raw aggregates of ensemble-v1 on generated traffic, and that traffic's fraud share."""
    d = Deployment.copy_quickstart(tmp_path_factory.mktemp("cs") / "q")
    _, frame = filled_lake(d, 9_000)
    with LakeReader(d.root / "lake") as reader:
        raw = np.concatenate(
            [reader.raw_scores("ensemble-v1", t) for t in ("bank1", "bank2", "fintech3")]
        )
    path = d.root / "training.npy"
    np.save(path, raw)
    return path, float(frame.label.mean())


def test_a_new_predictor_becomes_deployable(tmp_path: Path, training: tuple[Path, float]) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    shutil.rmtree(d.root / "transforms" / "ensemble-v1")
    with pytest.raises(ConfigError, match="missing artifact file"):
        load_config(d.config)
    path, prior = training
    r = invoke(
        "cold-start",
        str(d.config),
        "-p",
        "ensemble-v1",
        "--training-scores",
        str(path),
        "--prior",
        str(prior),
        "--trials",
        "2",
    )
    assert r.exit_code == 0, r.output
    assert "default-v0" in r.output
    assert "far from the training scores" not in r.output  # a good fit is not flagged
    art = read_artifact(d.artifact("ensemble-v1"))
    assert art.method == "beta-mixture"
    assert art.fit is not None
    mixture = BetaMixture.from_dict(art.fit["mixture"])
    assert mixture.params.w == pytest.approx(prior)
    assert art.quantile_map.n_samples == np.load(path).size
    loaded = load_config(d.config)  # deployable now
    assert loaded.transforms["ensemble-v1"].default.version == 0
    assert loaded.fingerprints["ensemble-v1"] == art.fingerprint
    # The default map sends the training scores roughly onto the reference.
    mapped = art.quantile_map(np.load(path))
    threshold = float(loaded.references["fraud-v1"].ppf(np.array([0.95]))[0])
    assert float(np.mean(mapped > threshold)) == pytest.approx(0.05, abs=0.02)


def test_a_second_cold_start_writes_the_next_version(
    tmp_path: Path, training: tuple[Path, float]
) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    path, prior = training
    r = invoke(
        "cold-start", str(d.config), "-p", "ensemble-v1", "--training-scores", str(path),
        "--prior", str(prior), "--trials", "1",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert d.artifact("ensemble-v1", version=1).exists()
    assert load_config(d.config).transforms["ensemble-v1"].default.label == "default-v1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--prior", "0"), "--prior must be in (0, 1)"),
        (("--prior", "1.5"), "--prior must be in (0, 1)"),
        (("--prior", "0.01", "--column", "x"), "no column"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    scores = tmp_path / "s.csv"
    scores.write_text("score\n" + "\n".join(str(x) for x in np.linspace(0.01, 0.5, 200)))
    r = invoke(
        "cold-start", str(d.config), "-p", "single-v1", "--training-scores", str(scores), *args
    )
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_scores_outside_0_1_are_refused(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    scores = tmp_path / "s.json"
    scores.write_text(json.dumps([0.1] * 150 + [1.5]))
    r = invoke(
        "cold-start", str(d.config), "-p", "single-v1", "--training-scores", str(scores),
        "--prior", "0.01",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "[0, 1]" in r.output


def test_a_poor_fit_is_reported(
    tmp_path: Path, training: tuple[Path, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from muse.fitting import cold_start as module

    real = module.fit_beta_mixture

    def poor(*args: object, **kwargs: object) -> BetaMixture:
        fit = real(*args, **kwargs)  # type: ignore[arg-type]
        return BetaMixture(fit.params, jsd=0.4, loss=fit.loss, n_samples=fit.n_samples)

    monkeypatch.setattr(module, "fit_beta_mixture", poor)
    d = Deployment.copy_quickstart(tmp_path / "q")
    path, prior = training
    r = invoke(
        "cold-start", str(d.config), "-p", "ensemble-v1", "--training-scores", str(path),
        "--prior", str(prior), "--trials", "1",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "far from the training scores (JSD 0.400 > 0.02)" in r.output
