"""Property: any rows — any names, dates, finite floats — come back from the lake bit for bit."""

from __future__ import annotations

import io
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.scorelog import LakeColumns, LakeRow, LakeWriter, rows_to_table
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


@settings(max_examples=60)
@given(st.lists(lake_rows, max_size=30), st.data())
def test_columns_convert_alike_in_any_slices_and_prefixes(
    rows: list[LakeRow], data: st.DataObject
) -> None:
    columns = LakeColumns()
    columns.add_rows(rows)
    whole = rows_to_table(rows)
    assert len(columns) == len(rows)

    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=4)))
    bounds = [0, *cuts, len(rows)]
    pieces = [columns.to_table(a, b) for a, b in itertools.pairwise(bounds)]
    assert pa.concat_tables(pieces).equals(whole)

    size = data.draw(st.integers(1, 6))
    assert [t.num_rows for t in columns.tables(size)] == [
        min(size, len(rows) - i) for i in range(0, len(rows), size)
    ]
    if rows:
        assert pa.concat_tables(list(columns.tables(size))).equals(whole)

    n = data.draw(st.integers(0, len(rows)))
    assert columns.head(n).to_table().equals(whole.slice(0, n))
    rest = LakeColumns()
    rest.add_rows(rows[n:])
    joined = columns.head(n)
    joined.extend(rest)
    assert joined.to_table().equals(whole)
