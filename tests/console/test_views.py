"""What the console's pages compute, checked against the library and DuckDB directly."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from muse.console import views
from muse.evaluation.reports import alignment_report
from muse.fitting import drift_verdict, threshold_levels
from muse.scorelog import LakeReader
from tests.console.conftest import EVENTS, Fleet


def test_the_fleet_lists_versions_with_their_states(fleet: Fleet) -> None:
    page = views.fleet(fleet.state.snapshot())
    states = {v["id"]: v["state"] for v in page["versions"]}
    assert states == {fleet.first: "active", fleet.second: "published"}
    assert page["active"] == fleet.first
    assert page["replicas"] == []


def test_the_tenants_table_counts_what_duckdb_counts(fleet: Fleet) -> None:
    snap = fleet.state.snapshot()
    win = views.last_days(snap, 366)
    assert win is not None
    rows = {r.tenant: r for r in views.tenant_rows(snap, win)}
    assert set(rows) == {"bank1", "bank2", "fintech3"}
    assert rows["bank1"].predictor == "ensemble-v1"
    assert rows["bank2"].predictor == "single-v1"
    con = duckdb.connect()
    for tenant, row in rows.items():
        ((n,),) = con.execute(
            f"SELECT count(*) FROM read_parquet('{fleet.lake}/**/*.parquet', "
            "hive_partitioning=true) WHERE tenant = ? AND role = 'live' AND predictor = ?",
            [tenant, row.predictor],
        ).fetchall()
        assert row.events == n
        assert row.events_per_day == pytest.approx(n / win.days)
    assert sum(r.events for r in rows.values()) == EVENTS


def test_a_tenant_verdict_is_the_drift_monitors(fleet: Fleet) -> None:
    snap = fleet.state.snapshot()
    config = snap.loaded
    assert config is not None
    row = next(
        r for r in views.tenant_rows(snap, views.last_days(snap, 366)) if r.tenant == "bank2"
    )
    assert row.verdict is not None
    with LakeReader(str(fleet.lake)) as reader:
        table = reader.scores("single-v1", "bank2", role="live")
    scores = np.asarray(table.column("score").to_numpy(), dtype=np.float64)
    versions = np.asarray(table.column("tq_version").to_pylist())
    reference = config.references[config.spec.predictors["single-v1"].reference]
    levels = threshold_levels(row.thresholds, reference)
    direct = drift_verdict(scores[versions == row.map_version], reference, levels)
    assert row.verdict.verdict == direct.verdict
    assert row.verdict.levels == direct.levels


def test_the_alignment_bins_are_the_alignment_reports(fleet: Fleet) -> None:
    snap = fleet.state.snapshot()
    config = snap.loaded
    assert config is not None
    assert snap.summary is not None
    hist = snap.summary.counts("ensemble-v1", tenant="bank1", role="live")
    rows = views.alignment(hist, config, "ensemble-v1")
    with LakeReader(str(fleet.lake)) as reader:
        report = alignment_report(config, reader, ["ensemble-v1"], "bank1", role="live")
    expected = report.series["ensemble-v1"].bins
    assert [r.count for r in rows] == [b.count for b in expected]
    for mine, theirs in zip(rows, expected, strict=True):
        assert mine.expected_share == pytest.approx(theirs.expected_share)
        assert mine.relative_error == pytest.approx(theirs.relative_error)
        assert mine.error_low == pytest.approx(theirs.error_low)
        assert mine.error_high == pytest.approx(theirs.error_high)


def test_a_promotion_lists_what_changes(fleet: Fleet) -> None:
    old = fleet.state.config(fleet.first)
    new = fleet.state.config(fleet.second)
    changes = {(c.kind, c.name): (c.before, c.after) for c in views.promotion_changes(old, new)}
    assert ("predictor", "ensemble-v1") in changes
    assert changes["map", "single-v1 / bank1"] == ("v1", "v2")
    assert not any(kind == "route" for kind, _ in changes)
    assert views.promotion_changes(old, old) == []


def test_the_intent_tester_routes_as_the_service_does(fleet: Fleet) -> None:
    config = fleet.state.config(fleet.first)
    assert views.route_intent(config, {"tenant": "bank2"})["live"] == "single-v1"
    assert views.route_intent(config, {"tenant": "bank2"})["shadows"] == ["ensemble-v1"]
    assert "error" in views.route_intent(config, {"nonsense": "x"})


def test_concurrent_refreshes_count_every_lake_file_once(fleet: Fleet) -> None:
    """The background thread and a page that just promoted may refresh at once."""
    import threading

    from muse.console import ConsoleState

    state = ConsoleState(fleet.store, fleet.root / "cache-concurrent", lake=str(fleet.lake))
    threads = [threading.Thread(target=state.refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    summary = state.snapshot().summary
    assert summary is not None
    assert summary.rows_read == fleet.state.snapshot().summary.rows_read  # type: ignore[union-attr]


def test_a_split_is_shown_as_its_arms(fleet: Fleet) -> None:
    """The routing page, the intent tester and a promotion's changes name every arm."""
    import dataclasses

    from muse.routing import Router

    old = fleet.state.config(fleet.first)
    block = old.router.to_config()
    block["scoringRules"][-1] = {
        "condition": {},
        "targets": [
            {"predictor": "single-v1", "weight": 3},
            {"predictor": "ensemble-v1", "weight": 1},
        ],
        "stickyBy": "card_id",
    }
    router = Router.from_config(block, attributes=old.router.attributes)
    new = dataclasses.replace(old, router=router)
    page = views.routing(new)
    assert page["scoring"][-1]["target"] == (
        "split: single-v1 75%, ensemble-v1 25% (sticky by card_id)"
    )
    tested = views.route_intent(new, {"tenant": "fintech3"})
    assert tested["live"] == "split by card_id: single-v1 75%, ensemble-v1 25%"
    changes = {(c.kind, c.name): c.after for c in views.promotion_changes(old, new)}
    assert any(
        kind == "route" and "split: single-v1 75%" in str(after)
        for (kind, _), after in changes.items()
    ), changes
