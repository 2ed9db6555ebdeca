"""Tests for the ``muse`` command line: validate, route, score and their exit codes.

In-process through ``typer.testing.CliRunner`` for speed, plus real runs of the installed
``muse`` console script to prove the entry point and exit codes. Exit 0 means success, 2 bad
input or an invalid config with a message naming the problem — never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from muse.cli import app
from tests.cli_support import invoke
from tests.config_fixtures import QUICKSTART, SAMPLE_EVENT, Deployment

CONFIG = str(QUICKSTART / "muse.yaml")  # read-only uses; tests that edit use a copy
MUSE = Path(sys.executable).with_name("muse")


@pytest.fixture
def quickstart(tmp_path: Path) -> Deployment:
    return Deployment.copy_quickstart(tmp_path / "quickstart")


@pytest.fixture
def broken(quickstart: Deployment) -> Deployment:
    """The quickstart with four independent problems."""
    doc = quickstart.doc()
    doc["models"]["m3"]["undersampling"] = 1.5
    doc["predictors"]["ensemble-v1"]["experts"][1]["model"] = "m9"
    doc["modles"] = {}
    doc["routing"]["scoringRules"][0]["condition"] = {"tennants": ["bank1"]}
    quickstart.write(doc)
    return quickstart


BROKEN_PATHS = (
    "models.m3.undersampling",
    "predictors.ensemble-v1.experts[1].model",
    "modles",
    "routing.scoringRules[0].condition.tennants",
)


def features(**changes: Any) -> str:
    """The sample event as JSON, with ``changes`` applied (``None`` drops a feature)."""
    event: dict[str, Any] = dict(SAMPLE_EVENT)
    for key, value in changes.items():
        if value is None:
            event.pop(key)
        else:
            event[key] = value
    return json.dumps(event)


# -- validate -------------------------------------------------------------------------------


def test_validate_accepts_the_quickstart() -> None:
    result = invoke("validate", CONFIG)
    assert result.exit_code == 0
    assert "valid (version quickstart-1)" in result.stdout
    for name in ("single-v1", "ensemble-v1", "default-v0"):
        assert name in result.stdout


def test_validate_lists_every_issue_with_its_path(broken: Deployment) -> None:
    result = invoke("validate", str(broken.config))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{broken.config}: invalid" in result.stderr
    for path in BROKEN_PATHS:
        assert f"  - {path}: " in result.stderr
    assert "did you mean 'tenants'?" in result.stderr


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [("absent", "cannot read config file"), ("malformed", "malformed YAML")],
)
def test_validate_reports_unloadable_configs(
    quickstart: Deployment, setup: str, fragment: str
) -> None:
    config = quickstart.config
    if setup == "absent":
        config = quickstart.root / "absent.yaml"
    else:
        quickstart.text = "models: [\n"
    result = invoke("validate", str(config))
    assert result.exit_code == 2
    assert fragment in result.stderr


@pytest.mark.parametrize("valid", [True, False])
def test_validate_prints_paths_that_look_like_markup(tmp_path: Path, valid: bool) -> None:
    deployment = Deployment.copy_quickstart(tmp_path / "x[" / "b]")  # ".../x[/b]/muse.yaml"
    if not valid:
        deployment.replace("undersampling: 0.02", "undersampling: 2")
    result = invoke("validate", str(deployment.config))
    assert result.exit_code == (0 if valid else 2)
    assert str(deployment.config) in result.output


# -- route ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "live", "shadows"),
    [
        (["tenant=bank1"], "ensemble-v1", []),
        (["tenant=bank2"], "single-v1", ["ensemble-v1"]),
        (["tenant=fintech3", "channel=web"], "single-v1", ["ensemble-v1"]),
        (["tenant=newbank"], "single-v1", []),
    ],
)
def test_route_prints_live_and_shadows(intent: list[str], live: str, shadows: list[str]) -> None:
    args = [arg for pair in intent for arg in ("--intent", pair)]
    result = invoke("route", CONFIG, *args)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["live"] == live
    assert doc["shadows"] == shadows
    assert isinstance(doc["rule"], str)


@pytest.mark.parametrize(
    ("intent", "fragments"),
    [
        ("tenant", ("--intent expects key=value", "'tenant'")),
        ("=bank1", ("--intent expects key=value", "'=bank1'")),
        ("merchant=acme", ("intent attribute 'merchant' is not declared", "tenant, geography")),
        ("tennant=bank1", ("'tennant' is not declared", "did you mean 'tenant'?")),
        ("[/x]=1", ("intent attribute '[/x]' is not declared",)),  # not rich markup
    ],
)
def test_route_rejects_bad_intents(intent: str, fragments: tuple[str, ...]) -> None:
    result = invoke("route", CONFIG, "--intent", intent)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_route_on_an_invalid_config_names_the_issues(broken: Deployment) -> None:
    result = invoke("route", str(broken.config), "--intent", "tenant=bank1")
    assert result.exit_code == 2
    for path in BROKEN_PATHS:
        assert path in result.stderr


# -- score ----------------------------------------------------------------------------------


def check_scored(row: dict[str, Any], predictor: str) -> None:
    assert row["predictor"] == predictor
    assert 0.0 <= row["score"] <= 1.0
    assert 0.0 <= row["raw"] <= 1.0
    assert row["fingerprint"].startswith("fp-")
    assert row["tq_version"] == "v1"


@pytest.mark.parametrize(
    ("tenant", "live", "shadows"),
    [("bank1", "ensemble-v1", []), ("bank2", "single-v1", ["ensemble-v1"])],
)
def test_score_prints_the_live_score_and_shadows(
    tenant: str, live: str, shadows: list[str]
) -> None:
    result = invoke(
        "score", CONFIG, "-i", f"tenant={tenant}", "-f", features(), "--event-id", "e-1"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["event_id"] == "e-1"
    assert doc["config_version"] == "quickstart-1"
    check_scored(doc["live"], live)
    assert doc["score"] == doc["live"]["score"]
    assert [s["predictor"] for s in doc["shadows"]] == shadows
    for row in doc["shadows"]:
        check_scored(row, row["predictor"])
    assert doc["shadow_errors"] == {}
    if live == "ensemble-v1":
        assert set(doc["live"]["experts"]) == {"m1", "m2", "m3"}


def test_score_reads_features_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(features(), encoding="utf-8")
    at_file = invoke("score", CONFIG, "-i", "tenant=bank1", "-f", f"@{path}")
    inline = invoke("score", CONFIG, "-i", "tenant=bank1", "-f", features())
    assert at_file.exit_code == inline.exit_code == 0
    assert json.loads(at_file.stdout)["score"] == json.loads(inline.stdout)["score"]


@pytest.mark.parametrize(
    ("intent", "event", "fragments"),
    [
        ("tenant", features(), ("--intent expects key=value",)),
        ("tenant=bank1,merchant=acme", features(), ("'merchant' is not declared",)),
        ("channel=web", features(), ("must name its tenant",)),
        (
            "tenant=bank1",
            features(amount=None),
            ("missing feature 'amount'", "needs features ['amount'"),
        ),
        ("tenant=bank1", features(amount="abc"), ("feature 'amount' must be numeric", "'abc'")),
        ("tenant=bank1", features(amount=[1]), ("feature 'amount' must be numeric",)),
        ("tenant=bank1", features(amount=math.nan), ("feature 'amount' must be finite", "nan")),
        ("tenant=bank1", features(amount=math.inf), ("feature 'amount' must be finite", "inf")),
        ("tenant=bank1", features(amout=3.0), ("unknown feature(s) ['amout']",)),
        ("tenant=bank1", "{amount: 1}", ("--features is not valid JSON", "line 1 column 2")),
        ("tenant=bank1", "[1, 2]", ("must be a JSON object", "got list")),
        ("tenant=bank1", "@/nonexistent/event.json", ("cannot read features file",)),
    ],
    ids=[
        "intent-format",
        "undeclared-attribute",
        "no-tenant",
        "missing-feature",
        "non-numeric",
        "list-value",
        "nan",
        "infinity",
        "unknown-feature",
        "invalid-json",
        "not-an-object",
        "no-file",
    ],
)
def test_score_rejects_bad_input(intent: str, event: str, fragments: tuple[str, ...]) -> None:
    pairs = [arg for pair in intent.split(",") for arg in ("--intent", pair)]
    result = invoke("score", CONFIG, *pairs, "--features", event)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_nan_is_sent_as_the_json_token() -> None:
    # json.dumps writes NaN as the bare token `NaN`, which Python's json accepts: the CLI
    # must reject the value, not the document.
    assert "NaN" in features(amount=math.nan)


def test_score_on_an_invalid_config_names_the_issues(broken: Deployment) -> None:
    result = invoke("score", str(broken.config), "-i", "tenant=bank1", "-f", features())
    assert result.exit_code == 2
    for path in BROKEN_PATHS:
        assert path in result.stderr


# -- the installed console script -----------------------------------------------------------


def run_muse(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [str(MUSE), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_console_script_exit_codes(broken: Deployment) -> None:
    assert MUSE.is_file(), f"console script not installed at {MUSE}"
    ok = run_muse("validate", CONFIG)
    assert ok.returncode == 0, ok.stderr
    assert "valid (version quickstart-1)" in ok.stdout

    bad = run_muse("validate", str(broken.config))
    assert bad.returncode == 2
    for path in BROKEN_PATHS:
        assert f"- {path}: " in bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr

    intent = run_muse("route", CONFIG, "--intent", "tenant")
    assert intent.returncode == 2
    assert "--intent expects key=value" in intent.stderr
    assert "Traceback" not in intent.stderr


def test_validate_loads_the_models_and_reports_a_corrupt_one(tmp_path: Path) -> None:
    import shutil

    root = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
    for name in ("models", "transforms", "features"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.copy(root / "muse.yaml", tmp_path / "muse.yaml")
    # A features list of the wrong length: the config schema accepts it, only loading the
    # model can tell it does not match the file.
    text = (tmp_path / "muse.yaml").read_text()
    text = text.replace(
        "m1: {backend: lightgbm, uri: models/m1.txt, undersampling: 0.18}",
        "m1: {backend: lightgbm, uri: models/m1.txt, undersampling: 0.18, features: [a, b]}",
    )
    (tmp_path / "muse.yaml").write_text(text)
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "muse.yaml")])
    assert result.exit_code == 2
    assert "m1" in result.stderr
    assert "Traceback" not in result.output


def test_auth_commands_make_and_hash_keys() -> None:

    from muse.serving_config import hash_api_key

    made = CliRunner().invoke(app, ["auth", "new-key"])
    assert made.exit_code == 0
    key = made.stdout.split("key:")[1].split()[0]
    digest = made.stdout.split("hash:")[1].split()[0]
    assert digest == hash_api_key(key)
    hashed = CliRunner().invoke(app, ["auth", "hash-key", "-"], input=key + "\n")
    assert hashed.stdout.strip() == digest
