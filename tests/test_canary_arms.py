"""Comparing a canary split's arms, each on the events it served: the gate
(:func:`compare_arms`), the report over a real lake (:func:`arms_report`) and
``muse report compare --arms``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from muse.evaluation.compare import compare_arms
from muse.evaluation.reports import ReportError, arms_report
from muse.scorelog import LakeReader
from muse.transforms import Reference
from tests.cli_support import invoke
from tests.config_fixtures import Deployment
from tests.lifecycle_fixtures import filled_lake, write_labels

R = Reference.beta(0.8, 9.0)
THRESHOLDS = {"review": 0.25, "block": 0.42}


def draw(n: int, seed: int, a: float = 0.8, b: float = 9.0) -> np.ndarray:
    return np.random.default_rng(seed).beta(a, b, size=n)


def statuses(c: object) -> dict[str, str]:
    return {ch.metric: ch.status for ch in c.checks}  # type: ignore[attr-defined]


def test_two_arms_that_both_follow_r_pass() -> None:
    c = compare_arms(
        draw(20_000, 1), draw(5_000, 2), reference=R, thresholds=THRESHOLDS,
        control="v1", candidate="v2",
    )  # fmt: skip
    assert c.passed, c.checks
    assert not c.paired
    assert c.live_n == 20_000
    assert c.n == 5_000
    assert statuses(c)["events per arm"] == "pass"
    assert statuses(c)["action changes"] == "info"  # no pairs to count


def test_an_arm_off_the_reference_fails_alert_rates_and_alignment() -> None:
    c = compare_arms(draw(20_000, 1), draw(20_000, 2, b=5.0), reference=R, thresholds=THRESHOLDS)
    s = statuses(c)
    assert s["alert rate at review >= 0.25"] == "fail"
    assert s["alignment to R: proven max |rel. error|"] == "fail"
    assert not c.passed


def test_a_worse_ranking_arm_fails_with_labels() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    ya, yb = rng.random(n) < 0.05, rng.random(n) < 0.05
    good = np.where(ya, draw(n, 4, a=3.0, b=3.0), draw(n, 5))  # positives score high
    bad = draw(n, 6)  # the candidate ranks at random
    c = compare_arms(good, bad, reference=R, thresholds={}, control_labels=ya, candidate_labels=yb)
    s = statuses(c)
    assert s["recall at 1.0% FPR"] == "fail"
    assert s["PR-AUC"] == "fail"


def test_small_arms_fail_the_events_check() -> None:
    c = compare_arms(draw(100, 1), draw(50, 2), reference=R, thresholds=THRESHOLDS)
    assert statuses(c)["events per arm"] == "fail"


def test_bad_calls_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="no events in arm 'v2'"):
        compare_arms(draw(10, 1), [], reference=R, thresholds={}, candidate="v2")
    with pytest.raises(ValueError, match="both arms or for neither"):
        compare_arms(draw(10, 1), draw(10, 2), reference=R, thresholds={}, control_labels=[0] * 10)
    with pytest.raises(ValueError, match="one value per event"):
        compare_arms(
            draw(10, 1), draw(10, 2), reference=R, thresholds={},
            control_labels=[0, 1] * 5, candidate_labels=[0, 1],
        )  # fmt: skip


@settings(max_examples=40, deadline=None)
@example(scores=[0.0] * 400, cut=0.01)  # no alert in either arm (a control without alerts)
@given(
    scores=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=400),
    cut=st.floats(0.01, 0.99),
)
def test_an_arm_never_proves_itself_different(scores: list[float], cut: float) -> None:
    """The same sample on both sides: no alert-rate check can fail (the intervals are the
    same), and the alignment check judges both alike."""
    c = compare_arms(scores, scores, reference=R, thresholds={"act": cut})
    s = statuses(c)
    assert s[f"alert rate at act >= {cut:g}"] == "pass"
    rows = {ch.metric: ch for ch in c.checks}
    alignment = rows["alignment to R: proven max |rel. error|"]
    assert alignment.live == alignment.candidate


# -- over a real lake ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_lake(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """bank2 split 70/30 between single-v1 and ensemble-v1 (both fitted for bank2), 12k
    events of quickstart traffic replayed into the lake, labels for them."""
    d = Deployment.copy_quickstart(tmp_path_factory.mktemp("arms") / "quickstart")
    doc = d.doc()
    doc["tenants"] = {"bank2": {"thresholds": THRESHOLDS}}
    doc["model_ci"] = {"min_events": 500}
    doc["routing"]["scoringRules"].insert(
        0,
        {
            "description": "canary for bank2",
            "condition": {"tenants": ["bank2"]},
            "targets": [
                {"predictor": "single-v1", "weight": 70},
                {"predictor": "ensemble-v1", "weight": 30},
            ],
            "stickyBy": "card_id",
        },
    )
    d.write(doc)
    _, frame = filled_lake(d, 12_000)
    write_labels(frame, d.root / "labels.parquet")
    return d


def test_the_arms_report_reads_each_arms_own_events(split_lake: Deployment) -> None:
    loaded = split_lake.load()
    with LakeReader(split_lake.root / "lake", labels=split_lake.root / "labels.parquet") as r:
        report = arms_report(loaded, r, "single-v1", "ensemble-v1", "bank2", with_labels=True)
        control = r.scores("single-v1", "bank2", role="live")
        candidate = r.scores("ensemble-v1", "bank2", role="live")
        # bank2's events were all split, so each arm's rows are its live rows
        assert report.comparison.live_n == control.num_rows
        assert report.comparison.n == candidate.num_rows
        assert control.num_rows + candidate.num_rows == 4_000  # every bank2 event once
        share = candidate.num_rows / 4_000
        assert abs(share - 0.30) < 4 * np.sqrt(0.3 * 0.7 / 4_000)
        # bank1 was not split: its live rows carry no arm
        assert r.scores("ensemble-v1", "bank1", as_arm=True).num_rows == 0
        assert r.scores("ensemble-v1", "bank1", role="live").num_rows > 0
    metrics = {c.metric for c in report.comparison.checks}
    assert {"recall at 1.0% FPR", "PR-AUC", "alert rate at block >= 0.42"} <= metrics


def test_muse_report_compare_arms(split_lake: Deployment, tmp_path: Path) -> None:
    out = tmp_path / "ci"
    r = invoke(
        "report", "compare", str(split_lake.config), "--arms", "--live", "single-v1",
        "--candidate", "ensemble-v1", "-t", "bank2", "--out", str(out),
        "--labels", str(split_lake.root / "labels.parquet"),
    )  # fmt: skip
    # both arms map bank2 onto R with fitted maps: nothing proves them apart
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    text = (out / "report.md").read_text()
    assert "Canary arms — ensemble-v1 vs single-v1 for bank2" in text
    assert "events per arm" in text
    assert "alignment to R" in text
    assert (out / "alignment.png").stat().st_size > 10_000


def test_arms_without_split_rows_are_a_clear_error(split_lake: Deployment) -> None:
    r = invoke(
        "report", "compare", str(split_lake.config), "--arms", "--live", "single-v1",
        "--candidate", "ensemble-v1", "-t", "bank1",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "no events a canary split sent" in r.output
    loaded = split_lake.load()
    with LakeReader(split_lake.root / "lake") as reader, pytest.raises(ReportError):
        arms_report(loaded, reader, "single-v1", "ensemble-v1", "fintech3")


def test_a_lake_of_format_1_has_no_arms(tmp_path: Path) -> None:
    """Files written before the arm column read as rows without an arm."""
    import pyarrow.parquet as pq

    from muse.scorelog import rows_to_table
    from tests.scorelog.rows import make_rows

    table = rows_to_table(make_rows(5)).drop_columns(["arm"])
    folder = tmp_path / "lake" / "date=2026-11-22" / "predictor=ensemble-v1"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    with LakeReader(tmp_path / "lake") as reader:
        assert reader.scores("ensemble-v1", "bank1", as_arm=True).num_rows == 0
        assert reader.scores("ensemble-v1", "bank1").num_rows == 5
