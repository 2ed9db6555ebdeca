"""Files of scores given to muse: reference samples and a predictor's training scores.

One reader for both, so an operator learns one set of formats: ``.json`` (a list of
numbers), ``.npy`` (a 1-D array, no pickles), ``.parquet`` (column ``score``, or the column
named, else the first) and ``.csv`` (the same column rule; one header line).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from muse.types import ScoreArray

__all__ = ["SCORE_FILE_SUFFIXES", "parse_score_file", "read_score_file"]

SCORE_FILE_SUFFIXES = (".json", ".npy", ".parquet", ".csv")


def read_score_file(path: str | Path, column: str | None = None) -> ScoreArray:
    """Read a score file from disk (ValueError naming the file on any problem)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {p}: {e.strerror}") from None
    return parse_score_file(data, str(p), column)


def parse_score_file(data: bytes, name: str, column: str | None = None) -> ScoreArray:
    """Parse the bytes of a score file; ``name`` picks the format by suffix and names errors."""
    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        try:
            doc = json.loads(data)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name} is not valid JSON: {e}") from None
        if not isinstance(doc, list):
            raise ValueError(f"{name} must hold a JSON list of numbers")
        return _numbers(doc, name)
    if suffix == ".npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{name} is not a numpy .npy array: {e}") from None
        return _numbers(arr, name)
    if suffix in (".parquet", ".csv"):
        import pyarrow as pa

        try:
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(io.BytesIO(data))
            else:
                import pyarrow.csv as pcsv

                table = pcsv.read_csv(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{name} is not a readable {suffix[1:]} file: {e}") from None
        names = table.column_names
        if not names:
            raise ValueError(f"{name} has no columns")
        if column is None:
            column = "score" if "score" in names else names[0]
        elif column not in names:
            raise ValueError(f"{name} has no column {column!r}; columns: {names}")
        return _numbers(table[column].to_numpy(zero_copy_only=False), f"{name}:{column}")
    raise ValueError(f"score file must be one of {', '.join(SCORE_FILE_SUFFIXES)}, got {name!r}")


def _numbers(values: object, name: str) -> ScoreArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers only") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must hold a flat list of numbers, got shape {arr.shape}")
    return arr
