"""Score files (reference samples, training scores): every format, and errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from muse.scorefiles import read_score_file

VALUES = [0.1, 0.25, 0.9]


def write(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"scores{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(VALUES))
    elif suffix == ".npy":
        np.save(path, np.array(VALUES))
    elif suffix == ".parquet":
        pq.write_table(pa.table({"id": ["a", "b", "c"], "score": VALUES}), path)
    else:
        path.write_text("score\n" + "\n".join(map(str, VALUES)) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".json", ".npy", ".parquet", ".csv"])
def test_every_format_reads_the_same_numbers(tmp_path: Path, suffix: str) -> None:
    assert read_score_file(write(tmp_path, suffix)).tolist() == VALUES


def test_a_named_column_is_read(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"raw": [0.5, 0.6], "score": [0.1, 0.2]}), path)
    assert read_score_file(path, column="raw").tolist() == [0.5, 0.6]
    with pytest.raises(ValueError, match=r"no column 'rwa'; columns: \['raw', 'score'\]"):
        read_score_file(path, column="rwa")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.json", b"{not json", "not valid JSON"),
        ("s.json", b'{"a": 1}', "JSON list"),
        ("s.json", b'["x", 1]', "numbers only"),
        ("s.json", b"[[1, 2], [3, 4]]", "flat list"),
        ("s.parquet", b"PAR1garbage", "not a readable parquet"),
        ("s.npy", b"nope", "not a numpy"),
        ("s.txt", b"1\n2\n", "must be one of .json, .npy, .parquet, .csv"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_score_file(path)
    assert name in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read .*nope\.json"):
        read_score_file(tmp_path / "nope.json")
