"""The deployment lifecycle: load → build → check → warm → swap → retire, in one place.

Each claim here could fail: a corrupt model is named as unloadable; warm-up really scores
every predictor (live, shadow, through the feature store) before a version goes live, so
a no-op warm-up fails these tests; preparing changes nothing that serves; a version that
cannot be prepared never becomes live.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from muse.backends.pool import ModelPool
from muse.deployment import Deployment, check_config, describe
from muse.errors import ConfigError, MuseError
from muse.service import ScoringService
from muse.serving.app import MuseApp
from muse.serving.wire import decode_score_request
from tests.cli_support import invoke
from tests.config_fixtures import SAMPLE_EVENT
from tests.config_fixtures import Deployment as Quickstart

PREDICTORS = {"single-v1", "ensemble-v1"}


@pytest.fixture
def quickstart(tmp_path: Path) -> Quickstart:
    return Quickstart.copy_quickstart(tmp_path / "deploy")


class Calls:
    """Rows each model's ``predict`` saw, by model file: the proof that models ran."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Spy on every in-process backend's predict (LightGBM and ONNX for the quickstart)."""
    from muse.backends.lightgbm import LightGBMBackend
    from muse.backends.onnx import OnnxBackend

    calls = Calls()
    for cls in (LightGBMBackend, OnnxBackend):
        original = cls.predict

        def spy(self: object, features: np.ndarray, _orig: object = original) -> object:
            calls.rows.setdefault(repr(self), []).append(int(features.shape[0]))
            return _orig(self, features)  # type: ignore[operator]

        monkeypatch.setattr(cls, "predict", spy)
    return calls


# -- check --------------------------------------------------------------------------------


def test_a_corrupt_model_is_named_as_unloadable(quickstart: Quickstart) -> None:
    (quickstart.root / "models" / "m2.onnx").write_bytes(b"\x00not an onnx graph\x00" * 40)
    loaded, issues = check_config(quickstart.config)
    assert loaded is None
    by_path = {i.path: i.message for i in issues}
    assert "models.m2" in by_path
    assert by_path["models.m2"].startswith("cannot be loaded:")
    # The maps fitted for the old model are still reported as mismatched, beside it.
    assert any("fingerprint mismatch" in i.message for i in issues)
    assert "models.m1" not in by_path  # the intact models load


def test_validate_says_which_model_cannot_be_loaded(quickstart: Quickstart) -> None:
    (quickstart.root / "models" / "m1.txt").write_text("tree\nversion=v4\nnot a model\n")
    result = invoke("validate", str(quickstart.config))
    assert result.exit_code == 2
    assert "  - models.m1: cannot be loaded:" in result.stderr


def test_validate_prints_one_unwrapped_line_under_a_long_path(tmp_path: Path) -> None:
    deep = Quickstart.copy_quickstart(tmp_path.joinpath(*(["a-rather-long-folder-name"] * 8)))
    result = invoke("validate", str(deep.config))
    assert result.exit_code == 0
    assert f"{deep.config}: valid (version quickstart-1)\n" in result.stdout


def test_check_config_accepts_the_quickstart(quickstart: Quickstart) -> None:
    loaded, issues = check_config(quickstart.config)
    assert issues == []
    assert loaded is not None
    assert loaded.version == "quickstart-1"


# -- warm -----------------------------------------------------------------------------------


def test_start_warms_every_predictor_through_routing_and_the_store(
    quickstart: Quickstart, model_calls: Calls
) -> None:
    deployment = Deployment(quickstart.config)
    deployment.start()
    report = deployment.live.warm_up
    assert report is not None
    # bank1's rule → ensemble-v1 live; the catch-all → single-v1; bank2's shadow rule →
    # ensemble-v1 in shadow: every predictor reached through the router.
    assert set(report.live) == PREDICTORS
    assert set(report.shadow) == {"ensemble-v1"}
    assert report.direct == {}
    assert report.store_events > 0
    # The models really ran, on single rows and on batches, before any request.
    assert len(model_calls.rows) == 3
    for rows in model_calls.rows.values():
        assert 1 in rows
        assert max(rows) >= 64
    deployment.close()


def test_warm_up_off_runs_no_model(quickstart: Quickstart, model_calls: Calls) -> None:
    quickstart.replace("lake:\n", "server: {warmup_events: 0}\nlake:\n")
    deployment = Deployment(quickstart.config)
    deployment.start()
    assert deployment.live.warm_up is None
    assert model_calls.rows == {}


def test_unrouted_predictors_are_warmed_directly(
    quickstart: Quickstart, model_calls: Calls
) -> None:
    # No rule routes to ensemble-v1 any more.
    quickstart.replace(
        '      targetPredictorName: "ensemble-v1"', '      targetPredictorName: "single-v1"'
    )
    quickstart.replace(
        '      targetPredictorNames: ["ensemble-v1"]', '      targetPredictorNames: ["single-v1"]'
    )
    deployment = Deployment(quickstart.config)
    deployment.start()
    report = deployment.live.warm_up
    assert report is not None
    assert set(report.direct) == {"ensemble-v1"}
    assert len(model_calls.rows) == 3  # m2 and m3 ran although no rule uses them


def test_the_server_warms_up_through_decode_and_the_micro_batcher(
    quickstart: Quickstart, model_calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    original = decode_score_request

    def counting(body: bytes, max_events: int) -> object:
        decoded.append(len(body))
        return original(body, max_events)

    monkeypatch.setattr("muse.serving.warmup.decode_score_request", counting)
    app = MuseApp(quickstart.config)

    async def main() -> dict[str, object]:
        await app.startup()
        try:
            return describe(app.deployment.live)
        finally:
            await app.shutdown()

    doc = asyncio.run(main())
    warm = doc["warm_up"]
    assert isinstance(warm, dict)
    assert set(warm["live"]) == PREDICTORS
    assert set(warm["shadow"]) == {"ensemble-v1"}
    assert warm["micro_batched"] > 0
    # Single events were merged by the micro-batcher, as concurrent requests are.
    assert app.warmer._batcher.batches > 0
    assert app.warmer._batcher.events > app.warmer._batcher.batches
    # Every request was posted as a JSON body and decoded: batches and singles.
    assert len(decoded) > warm["micro_batched"]
    assert model_calls.rows
    # Nothing of warm-up reached the lake.
    assert list((quickstart.root / "lake").rglob("*.parquet")) == []


# -- swap -------------------------------------------------------------------------------


def test_prepare_changes_nothing_until_activated(quickstart: Quickstart) -> None:
    deployment = Deployment(quickstart.config)
    deployment.start()
    before = deployment.snapshot
    quickstart.replace("version: quickstart-1", "version: quickstart-2")
    prepared = deployment.prepare()
    assert deployment.snapshot is before
    assert prepared.version == "quickstart-2"
    deployment.activate(prepared)
    assert deployment.version == "quickstart-2"


def test_a_version_that_fails_to_prepare_never_goes_live(quickstart: Quickstart) -> None:
    pool = ModelPool()
    deployment = Deployment(quickstart.config, pool=pool)
    deployment.start()
    service = ScoringService(deployment)
    score = service.score({"tenant": "bank1"}, SAMPLE_EVENT).score
    (quickstart.root / "models" / "m3.onnx").write_bytes(b"broken")
    with pytest.raises(ConfigError):
        deployment.reload()
    assert deployment.version == "quickstart-1"
    assert service.score({"tenant": "bank1"}, SAMPLE_EVENT).score == score
    assert len(pool) == 3  # nothing of the failed version stays loaded


def test_a_server_needs_an_auth_section(quickstart: Quickstart) -> None:
    quickstart.replace("auth: none ", "# auth: none ")
    with pytest.raises(ConfigError, match="no `auth` section"):
        Deployment(quickstart.config, require_auth=True).start()
    # The library does not serve anyone: no auth section is fine there.
    Deployment(quickstart.config).start()


def test_the_live_version_is_unavailable_before_start(quickstart: Quickstart) -> None:
    deployment = Deployment(quickstart.config)
    assert not deployment.started
    with pytest.raises(MuseError, match="not started"):
        _ = deployment.snapshot


def test_only_a_server_warns_that_authentication_is_off(
    quickstart: Quickstart, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="muse.deployment"):
        Deployment(quickstart.config).start()
        assert "AUTHENTICATION IS OFF" not in caplog.text
        Deployment(quickstart.config, require_auth=True).start()
        assert "AUTHENTICATION IS OFF" in caplog.text
