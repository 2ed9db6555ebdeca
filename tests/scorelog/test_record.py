"""LakeRow, LAKE_SCHEMA and rows_to_table: the file-level half of the lake contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from muse.scorelog import LAKE_SCHEMA, LakeColumns, LakeRow, rows_to_table
from muse.scorelog.record import micros
from tests.scorelog.rows import exact_all, make_row, make_rows


def test_schema_columns_follow_the_row_fields() -> None:
    assert LAKE_SCHEMA.names == list(LakeRow._fields)
    assert LAKE_SCHEMA.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert LAKE_SCHEMA.field("intent").type == pa.map_(pa.string(), pa.string())
    assert LAKE_SCHEMA.field("experts").type == pa.map_(pa.string(), pa.float64())


def test_rows_round_trip_through_a_parquet_file(tmp_path: Path) -> None:
    rows = [
        *make_rows(5),
        make_row(5, role="shadow", predictor="ensemble-v2")._replace(
            raw=-0.0, score=5e-324, latency_ms=1.7976931348623157e308, experts={}
        ),
    ]
    pq.write_table(rows_to_table(rows), tmp_path / "f.parquet")

    table = pq.read_table(tmp_path / "f.parquet")

    assert table.schema.equals(LAKE_SCHEMA, check_metadata=False)
    back = []
    for rec in table.to_pylist():
        rec["intent"], rec["experts"] = dict(rec["intent"]), dict(rec["experts"])
        back.append(LakeRow(**rec))
    assert exact_all(back) == exact_all(rows)
    assert all(r.timestamp.utcoffset() == timedelta(0) for r in back)


def test_timestamps_are_stored_in_utc_and_naive_ones_taken_as_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    rows = [
        make_row(0, timestamp=datetime(2026, 11, 22, 21, 30, tzinfo=eastern)),
        make_row(1, timestamp=datetime(2026, 11, 22, 21, 30)),
    ]

    stamps = rows_to_table(rows).column("timestamp").to_pylist()

    assert stamps == [
        datetime(2026, 11, 23, 2, 30, tzinfo=UTC),
        datetime(2026, 11, 22, 21, 30, tzinfo=UTC),
    ]


def test_any_mapping_is_accepted_for_map_columns() -> None:
    row = make_row(0)._replace(
        intent=MappingProxyType({"tenant": "bank1"}), experts=MappingProxyType({"m": 0.5})
    )

    rec = rows_to_table([row]).to_pylist()[0]

    assert rec["intent"] == [("tenant", "bank1")]
    assert rec["experts"] == [("m", 0.5)]


def test_no_rows_give_an_empty_table_with_the_schema() -> None:
    table = rows_to_table([])

    assert table.num_rows == 0
    assert table.schema.equals(LAKE_SCHEMA)


def test_a_value_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"column 'score' \(double\): .*'high'"):
        rows_to_table([make_row(0)._replace(score="high")])  # type: ignore[arg-type]


def test_columns_take_microseconds_since_the_epoch_in_utc() -> None:
    columns = LakeColumns()
    at = datetime(2026, 11, 22, 21, 30, 0, 123456, tzinfo=UTC)
    row = make_row(0, timestamp=at)
    columns.add(
        row.event_id,
        micros(at),
        row.tenant,
        row.intent,
        row.predictor,
        row.role,
        row.fingerprint,
        row.tq_version,
        row.raw,
        row.score,
        row.experts,
        row.latency_ms,
        row.config_version,
    )

    assert micros(at) == 1_795_383_000_123_456  # calendar.timegm of that moment, in µs
    assert micros(at.replace(tzinfo=None)) == micros(at)
    assert columns.to_table().equals(rows_to_table([row]))


def test_a_row_whose_maps_are_not_mappings_is_refused_whole() -> None:
    columns = LakeColumns()
    good = make_row(0)

    with pytest.raises(TypeError, match=r"column 'experts': expected a mapping, got NoneType"):
        columns.add_rows([good, good._replace(experts=None)])  # type: ignore[arg-type]

    assert len(columns) == 1
    assert columns.to_table().equals(rows_to_table([good]))  # the columns stay aligned
