"""``muse demo``: the lifecycle end to end at reduced scale, and the results that could fail.

One run (scale 0.3: 7,500 events per tenant and week, fits forced below Eq. 5) is shared
by the module; each test checks one claim of the paper the demo reproduces — a claim that
a regression in the commands it drives, or in the maths behind them, would break.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from muse.cli import app, invoke
from muse.demo import DemoResult, OutputExistsError, run_demo
from muse.demo.deployment import Stage, config_text
from muse.demo.world import TENANTS, make_world

SCALE = 0.3


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    out = tmp_path_factory.mktemp("demo") / "out"
    return run_demo(
        out, seed=0, scale=SCALE, console=Console(file=io.StringIO(), width=120), commands=invoke
    )


def test_newbank_alignment_improves_on_its_own_map(demo: DemoResult) -> None:
    errors = demo.new_tenant.tail_error
    assert errors["v1"] < errors["default-v0"], errors


def test_the_p15_config_is_refused_for_its_fingerprint(demo: DemoResult) -> None:
    assert "fingerprint mismatch" in demo.model_update.refusal
    assert (demo.out / "deployment" / "muse-p1.5.yaml").is_file()
    assert any(c.startswith("muse validate deployment/muse-p1.5.yaml") for c in demo.commands)


def test_p15_is_misaligned_where_p2_is_aligned(demo: DemoResult) -> None:
    proven = demo.model_update.fig6.proven_error
    assert proven["p1.5"] > proven["p2"] + 0.2, proven


def test_a_monotone_map_keeps_the_ranking_and_m3_adds_signal(demo: DemoResult) -> None:
    recall = demo.model_update.fig6.recall
    assert recall["p1.5"] == recall["p2"]
    assert recall["p2"] > recall["p1"], recall


def test_the_gate_passes_p2_and_it_is_promoted(demo: DemoResult) -> None:
    assert demo.model_update.gate_exit == 0
    assert demo.model_update.promoted
    gate = (demo.out / "reports" / "2-model-update" / "gate" / "report.md").read_text()
    assert "PASS" in gate


def test_posterior_correction_lowers_ece(demo: DemoResult) -> None:
    rows = demo.calibration.live + demo.calibration.validation
    assert {r.name for r in demo.calibration.live} == {"m1", "m2", "m3", "ensemble"}
    for row in rows:
        assert row.ece_corrected < row.ece_raw, row


def test_small_samples_are_fitted_only_with_force_and_said_so(demo: DemoResult) -> None:
    fits = [c for c in demo.commands if c.startswith("muse fit quantiles")]
    assert len(fits) == 3
    assert all(c.endswith("--force") for c in fits)
    assert demo.forced_fits
    assert "fits forced" in (demo.out / "summary.md").read_text()


def test_the_output_folder_holds_deployment_reports_and_summary(demo: DemoResult) -> None:
    out = demo.out
    for path in (
        "deployment/muse.yaml",
        "deployment/models/m3.txt",
        "deployment/transforms/p1/default/v0.json",
        "deployment/transforms/p1/tenants/newbank/v1.json",
        "deployment/transforms/p2/tenants/bank1/v1.json",
        "reports/1-new-tenant/alignment.png",
        "reports/2-model-update/fig6-alignment.png",
        "reports/2-model-update/after-promotion/report.md",
        "reports/3-calibration/report.md",
        "reports/3-calibration/validation.md",
    ):
        assert (out / path).is_file(), path
    assert (out / "deployment" / "muse.yaml").read_text() == config_text(Stage.PROMOTED)


def test_summary_has_a_row_per_case(demo: DemoResult) -> None:
    text = (demo.out / "summary.md").read_text()
    for line in (
        "| newbank | p1, cold-start default map (default-v0) | 3 |",
        "| newbank | p1, own map (v1) | 4 |",
        "| bank1 | p1 (live), own map v1 | 6 |",
        "| bank1 | p1.5: p2 + p1's map (refused; offline) | 6 |",
        "| bank1 | p2 (shadow), own map v1 | 6 |",
        *(f"| {t} | p2 (live) after promotion | 7 |" for t in TENANTS),
        "| shop3 | p2, drifted | 8 |",
        "| shop3 | p2, refreshed | 10 |",
    ):
        assert line in text, line
    assert len(demo.rows) == 5 + len(TENANTS) + 2
    for row in demo.rows:
        assert row.expected["review"] == pytest.approx(0.05, abs=1e-4)
        assert row.expected["block"] == pytest.approx(0.005, abs=1e-5)
        assert row.events > 0


def test_drift_is_repaired_by_one_unattended_refresh_pass(demo: DemoResult) -> None:
    """Scenario 4: shop3's shifted traffic breaks its alert rate at the review threshold;
    one `muse refresh` pass refits, validates and promotes; the next week is back on R."""
    s4 = demo.drift
    assert s4.action == "refit"
    assert s4.before.error("review") > 0.25, s4.before
    assert abs(s4.after.error("review")) < 0.15, s4.after
    assert abs(s4.after.error("review")) < abs(s4.before.error("review")) / 3
    refreshes = [c for c in demo.commands if c.startswith("muse refresh")]
    assert refreshes[0].startswith("muse refresh --store deployment/store --lake deployment/lake")
    assert refreshes[-1] == "muse refresh --store deployment/store --history 1"
    assert (demo.out / "deployment" / "store" / "refresh").is_dir()
    assert "Scenario 4 (§5, drift): shop3" in (demo.out / "summary.md").read_text()


def test_the_world_is_deterministic_given_the_seed() -> None:
    a, b = make_world(3, 0.01), make_world(3, 0.01)
    assert (a.frame.event_id == b.frame.event_id).all()
    assert (a.frame.features["amount"] == b.frame.features["amount"]).all()
    assert not (
        make_world(4, 0.01).frame.features["amount"][:10] == a.frame.features["amount"][:10]
    ).all()
    # shop3's drifted weeks: its own frame, ids that the main frame never uses
    drifted = a.week(8, ["shop3"])
    assert len(drifted) > 0
    assert set(drifted.event_id.tolist()).isdisjoint(a.frame.event_id.tolist())
    assert (a.week(8, ["shop3"]).event_id == b.week(8, ["shop3"]).event_id).all()


def test_a_non_empty_out_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        run_demo(tmp_path, scale=0.01, console=Console(file=io.StringIO()))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--scale", "0.01"])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_cli_rejects_a_scale_out_of_range(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "o"), "--scale", "0"])
    assert result.exit_code == 2
    assert "--scale" in result.output
