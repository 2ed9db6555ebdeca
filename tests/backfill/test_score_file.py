"""``muse score-file``: a file of events through the serving path, into the rows the
service would write — checked row for row against the service, with bad rows named by
line, and interrupted runs resumed without losing or repeating a row."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from muse.backfill import BackfillError, score_file
from muse.scorelog import LAKE_SCHEMA, LakeReader, rows_to_table
from muse.scorelog.results import result_rows
from muse.service import ScoringService
from tests.cli_support import invoke
from tests.config_fixtures import Deployment
from tests.lifecycle_fixtures import quickstart_traffic

INTENT = ("tenant", "geography", "channel", "schema")


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 events of the quickstart's tenants, with ids, times and labels."""
    path = tmp_path_factory.mktemp("events") / "events.parquet"
    pq.write_table(quickstart_traffic(3_000, seed=5).to_arrow(), path)
    return path


@pytest.fixture(scope="module")
def service() -> ScoringService:
    from tests.config_fixtures import QUICKSTART

    return ScoringService.from_config(QUICKSTART / "muse.yaml")


def served_rows(service: ScoringService, table: pa.Table) -> list[dict[str, Any]]:
    """The lake rows the service writes for these events (``score_batch``, then the same
    conversion the HTTP service uses), as comparable dicts."""
    intents = [
        {a: v for a, v in zip(INTENT, values, strict=True) if v is not None}
        for values in zip(*(table.column(a).to_pylist() for a in INTENT), strict=True)
    ]
    known = service.snapshot.known_features
    features = {f: table.column(f).to_numpy() for f in table.column_names if f in known}
    ids = table.column("event_id").to_pylist()
    results = service.score_batch(intents, features, event_ids=ids)
    when = table.column("timestamp").to_pylist()
    rows = [row for r, t in zip(results, when, strict=True) for row in result_rows(r, t)]
    return comparable(rows_to_table(rows))


