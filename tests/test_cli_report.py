"""``muse report``: the model-CI gate end to end on a real lake, alignment and calibration.

The gate scenario: ensemble-v1 shadows single-v1 for bank2. With a stale bank2 map the
gate fails (exit 1); after ``muse fit quantiles`` writes a fresh map from the shadow rows
and new traffic is scored with it, the gate passes (exit 0).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from muse.artifacts import QuantileArtifact, reference_digest, write_artifact
from muse.config import load_config
from muse.scorelog import LakeReader
from muse.transforms import QuantileMap
from tests.cli_support import invoke
from tests.config_fixtures import Deployment
from tests.lifecycle_fixtures import days_after, filled_lake, write_labels

THRESHOLDS = {"review": 0.25, "block": 0.42}


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """bank2 with thresholds, a lake of 12k events, labels for them."""
    d = Deployment.copy_quickstart(tmp_path_factory.mktemp("report") / "quickstart")
    doc = d.doc()
    doc["tenants"] = {"bank2": {"thresholds": THRESHOLDS}}
    doc["model_ci"] = {"min_events": 1000}
    d.write(doc)
    _, frame = filled_lake(d, 12_000)
    write_labels(frame, d.root / "labels.parquet")
    return d


@pytest.fixture
def deployment(gated: Deployment, tmp_path: Path) -> Deployment:
    dest = tmp_path / "d"
    shutil.copytree(gated.root, dest)
    return Deployment(dest)


def compare(d: Deployment, *extra: str) -> Result:
    return invoke(
        "report",
        "compare",
        str(d.config),
        "--live",
        "single-v1",
        "--candidate",
        "ensemble-v1",
        "-t",
        "bank2",
        *extra,
    )


def test_the_gate_passes_a_candidate_with_a_fitting_map(deployment: Deployment) -> None:
    out = deployment.root / "ci"
    r = compare(deployment, "--labels", str(deployment.root / "labels.parquet"), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    text = (out / "report.md").read_text()
    for metric in (
        "action changes",
        "alert rate at review >= 0.25",
        "recall at 1.0% FPR",
        "PR-AUC",
    ):
        assert metric in text
    assert text.count("| ✓ |") == 7
    assert (out / "alignment.png").stat().st_size > 10_000
    lines = (out / "events.csv").read_text().splitlines()
    assert lines[0] == "event_id,score,live_score,abs_score_diff,action,live_action"
    assert len(lines) == 1 + 4_000  # every paired bank2 event


def test_a_stale_map_fails_the_gate_and_a_fresh_one_passes(deployment: Deployment) -> None:
    loaded = load_config(deployment.config)
    reference = loaded.references["fraud-v1"]
    with LakeReader(deployment.root / "lake") as reader:
        raw = reader.raw_scores("ensemble-v1", "bank2")
    # Stale: fitted when the ensemble scored this tenant 30 % lower.
    stale = QuantileArtifact(
        quantile_map=QuantileMap.fit(raw * 0.7, reference),
        fingerprint=loaded.fingerprints["ensemble-v1"],
        reference="fraud-v1",
        reference_digest=reference_digest(reference),
        version=2,
        tenant="bank2",
        predictor="ensemble-v1",
    )
    write_artifact(deployment.root / "transforms" / "ensemble-v1", stale)
    shutil.rmtree(deployment.root / "lake")
    filled_lake(deployment, 12_000, seed=8, start=days_after(10))
    r = compare(deployment, "--since", days_after(10).date().isoformat())
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output
    assert "alignment to R" in r.output.split("FAIL:")[-1]

    # Fit a fresh map from the shadow rows, serve new traffic with it, compare again.
    fit = invoke(
        "fit",
        "quantiles",
        str(deployment.config),
        "-p",
        "ensemble-v1",
        "-t",
        "bank2",
        "--alert-rate",
        "0.02",
        "--rel-error",
        "0.3",
    )
    assert fit.exit_code == 0, fit.output
    assert deployment.artifact("ensemble-v1", "bank2", 3).exists()
    filled_lake(deployment, 12_000, seed=9, start=days_after(20))
    r = compare(deployment, "--since", days_after(20).date().isoformat())
    assert r.exit_code == 0, r.output
    assert "candidate T^Q v3" in r.output


def test_compare_errors_exit_2(deployment: Deployment) -> None:
    r = invoke(
        "report", "compare", str(deployment.config), "--live", "single-v1",
        "--candidate", "ensemble-v1", "-t", "bank1",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "no events scored by both" in r.output
    r = invoke(
        "report", "compare", str(deployment.config), "--live", "single-v9",
        "--candidate", "ensemble-v1", "-t", "bank2",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "no predictor 'single-v9'" in r.output
    r = compare(deployment, "--labels", str(deployment.root / "nope.parquet"))
    assert r.exit_code == 2
    assert "nope.parquet" in r.output


def test_alignment_report_of_two_predictors(deployment: Deployment) -> None:
    out = deployment.root / "al"
    r = invoke(
        "report", "alignment", str(deployment.config), "-p", "single-v1@v1",
        "-p", "ensemble-v1", "-t", "bank2", "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "single-v1@v1: 4,000 events" in r.output.replace("\n", " ")
    text = (out / "report.md").read_text()
    assert "| bin | expected |" in text
    assert (out / "alignment.png").exists()
    r = invoke(
        "report", "alignment", str(deployment.config), "-p", "single-v1@v7", "-t", "bank2",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "T^Q versions present: ['v1']" in r.output


def test_calibration_report(deployment: Deployment) -> None:
    out = deployment.root / "cal"
    r = invoke(
        "report", "calibration", str(deployment.config), "-p", "ensemble-v1", "-t", "bank1",
        "--labels", str(deployment.root / "labels.parquet"), "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    text = (out / "report.md").read_text()
    for name in ("| m1 |", "| m2 |", "| m3 |", "| ensemble |", "ECE corrected"):
        assert name in text
    assert (out / "reliability.png").stat().st_size > 10_000


# -- the same reports as library workflows: values, not renderings -------------------------


def test_reports_are_library_workflows_that_return_values(deployment: Deployment) -> None:
    """What the commands render, a pipeline gets as values: the gate's pass and checks,
    the per-bin alignment, the calibration rows — the same figures the CLI prints."""
    from muse.evaluation.reports import alignment_report, calibration_report, compare_report

    loaded = load_config(deployment.config)
    labels = deployment.root / "labels.parquet"
    with LakeReader(str(deployment.root / "lake"), labels=labels) as reader:
        gate = compare_report(loaded, reader, "single-v1", "ensemble-v1", "bank2", with_labels=True)
        aligned = alignment_report(loaded, reader, ["single-v1@v1", "ensemble-v1"], "bank2")
        calib = calibration_report(loaded, reader, "ensemble-v1", "bank1")
    assert gate.passed
    assert gate.comparison.n == len(gate.event_ids) == 4_000
    assert gate.comparison.thresholds == THRESHOLDS
    assert {c.metric for c in gate.comparison.checks} >= {"action changes", "PR-AUC"}
    assert gate.live_scores.shape == gate.candidate_scores.shape == (4_000,)
    assert aligned.reference == loaded.spec.predictors["single-v1"].reference
    assert aligned.series["single-v1@v1"].n == 4_000
    assert calib.n == int(calib.labels.size) > 0
    assert 0 < calib.positives < calib.n
    assert [r.name for r in calib.rows][-1] == "ensemble"
    assert calib.corrected.shape == calib.uncorrected.shape == (calib.n,)
    assert not np.array_equal(calib.corrected, calib.uncorrected)  # T^C moved the scores


def test_report_workflows_name_what_is_missing(deployment: Deployment) -> None:
    from muse.evaluation.reports import ReportError, alignment_report, compare_report

    loaded = load_config(deployment.config)
    with LakeReader(str(deployment.root / "lake")) as reader:
        with pytest.raises(ReportError, match="no events scored by both"):
            compare_report(loaded, reader, "single-v1", "ensemble-v1", "bank1")
        with pytest.raises(ReportError, match="no predictor 'single-v9'"):
            compare_report(loaded, reader, "single-v9", "ensemble-v1", "bank2")
        with pytest.raises(ReportError, match=r"T\^Q versions present: \['v1'\]"):
            alignment_report(loaded, reader, ["single-v1@v7"], "bank2")
        with pytest.raises(ReportError, match="role must be live, shadow or any"):
            alignment_report(loaded, reader, ["single-v1"], "bank2", role="all")
