"""The embedded store: a Parquet file in memory, checked at load, one gather per batch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from muse.errors import FeatureStoreError
from muse.featurestore import InProcessTable, ParquetSource
from tests.featurestore.fakes import Recorder, write_table


def source(path: Path, keys: tuple[str, ...], features: tuple[str, ...]) -> ParquetSource:
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return ParquetSource(path=path, digest=digest, keys=keys, features=features)


def test_loads_and_fetches_known_and_unknown_entities_in_request_order(tmp_path: Path) -> None:
    path = write_table(
        tmp_path / "cards.parquet",
        {
            "card_id": ["a", "b", "c"],
            "card_age_days": [1.0, 2.0, 3.0],
            "email_age_days": pa.array([10, None, 30], type=pa.int64()),
            "unused": ["x", "y", "z"],  # other columns are ignored, whatever their type
        },
    )
    recorder = Recorder()
    table = InProcessTable.load(
        source(path, ("card_id",), ("card_age_days", "email_age_days")), recorder
    )
    assert table.n_entities == 3
    got = table.fetch([("c",), ("zzz",), ("a",), ("b",)], ["email_age_days", "card_age_days"])
    np.testing.assert_array_equal(got, [[30.0, 3.0], [np.nan, np.nan], [10.0, 1.0], [np.nan, 2.0]])
    assert [store for store, _ in recorder.fetches] == ["parquet"]
    assert table.fetch([], ["card_age_days"]).shape == (0, 1)


def test_integer_and_composite_keys_are_matched_as_text(tmp_path: Path) -> None:
    path = write_table(
        tmp_path / "t.parquet",
        {"tenant": ["bank1", "bank2"], "card": pa.array([7, 7], pa.int32()), "f": [0.5, 1.5]},
    )
    table = InProcessTable.load(source(path, ("tenant", "card"), ("f",)))
    got = table.fetch([("bank2", "7"), ("bank1", "7"), ("bank1", "8")], ["f"])
    np.testing.assert_array_equal(got[:, 0], [1.5, 0.5, np.nan])


@pytest.mark.parametrize(
    ("columns", "keys", "message"),
    [
        ({"card_id": ["a"], "f": [1.0]}, ("card_id",), "lacks column(s) ['g']"),
        ({"card_id": [1.5], "f": [1.0], "g": [1.0]}, ("card_id",), "must hold text or integers"),
        ({"card_id": ["a", None], "f": [1.0, 2.0], "g": [1.0, 2.0]}, ("card_id",), "empty cell"),
        ({"card_id": ["a", "a"], "f": [1.0, 2.0], "g": [1.0, 2.0]}, ("card_id",), "twice"),
        ({"card_id": ["a"], "f": ["x"], "g": [1.0]}, ("card_id",), "must hold numbers"),
        ({"card_id": ["a", "b"], "f": [1.0, float("nan")], "g": [1.0, 2.0]}, ("card_id",), "row 1"),
        ({"card_id": ["a"], "f": [float("inf")], "g": [1.0]}, ("card_id",), "non-finite"),
    ],
)
def test_bad_tables_are_refused_naming_the_file_and_problem(
    tmp_path: Path, columns: dict[str, list[object]], keys: tuple[str, ...], message: str
) -> None:
    path = write_table(tmp_path / "bad.parquet", columns)
    with pytest.raises(FeatureStoreError, match=r"bad\.parquet") as info:
        InProcessTable.load(source(path, keys, ("f", "g")))
    assert message in str(info.value)


def test_an_unreadable_file_is_a_feature_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(FeatureStoreError, match="cannot read feature table"):
        InProcessTable.load(source(path, ("k",), ("f",)))


def test_asking_for_a_feature_it_does_not_hold_names_what_it_has() -> None:
    table = InProcessTable.from_columns([["a"]], {"f": [1.0]})
    with pytest.raises(FeatureStoreError, match=r"no feature 'g'; it has \['f'\]"):
        table.fetch([("a",)], ["g"])


def test_from_columns_refuses_infinite_values_and_duplicate_keys() -> None:
    with pytest.raises(FeatureStoreError, match="infinite"):
        InProcessTable.from_columns([["a"]], {"f": [np.inf]})
    with pytest.raises(FeatureStoreError, match="twice"):
        InProcessTable.from_columns([["a", "a"]], {"f": [1.0, 2.0]})
