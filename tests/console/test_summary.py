"""The console's lake histograms against DuckDB reading the same files directly: counts per
key, alert counts at thresholds and levels, events per day, incremental refresh."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.console.summary import Binning, LakeSummary, score_edges
from muse.fitting import DEFAULT_LEVELS, drift_verdict, judge_alert_counts, level_threshold
from muse.scorelog import LakeRow, LakeWriter
from muse.transforms import Reference

R = Reference.beta(0.8, 9.0)
DAY0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
THRESHOLDS = (0.35, 0.6)


def rows(n: int, seed: int, *, start: int = 0, days: int = 3) -> list[LakeRow]:
    """Rows of two predictors, three tenants, two roles and two map versions over ``days``."""
    rng = np.random.default_rng(seed)
    scores = R.ppf(rng.random(n) ** rng.uniform(0.7, 1.3))
    out = []
    for i in range(n):
        tenant = ("bank1", "bank2", "shop3")[i % 3]
        out.append(
            LakeRow(
                event_id=f"e{start + i}",
                timestamp=DAY0 + timedelta(days=int(rng.integers(days)), seconds=i),
                tenant=tenant,
                intent={"tenant": tenant},
                predictor=("p1", "p2")[int(rng.integers(2))],
                role=("live", "shadow")[int(rng.integers(2))],
                fingerprint="sha256:x",
                tq_version=("v1", "v2")[i % 2],
                raw=float(scores[i]),
                score=float(scores[i]),
                experts={"m": float(scores[i])},
                latency_ms=0.1,
                config_version="c1",
            )
        )
    return out


def write(lake: Path, batch: list[LakeRow]) -> None:
    with LakeWriter(str(lake), max_rows_per_file=700) as writer:
        writer.append(batch)


def summary(lake: Path) -> LakeSummary:
    binning = Binning(R, levels=(0.02,), thresholds=THRESHOLDS)
    return LakeSummary(str(lake), {"p1": binning, "p2": binning})


def test_counts_alerts_and_days_agree_with_duckdb(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write(lake, rows(6_000, 1))
    s = summary(lake)
    assert s.refresh() > 3  # several files: predictors x days x max_rows_per_file
    con = duckdb.connect()
    for predictor in ("p1", "p2"):
        for tenant in ("bank1", "shop3"):
            hist = s.counts(predictor, tenant=tenant, role="live")
            base = "predictor = ? AND tenant = ? AND role = 'live'"
            args: list[object] = [predictor, tenant]
            q = f"SELECT count(*) FROM read_parquet('{lake}/**/*.parquet', hive_partitioning=true) WHERE {base}"
            assert hist.n == con.execute(q, args).fetchall()[0][0]
            for t in (*THRESHOLDS, *(level_threshold(R, a) for a in (0.02, *DEFAULT_LEVELS))):
                (expected,) = con.execute(q + " AND score > ?", [*args, t]).fetchall()[0]
                assert hist.above(t) == expected
            day = s.counts(
                predictor, tenant=tenant, first=date(2026, 11, 21), last=date(2026, 11, 21)
            )
            (on_day,) = con.execute(
                f"SELECT count(*) FROM read_parquet('{lake}/**/*.parquet', hive_partitioning=true) "
                "WHERE predictor = ? AND tenant = ? AND date = DATE '2026-11-21'",
                args,
            ).fetchall()[0]
            assert day.n == on_day
    assert s.rows_read == 6_000


def test_a_verdict_from_histograms_is_the_verdict_from_the_scores(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    batch = rows(30_000, 2, days=1)
    write(lake, batch)
    s = summary(lake)
    s.refresh()
    scores = np.array(
        [r.score for r in batch if r.predictor == "p1" and r.tenant == "bank2" and r.role == "live"]
    )
    direct = drift_verdict(scores, R, DEFAULT_LEVELS)
    hist = s.counts("p1", tenant="bank2", role="live")
    alerts = {a: hist.above(level_threshold(R, a)) for a in DEFAULT_LEVELS}
    from_counts = judge_alert_counts(hist.n, alerts, R, ks=hist.ks(R))
    assert from_counts.verdict == direct.verdict
    assert from_counts.levels == direct.levels
    assert from_counts.ks <= direct.ks + 1e-12  # measured at the edges only
    assert from_counts.ks >= direct.ks - 0.011  # edges every percent of R's mass


def test_refresh_reads_only_new_files(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write(lake, rows(2_000, 3))
    s = summary(lake)
    first = s.refresh()
    assert s.refresh() == 0
    before = s.counts("p1").n
    write(lake, rows(1_000, 4, start=2_000))
    assert s.refresh() > 0
    assert s.files_read > first
    assert s.counts("p1").n == before + sum(1 for r in rows(1_000, 4) if r.predictor == "p1")
    assert s.rows_read == 3_000


def test_an_empty_or_missing_lake_has_no_counts(tmp_path: Path) -> None:
    s = summary(tmp_path / "nothing-yet")
    assert s.refresh() == 0
    assert s.counts("p1").n == 0
    assert s.days() is None
    assert s.totals() == {}


def test_per_day_alert_rates_and_totals(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    batch = rows(3_000, 5)
    write(lake, batch)
    s = summary(lake)
    s.refresh()
    days = s.per_day("p2", "bank1", {"review": 0.35})
    mine = [r for r in batch if r.predictor == "p2" and r.tenant == "bank1" and r.role == "live"]
    assert sum(d["events"] for d in days) == len(mine)
    for d in days:
        on = [r for r in mine if r.timestamp.date() == d["day"]]
        assert d["events"] == len(on)
        assert d["alert_rates"]["review"] == pytest.approx(
            sum(r.score > 0.35 for r in on) / len(on)
        )
    totals = s.totals(role="live")
    assert totals["bank1", "p2"]["events"] == len(mine)
    assert totals["bank1", "p2"]["latest"][0] in ("v1", "v2")


def test_an_edge_is_required_for_an_exact_alert_count(tmp_path: Path) -> None:
    s = summary(tmp_path)
    with pytest.raises(ValueError, match="not an edge"):
        s.counts("p1").above(0.123456)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.001, 0.5), max_size=4), st.lists(st.floats(0.0, 1.0), max_size=4))
def test_edges_are_sorted_unique_and_hold_every_level_and_threshold(
    levels: list[float], thresholds: list[float]
) -> None:
    edges = score_edges(R, levels, thresholds)
    assert np.all(np.diff(edges) > 0)
    for a in (*levels, *DEFAULT_LEVELS):
        assert level_threshold(R, a) in edges
    for t in thresholds:
        assert t in edges


def test_a_bad_file_is_skipped_and_said_not_fatal(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write(lake, rows(1_000, 6))
    bad = lake / "date=2026-11-19" / "predictor=p1" / "part-0000bad.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet")
    s = summary(lake)
    s.refresh()
    assert str(bad) in s.unreadable
    assert s.rows_read == 1_000  # the files after it were read
    write(lake, rows(500, 7, start=1_000))
    s.refresh()
    assert s.rows_read == 1_500