def comparable(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.drop_columns(["latency_ms"]).to_pylist()
    for r in rows:
        r["intent"], r["experts"] = sorted(r["intent"]), sorted(r["experts"])
    return sorted(rows, key=lambda r: (r["event_id"], r["role"], r["predictor"]))


def test_the_rows_are_the_services_bit_for_bit(
    events: Path, service: ScoringService, tmp_path: Path
) -> None:
    out = tmp_path / "scored.parquet"
    report = score_file(service.snapshot, events, out=out, batch_size=700)
    table = pq.read_table(out)
    assert table.schema.names == LAKE_SCHEMA.names  # the lake's own files
    assert table.schema.metadata == LAKE_SCHEMA.metadata
    assert comparable(table) == served_rows(service, pq.read_table(events))
    assert report.scored == 3_000
    assert report.rejected == 0
    assert report.batches == 5
    assert report.rows_written == table.num_rows
    # bank2 and fintech3 are mirrored to the ensemble: a shadow row each
    tenants = pq.read_table(events).column("tenant").to_pylist()
    shadowed = sum(t in ("bank2", "fintech3") for t in tenants)
    assert table.num_rows == 3_000 + shadowed
    assert not (tmp_path / "scored.parquet.partial").exists()
    latency = table.column("latency_ms").to_numpy()
    assert (latency > 0).all()
    assert (latency < 10).all()


def test_a_split_is_backfilled_as_it_is_served(events: Path, tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "split")
    doc = d.doc()
    doc["routing"]["scoringRules"][1] = {
        "condition": {},
        "targets": [
            {"predictor": "single-v1", "weight": 50},
            {"predictor": "ensemble-v1", "weight": 50},
        ],
        "stickyBy": "card_id",  # not in the file: by event id
    }
    d.write(doc)
    service = ScoringService.from_config(d.config)
    try:
        out = tmp_path / "split.parquet"
        score_file(service.snapshot, events, out=out, batch_size=1000)
        got = comparable(pq.read_table(out))
        assert got == served_rows(service, pq.read_table(events))
        arms = {r["arm"] for r in got if r["tenant"] != "bank1"}
        assert arms == {"single-v1", "ensemble-v1"}
    finally:
        service.close()


def test_a_backfilled_lake_is_read_as_a_served_one(
    events: Path, service: ScoringService, tmp_path: Path
) -> None:
    """The backtest workflow: score last month's events into a lake, then the gate."""
    lake = tmp_path / "lake"
    report = score_file(service.snapshot, events, lake=str(lake), batch_size=1000)
    with LakeReader(lake) as reader:
        paired = reader.paired("single-v1", "ensemble-v1", "bank2")
        live = reader.scores("single-v1", "bank2", role="live")
    tenants = pq.read_table(events).column("tenant").to_pylist()
    assert paired.num_rows == live.num_rows == tenants.count("bank2")
    rows = ds.dataset(lake, format="parquet", partitioning="hive").to_table()
    assert rows.num_rows == report.rows_written
    assert not any(p.name.startswith("_") for p in lake.glob("date=*"))


# -- bad input --------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def csv_events(tmp_path: Path, n: int = 40) -> tuple[Path, list[str], list[list[Any]]]:
    table = quickstart_traffic(n, seed=9).to_arrow().drop_columns(["label"])
    header = table.column_names
    rows = [list(r.values()) for r in table.to_pylist()]
    for r in rows:
        r[1] = r[1].isoformat()
    return tmp_path / "events.csv", header, rows


def test_bad_rows_are_named_by_line_and_the_rest_is_scored(
    service: ScoringService, tmp_path: Path
) -> None:
    path, header, rows = csv_events(tmp_path)
    col = header.index
    rows[2][col("amount")] = "twelve"  # line 4
    rows[5][col("tenant")] = ""  # line 7
    rows[7][col("timestamp")] = "yesterday"  # line 9
    rows[9][col("event_id")] = ""  # line 11
    rows[11][col("velocity_1h")] = "inf"  # line 13
    write_csv(path, header, rows)
    out, errors = tmp_path / "out.parquet", tmp_path / "errors.csv"
    r = invoke(
        "score-file", str(service.snapshot.config.path), "--events", str(path),
        "--out", str(out), "--errors", str(errors), "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    with errors.open(encoding="utf-8") as f:
        listed = list(csv.DictReader(f))
    by_line = {int(e["line"]): e["message"] for e in listed}
    assert sorted(by_line) == [4, 7, 9, 11, 13]
    assert "feature 'amount' must be a number, got 'twelve'" in by_line[4]
    assert "no tenant" in by_line[7]
    assert "timestamp is not an ISO 8601 time: 'yesterday'" in by_line[9]
    assert "no event_id" in by_line[11]
    assert "feature 'velocity_1h' must be finite" in by_line[13]
    assert "line 4: feature 'amount'" in r.output
    assert "5 row(s) left out" in r.output
    scored = pq.read_table(out)
    assert set(scored.column("event_id").to_pylist()) == {
        row[col("event_id")] for i, row in enumerate(rows) if i not in (2, 5, 7, 9, 11)
    }


def test_an_intent_without_a_route_is_a_bad_row(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "narrow")
    doc = d.doc()
    doc["routing"]["scoringRules"][1]["condition"] = {"tenants": ["bank2", "fintech3"]}
    d.write(doc)
    service = ScoringService.from_config(d.config)
    try:
        path, header, rows = csv_events(tmp_path)
        rows[3][header.index("tenant")] = "acme"
        write_csv(path, header, rows)
        report = score_file(service.snapshot, path, out=tmp_path / "o.parquet")
    finally:
        service.close()
    assert [(e.line, e.unit) for e in report.errors] == [(5, "line")]
    assert "no scoring rule matches intent" in report.errors[0].message
    assert "'tenant': 'acme'" in report.errors[0].message
    assert report.scored == 39


def test_parquet_rows_are_named_rows(service: ScoringService, tmp_path: Path) -> None:
    table = quickstart_traffic(10, seed=3).to_arrow()
    amounts = table.column("amount").to_pylist()
    amounts[6] = float("nan")
    table = table.set_column(table.column_names.index("amount"), "amount", pa.array(amounts))
    pq.write_table(table, tmp_path / "e.parquet")
    report = score_file(service.snapshot, tmp_path / "e.parquet", out=tmp_path / "o.parquet")
    assert [str(e) for e in report.errors] == ["row 7: feature 'amount' must be finite, got nan"]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.with_suffix(".json").write_text("{}"), "expected a .parquet"),
        (lambda p: pq.write_table(pa.table({"x": [1]}), p), "no 'tenant' column"),
        (lambda p: p.write_bytes(b"PAR1 not really"), "cannot read events file"),
    ],
)
def test_files_that_cannot_be_read_exit_2(
    service: ScoringService, tmp_path: Path, make: Any, words: str
) -> None:
    path = tmp_path / "events.parquet"
    make(path)
    if not path.exists():
        path = path.with_suffix(".json")
    r = invoke(
        "score-file", str(service.snapshot.config.path), "--events", str(path),
        "--out", str(tmp_path / "o.parquet"), "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 2, r.output
    assert words in r.output


def test_out_or_lake_exactly_one(service: ScoringService, events: Path, tmp_path: Path) -> None:
    config = str(service.snapshot.config.path)
    r = invoke("score-file", config, "--events", str(events), "--no-progress")
    assert r.exit_code == 2
    assert "exactly one of --out" in r.output
    with pytest.raises(BackfillError, match="exactly one"):
        score_file(service.snapshot, events, out=tmp_path / "a.parquet", lake=str(tmp_path))


def test_a_missing_store_feature_is_fetched_and_an_unknown_card_is_a_bad_row(
    service: ScoringService, tmp_path: Path
) -> None:
    """The file lacks card_age_days and email_age_days: the feature store fills them by
    card, as for a request; a card the store does not know lacks a required feature."""
    table = (
        quickstart_traffic(30, seed=4).to_arrow().drop_columns(["card_age_days", "email_age_days"])
    )
    cards = [f"card-{i:05d}" for i in range(30)]
    cards[4] = "card-unknown"
    table = table.append_column("card_id", pa.array(cards))
    pq.write_table(table, tmp_path / "e.parquet")
    out = tmp_path / "o.parquet"
    report = score_file(service.snapshot, tmp_path / "e.parquet", out=out)
    assert [e.line for e in report.errors] == [5]
    assert "card_age_days" in report.errors[0].message
    assert report.scored == 29
    served = [
        service.score(
            {"tenant": t, "card_id": c, "geography": g, "channel": ch, "schema": s},
            {f: table.column(f)[i].as_py() for f in table.column_names
             if f in service.snapshot.known_features and f != "card_id"},
            event_id=e,
        ).score
        for i, (t, c, g, ch, s, e) in enumerate(zip(
            *(table.column(a).to_pylist() for a in (*INTENT[:1], "card_id", *INTENT[1:], "event_id")),
            strict=True,
        ))
        if i != 4
    ]  # fmt: skip
    got = pq.read_table(out).filter(pa.compute.equal(pq.read_table(out).column("role"), "live"))
    by_id = dict(
        zip(got.column("event_id").to_pylist(), got.column("score").to_pylist(), strict=True)
    )
    ids = [e for i, e in enumerate(table.column("event_id").to_pylist()) if i != 4]
    assert [by_id[e] for e in ids] == served


# -- interruptions ------------------------------------------------------------------------


class StopRunError(Exception):
    pass


def interrupt_after(batches: int) -> Any:
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) > batches:  # the first call is before any batch
            raise StopRunError

    return progress


