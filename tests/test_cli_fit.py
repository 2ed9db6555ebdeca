"""``muse fit quantiles``: fit tenant maps from a real score lake, refuse small samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from muse.config import load_config
from tests.cli_support import invoke
from tests.config_fixtures import Deployment
from tests.lifecycle_fixtures import filled_lake

RELAXED = ("--alert-rate", "0.02", "--rel-error", "0.3")  # Eq. 5: 2,091 events


@pytest.fixture(scope="module")
def lake_deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    d = Deployment.copy_quickstart(tmp_path_factory.mktemp("fit") / "quickstart")
    filled_lake(d, 12_000)
    return d


@pytest.fixture
def deployment(lake_deployment: Deployment, tmp_path: Path) -> Deployment:
    """A fresh copy per test (fitting writes artifacts), sharing the module's lake."""
    import shutil

    dest = tmp_path / "d"
    shutil.copytree(lake_deployment.root, dest)
    return Deployment(dest)


def test_refuses_a_sample_smaller_than_eq5_asks(deployment: Deployment) -> None:
    r = invoke("fit", "quantiles", str(deployment.config), "-p", "ensemble-v1", "-t", "bank2")
    assert r.exit_code == 2, r.output
    assert "requires 19,112" in r.output  # a = 0.5 %, δ = 20 %
    assert "--force" in r.output
    assert not deployment.artifact("ensemble-v1", "bank2", 2).exists()


def test_fits_from_shadow_rows_and_the_config_deploys_the_new_version(
    deployment: Deployment,
) -> None:
    r = invoke(
        "fit", "quantiles", str(deployment.config), "-p", "ensemble-v1", "-t", "bank2", *RELAXED
    )
    assert r.exit_code == 0, r.output
    path = deployment.artifact("ensemble-v1", "bank2", 2)
    assert path.exists()
    assert "held-out events" in r.output
    doc = json.loads(path.read_text())
    loaded = load_config(deployment.config)
    assert doc["fingerprint"] == loaded.fingerprints["ensemble-v1"]
    assert doc["tenant"] == "bank2"
    assert doc["window"]["role"] == "any"
    assert int(doc["window"]["events"]) > 3_000
    assert doc["map"]["n_samples"] == round(int(doc["window"]["events"]) * 0.8)
    assert loaded.transforms["ensemble-v1"].tenants["bank2"].version == 2
    assert invoke("validate", str(deployment.config)).exit_code == 0


def test_all_tenants_fits_each_one(deployment: Deployment) -> None:
    r = invoke(
        "fit", "quantiles", str(deployment.config), "-p", "ensemble-v1", "--all-tenants", "--force"
    )
    assert r.exit_code == 0, r.output
    assert deployment.artifact("ensemble-v1", "bank1", 2).exists()
    assert deployment.artifact("ensemble-v1", "bank2", 2).exists()
    assert deployment.artifact("ensemble-v1", "fintech3", 1).exists()  # its first own map


def test_role_and_window_select_the_rows(deployment: Deployment) -> None:
    cfg = str(deployment.config)
    # bank2 never saw ensemble-v1 live: it is only its shadow.
    r = invoke("fit", "quantiles", cfg, "-p", "ensemble-v1", "-t", "bank2", "--role", "live")
    assert r.exit_code == 2
    assert "0 events" in r.output
    # A window before the traffic holds nothing either.
    r = invoke("fit", "quantiles", cfg, "-p", "ensemble-v1", "-t", "bank2", "--until", "2026-01-01")
    assert r.exit_code == 2
    assert "0 events" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-p", "ensemble-v1"), "exactly one of --tenant"),
        (("-p", "ensemble-v1", "-t", "bank2", "--all-tenants"), "exactly one of --tenant"),
        (("-p", "ensemble-v9", "-t", "bank2"), "no predictor 'ensemble-v9'"),
        (("-p", "ensemble-v1", "-t", "bank2", "--since", "yesterday"), "since"),
        (("-p", "ensemble-v1", "-t", "bank2", "--role", "both"), "--role"),
        (("-p", "ensemble-v1", "-t", "bank2", "--alert-rate", "5"), "--alert-rate"),
        (("-p", "ensemble-v1", "-t", "bank2", "--holdout", "1"), "--holdout"),
    ],
)
def test_bad_arguments_exit_2_naming_them(
    deployment: Deployment, args: tuple[str, ...], message: str
) -> None:
    r = invoke("fit", "quantiles", str(deployment.config), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_a_config_without_a_lake_needs_lake(deployment: Deployment) -> None:
    doc = deployment.doc()
    del doc["lake"]
    deployment.write(doc)
    r = invoke("fit", "quantiles", str(deployment.config), "-p", "ensemble-v1", "-t", "bank2")
    assert r.exit_code == 2
    assert "no `lake` section" in r.output
    r = invoke(
        "fit",
        "quantiles",
        str(deployment.config),
        "-p",
        "ensemble-v1",
        "-t",
        "bank2",
        "--lake",
        str(deployment.root / "lake"),
        *RELAXED,
    )
    assert r.exit_code == 0, r.output


def test_a_missing_lake_is_a_clear_error(deployment: Deployment, tmp_path: Path) -> None:
    r = invoke(
        "fit",
        "quantiles",
        str(deployment.config),
        "-p",
        "ensemble-v1",
        "-t",
        "bank2",
        "--lake",
        str(tmp_path / "nowhere"),
    )
    assert r.exit_code == 2
    assert "nowhere" in r.output
