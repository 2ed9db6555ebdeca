"""Property: any rows — any names, dates, finite floats — come back from the lake bit for bit."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.scorelog import LakeRow, LakeWriter, rows_to_table
from tests.scorelog.conftest import memory_lake
from tests.scorelog.rows import exact_all
from tests.scorelog.strategies import lake_rows


@settings(max_examples=60)
@given(st.lists(lake_rows, max_size=30))
def test_rows_to_table_round_trips_through_parquet(rows: list[LakeRow]) -> None:
    buf = io.BytesIO()
    pq.write_table(rows_to_table(rows), buf)
    buf.seek(0)

    back = []
    for rec in pq.read_table(buf).to_pylist():
        rec["intent"], rec["experts"] = dict(rec["intent"]), dict(rec["experts"])
        back.append(LakeRow(**rec))

    assert exact_all(back) == exact_all(rows)


@settings(max_examples=25)
@given(st.lists(lake_rows, min_size=1, max_size=30), st.integers(1, 8))
def test_the_writer_round_trips_any_rows(rows: list[LakeRow], max_rows_per_file: int) -> None:
    lake = memory_lake()
    try:
        with LakeWriter(lake.url, max_rows_per_file=max_rows_per_file) as writer:
            writer.append(rows)

        assert exact_all(lake.rows()) == exact_all(rows)
        assert writer.written_rows == len(rows)
    finally:
        if lake.fs.exists(lake.root):
            lake.fs.rm(lake.root, recursive=True)