def test_an_interrupted_file_run_resumes_and_the_file_appears_whole(
    events: Path, service: ScoringService, tmp_path: Path
) -> None:
    out = tmp_path / "o.parquet"
    with pytest.raises(StopRunError):
        score_file(service.snapshot, events, out=out, batch_size=500, progress=interrupt_after(2))
    assert not out.exists()  # nothing half-written where the output goes
    state = json.loads((tmp_path / "o.parquet.partial" / "progress.json").read_text())
    assert state["batches_done"] == 2
    report = score_file(service.snapshot, events, out=out, batch_size=500)
    assert report.resumed_batches == 2
    assert report.batches == 4
    assert report.scored == 3_000
    assert comparable(pq.read_table(out)) == served_rows(service, pq.read_table(events))


def test_another_config_does_not_resume_a_file_run_without_restart(
    events: Path, service: ScoringService, tmp_path: Path
) -> None:
    out = tmp_path / "o.parquet"
    with pytest.raises(StopRunError):
        score_file(service.snapshot, events, out=out, batch_size=500, progress=interrupt_after(1))
    with pytest.raises(BackfillError, match="--restart"):
        score_file(service.snapshot, events, out=out, batch_size=600)
    report = score_file(service.snapshot, events, out=out, batch_size=600, restart=True)
    assert report.resumed_batches == 0
    assert report.scored == 3_000


