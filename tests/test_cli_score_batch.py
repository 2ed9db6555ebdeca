"""``muse score-batch``: raw aggregates offline, identical to serving's, feeding cold start."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from muse.config import load_config
from muse.service import ScoringService
from tests.cli_support import invoke
from tests.config_fixtures import Deployment
from tests.lifecycle_fixtures import quickstart_traffic


def test_raw_aggregates_equal_servings_and_feed_cold_start(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    frame = quickstart_traffic(3_000, seed=3)
    events = tmp_path / "events.parquet"
    pq.write_table(
        pa.table({**dict(frame.features), "label": frame.label, "event_id": frame.event_id}),
        events,
    )
    out = tmp_path / "raw.parquet"
    r = invoke(
        "score-batch", str(d.config), "-p", "ensemble-v1", "--events", str(events),
        "--out", str(out), "--label-column", "label",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"prior (share of positives): {frame.label.mean():.6g}" in r.output
    table = pq.read_table(out)
    assert table.column_names == ["raw", "expert_m1", "expert_m2", "expert_m3", "label"]
    # bank1 is live on ensemble-v1: serving's raw aggregate for the same events.
    service = ScoringService.from_config(d.config)
    results = service.score_batch(
        [{"tenant": "bank1"}] * len(frame), dict(frame.features), shadows=False
    )
    assert np.array_equal(table.column("raw").to_numpy(), [x.live.raw for x in results])

    # A predictor without any map: score-batch needs none, cold-start makes one.
    shutil.rmtree(d.root / "transforms" / "ensemble-v1")
    r = invoke(
        "score-batch", str(d.config), "-p", "ensemble-v1", "--events", str(events),
        "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke(
        "cold-start", str(d.config), "-p", "ensemble-v1", "--training-scores", str(out),
        "--prior", f"{frame.label.mean():.6g}", "--trials", "1",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "ensemble-v1" in load_config(d.config).transforms


def test_missing_feature_columns_are_named(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    events = tmp_path / "events.parquet"
    pq.write_table(pa.table({"amount": [1.0, 2.0]}), events)
    r = invoke(
        "score-batch", str(d.config), "-p", "single-v1", "--events", str(events),
        "--out", str(tmp_path / "o.parquet"),
    )  # fmt: skip
    assert r.exit_code == 2
    assert "lacks feature column(s)" in r.output
    assert "'hour'" in r.output


def test_unreadable_events_file(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    r = invoke(
        "score-batch", str(d.config), "-p", "single-v1", "--events", str(tmp_path / "no.parquet"),
        "--out", str(tmp_path / "o.parquet"),
    )  # fmt: skip
    assert r.exit_code == 2
    assert "cannot read events file" in r.output
