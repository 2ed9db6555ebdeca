"""Partition folders and file names: what readers' globs and discovery see."""

from __future__ import annotations

import pytest

from muse.scorelog.layout import part_names, partition_dir, partition_segment


@pytest.mark.parametrize("name", ["ensemble-v1", "bank1_predictor.v2", "A0"])
def test_config_names_are_used_verbatim(name: str) -> None:
    assert partition_segment(name) == name


@pytest.mark.parametrize(
    ("name", "segment"),
    [("x/y", "x%2Fy"), ("k=v", "k%3Dv"), ("a b", "a%20b"), ("_p", "%5Fp"), (".q", "%2Eq")],
)
def test_other_names_are_percent_encoded_and_never_hidden(name: str, segment: str) -> None:
    assert partition_segment(name) == segment


def test_partition_dir_is_hive_style_by_utc_day() -> None:
    assert (
        partition_dir("/lake", 20_779, "ensemble-v1")
        == "/lake/date=2026-11-22/predictor=ensemble-v1"
    )
    assert partition_dir("/lake", -1, "p") == "/lake/date=1969-12-31/predictor=p"


def test_temporary_names_are_invisible_to_readers_and_unique() -> None:
    pairs = {part_names("/lake/date=2026-11-22/predictor=p") for _ in range(1000)}

    assert len({final for _, final in pairs}) == 1000
    for tmp, final in pairs:
        tmp_base, final_base = tmp.rsplit("/", 1)[1], final.rsplit("/", 1)[1]
        assert final_base.startswith("part-")
        assert final_base.endswith(".parquet")
        # hidden from pyarrow/Spark discovery and from `**/*.parquet` globs (DuckDB)
        assert tmp_base == f".{final_base}.tmp"
        assert tmp.rsplit("/", 1)[0] == final.rsplit("/", 1)[0]