def test_an_interrupted_lake_run_resumes_without_repeating_a_row(
    events: Path, service: ScoringService, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    errors = tmp_path / "errors.csv"
    with pytest.raises(StopRunError):
        score_file(
            service.snapshot, events, lake=str(lake), batch_size=400, errors=errors,
            progress=interrupt_after(3),
        )  # fmt: skip
    first = ds.dataset(lake, format="parquet", partitioning="hive").to_table().num_rows
    assert first > 0
    score_file(service.snapshot, events, lake=str(lake), batch_size=400, errors=errors)
    table = ds.dataset(lake, format="parquet", partitioning="hive").to_table()
    keys = list(
        zip(*(table.column(c).to_pylist() for c in ("event_id", "predictor", "role")), strict=True)
    )
    assert len(keys) == len(set(keys))  # each row once
    assert comparable(table.drop_columns(["date"])) == served_rows(service, pq.read_table(events))
    again = score_file(service.snapshot, events, lake=str(lake), batch_size=400)
    assert again.batches == 0
    assert again.resumed_batches == 8


def test_a_killed_process_resumes(events: Path, tmp_path: Path) -> None:
    """A real interruption: ``muse score-file`` killed (SIGKILL) mid-run, then run again."""
    from tests.config_fixtures import QUICKSTART

    big = tmp_path / "big.parquet"
    pq.write_table(quickstart_traffic(30_000, seed=6).to_arrow(), big)
    out = tmp_path / "o.parquet"
    command = [
        sys.executable, "-c", "from muse.cli import main; main()", "score-file",
        str(QUICKSTART / "muse.yaml"), "--events", str(big), "--out", str(out),
        "--batch-size", "1000", "--no-progress",
    ]  # fmt: skip
    progress = tmp_path / "o.parquet.partial" / "progress.json"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if progress.exists() and json.loads(progress.read_text())["batches_done"] >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert not out.exists()
    done = json.loads(progress.read_text())["batches_done"]
    result = subprocess.run([*command], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert f"resumed after {done} finished batch(es)" in result.stdout
    table = pq.read_table(out, columns=["event_id", "role"])
    live = [e for e, r in zip(*table.to_pydict().values(), strict=True) if r == "live"]
    assert sorted(live) == sorted(pq.read_table(big).column("event_id").to_pylist())


def test_timestamps_without_a_zone_are_utc(service: ScoringService, tmp_path: Path) -> None:
    path, header, rows = csv_events(tmp_path, n=3)
    rows[0][1] = "2026-11-02T10:00:00"
    rows[1][1] = "2026-11-02T10:00:00+00:00"
    rows[2][1] = "2026-11-02 10:00:00"
    write_csv(path, header, rows)
    out = tmp_path / "o.parquet"
    score_file(service.snapshot, path, out=out)
    stamps = set(pq.read_table(out).column("timestamp").to_pylist())
    assert stamps == {datetime(2026, 11, 2, 10, tzinfo=UTC)}
    assert np.isfinite(pq.read_table(out).column("score").to_numpy()).all()


# -- what the review found -----------------------------------------------------------------


def test_only_an_empty_csv_field_is_empty(service: ScoringService, tmp_path: Path) -> None:
    """``NA`` is a value (a tenant of that name has no route here: a bad row for that
    reason, not for a missing tenant); ``nan`` is not a finite number; a blank line is a row
    without a tenant, and an empty feature a live model needs is a bad row."""
    path, header, rows = csv_events(tmp_path, n=6)
    col = header.index
    rows[0][col("geography")] = "NA"  # a geography called NA: routed as any other
    rows[1][col("amount")] = "nan"  # line 3
    rows[2][col("amount")] = ""  # line 4: empty, and not a feature the store fills
    write_csv(path, header, rows)
    text = path.read_text(encoding="utf-8").splitlines()
    text.insert(5, "")  # a blank line 6
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    report = score_file(service.snapshot, path, out=tmp_path / "o.parquet")
    by_line = {e.line: e.message for e in report.errors}
    assert sorted(by_line) == [3, 4, 6]
    assert "feature 'amount' must be finite" in by_line[3]
    assert "feature 'amount' is empty" in by_line[4]
    assert "no tenant" in by_line[6]
    assert report.scored == 4
    table = pq.read_table(tmp_path / "o.parquet")
    geographies = {dict(i).get("geography") for i in table.column("intent").to_pylist()}
    assert "NA" in geographies


def test_a_quoted_newline_makes_rows_the_unit(service: ScoringService, tmp_path: Path) -> None:
    path, header, rows = csv_events(tmp_path, n=4)
    col = header.index
    rows[0][col("channel")] = "web\nmobile"  # a value over two lines
    rows[2][col("amount")] = "x"  # the third row under the header: row 3, line 5
    write_csv(path, header, rows)
    report = score_file(service.snapshot, path, out=tmp_path / "o.parquet")
    assert [str(e) for e in report.errors] == ["row 3: feature 'amount' must be a number, got 'x'"]


def test_a_malformed_csv_row_stops_the_run_before_anything_is_written(
    service: ScoringService, tmp_path: Path
) -> None:
    path, header, rows = csv_events(tmp_path, n=3)
    write_csv(path, header, rows)
    path.write_text(path.read_text(encoding="utf-8") + "bank1,1,2\n", encoding="utf-8")
    with pytest.raises(BackfillError, match="bank1,1,2"):
        score_file(service.snapshot, path, out=tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet.partial").exists()


def test_text_columns_of_any_arrow_string_type(service: ScoringService, tmp_path: Path) -> None:
    """pandas' ``string[pyarrow]`` columns are large strings."""
    table = quickstart_traffic(20, seed=8).to_arrow()
    for name in ("tenant", "geography", "event_id"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, table.column(name).cast(pa.large_string()))
    pq.write_table(table, tmp_path / "e.parquet")
    report = score_file(service.snapshot, tmp_path / "e.parquet", out=tmp_path / "o.parquet")
    assert report.scored == 20
    assert report.rejected == 0


def test_times_with_a_zone_are_converted_to_utc(service: ScoringService, tmp_path: Path) -> None:
    path, header, rows = csv_events(tmp_path, n=2)
    rows[0][1] = "2026-11-02T12:00:00+02:00"
    rows[1][1] = "2026-11-02T05:00:00-05:00"
    write_csv(path, header, rows)
    score_file(service.snapshot, path, out=tmp_path / "o.parquet")
    stamps = pq.read_table(tmp_path / "o.parquet").column("timestamp").to_pylist()
    assert set(stamps) == {datetime(2026, 11, 2, 10, tzinfo=UTC)}


def test_a_split_sticky_by_an_intent_column_is_backfilled_as_served(
    events: Path, tmp_path: Path
) -> None:
    d = Deployment.copy_quickstart(tmp_path / "split")
    doc = d.doc()
    doc["intent"] = {"attributes": ["card_id"]}
    doc["routing"]["scoringRules"][1] = {
        "condition": {},
        "targets": [
            {"predictor": "single-v1", "weight": 70},
            {"predictor": "ensemble-v1", "weight": 30},
        ],
        "stickyBy": "card_id",
    }
    d.write(doc)
    table = pq.read_table(events)
    cards = [f"card-{i % 500:05d}" for i in range(table.num_rows)]
    table = table.append_column("card_id", pa.array(cards))
    pq.write_table(table, tmp_path / "cards.parquet")
    service = ScoringService.from_config(d.config)
    try:
        out = tmp_path / "o.parquet"
        score_file(service.snapshot, tmp_path / "cards.parquet", out=out, batch_size=800)
        rows = pq.read_table(out).to_pylist()
        split = service.snapshot.router.splits[0]
        for r in rows:
            if r["role"] == "live" and r["tenant"] != "bank1":
                assert (
                    r["arm"] == r["predictor"] == split.predictor_for(dict(r["intent"])["card_id"])
                )
        served = {
            x.event_id: x.live.predictor
            for x in service.score_batch(
                [{"tenant": t, "card_id": c} for t, c in zip(table.column("tenant").to_pylist(), cards, strict=True)],
                {f: table.column(f).to_numpy() for f in table.column_names if f in service.snapshot.known_features},
                event_ids=table.column("event_id").to_pylist(),
            )
        }  # fmt: skip
        live = {r["event_id"]: r["predictor"] for r in rows if r["role"] == "live"}
        assert live == served
    finally:
        service.close()


def test_a_lake_batch_cut_short_is_written_once_on_resume(
    service: ScoringService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run dies after batch 2's files are in the lake but before its progress is saved;
    the file has no timestamp column, and the run is resumed on a later day."""
    from muse.backfill import run as backfill_run

    table = quickstart_traffic(1_200, seed=2).to_arrow().drop_columns(["timestamp"])
    pq.write_table(table, tmp_path / "e.parquet")
    lake = tmp_path / "lake"
    real_save = backfill_run._LakeTarget.save
    saves = 0

    def dying_save(self: Any, state: dict[str, Any]) -> None:
        nonlocal saves
        saves += 1
        if saves == 3:
            raise StopRunError
        real_save(self, state)

    monkeypatch.setattr(backfill_run._LakeTarget, "save", dying_save)
    with pytest.raises(StopRunError):
        score_file(service.snapshot, tmp_path / "e.parquet", lake=str(lake), batch_size=400)
    monkeypatch.setattr(backfill_run._LakeTarget, "save", real_save)
    later = datetime(2031, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(
        backfill_run, "EventsFile",
        lambda *a, **k: __import__("muse.backfill.source", fromlist=["EventsFile"]).EventsFile(
            *a, **{**k, "default_time": later}
        ),
    )  # fmt: skip
    report = score_file(service.snapshot, tmp_path / "e.parquet", lake=str(lake), batch_size=400)
    assert report.resumed_batches == 2
    rows = ds.dataset(lake, format="parquet", partitioning="hive").to_table()
    keys = list(
        zip(*(rows.column(c).to_pylist() for c in ("event_id", "predictor", "role")), strict=True)
    )
    assert len(keys) == len(set(keys))
    assert len({k[0] for k in keys}) == 1_200
    assert {t.year for t in rows.column("timestamp").to_pylist()} == {datetime.now(UTC).year}
