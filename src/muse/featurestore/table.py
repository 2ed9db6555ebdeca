"""The embedded feature store: a Parquet file loaded into memory, one row per entity.

The default store (the quickstart uses it): no server to run, lookups cost a dict access
per entity plus one numpy gather per batch. The file has one column per key part (text or
integers) and one per feature (numbers; a null cell means "no value for this entity", so
the feature's default or its required-check applies). Values are checked once, at load:
NaN or infinity in the file is refused, never served.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from muse.errors import FeatureStoreError
from muse.featurestore.base import NO_OBSERVER, EntityId, StoreObserver, key_text
from muse.featurestore.spec import ParquetSource
from muse.types import FeatureMatrix

__all__ = ["InProcessTable"]


class InProcessTable:
    """Entity → row index, and a ``(n_entities + 1, n_features)`` float64 array.

    The extra last row is all NaN: an unknown entity maps to it, so a batch is one
    vectorised gather with no per-event branch.
    """

    kind = "parquet"
    __slots__ = ("_columns", "_description", "_index", "_observer", "_selections", "_values")

    def __init__(
        self,
        index: dict[EntityId, int],
        values: FeatureMatrix,
        features: Sequence[str],
        *,
        description: str = "in-process table",
        observer: StoreObserver = NO_OBSERVER,
    ) -> None:
        if values.shape != (len(index) + 1, len(features)):
            raise ValueError(
                f"values must have shape {(len(index) + 1, len(features))} (one row per "
                f"entity plus the NaN row), got {values.shape}"
            )
        self._index = index
        self._values = values
        self._columns = {name: j for j, name in enumerate(features)}
        self._selections: dict[tuple[str, ...], npt.NDArray[np.intp]] = {}
        self._description = description
        self._observer = observer

    @classmethod
    def from_columns(
        cls,
        keys: Sequence[Sequence[object]],
        columns: dict[str, Sequence[float]],
        *,
        description: str = "in-process table",
        observer: StoreObserver = NO_OBSERVER,
    ) -> InProcessTable:
        """A table from key-part columns and feature columns (NaN = no value), e.g. in tests."""
        n = len(keys[0]) if keys else 0
        entities = list(zip(*[[key_text(v) for v in part] for part in keys], strict=True))
        index = _index(entities, description)
        values = np.full((n + 1, len(columns)), np.nan)
        for j, col in enumerate(columns.values()):
            values[:n, j] = np.asarray(col, dtype=np.float64)
        _check_finite(values[:n], list(columns), description)
        return cls(index, values, list(columns), description=description, observer=observer)

    @classmethod
    def load(cls, source: ParquetSource, observer: StoreObserver = NO_OBSERVER) -> InProcessTable:
        """Read ``source.path``: its key columns and feature columns, checked.

        Raises :class:`~muse.errors.FeatureStoreError` naming the file and the problem
        (unreadable, a column missing or of the wrong type, duplicate or null keys, NaN or
        infinite values).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        where = str(source.path)
        names = [*source.keys, *source.features]
        try:
            table = pq.read_table(source.path, columns=names)
        except (OSError, pa.ArrowException) as e:
            present = _columns_of(source.path)
            missing = [c for c in names if present is not None and c not in present]
            if missing:
                raise FeatureStoreError(
                    f"feature table {where} lacks column(s) {missing}; it has {present}",
                    store=where,
                ) from None
            raise FeatureStoreError(
                f"cannot read feature table {where}: {e}", store=where
            ) from None
        key_parts: list[list[str]] = []
        for name in source.keys:
            col = table.column(name)
            if not (
                pa.types.is_string(col.type)
                or pa.types.is_large_string(col.type)
                or pa.types.is_integer(col.type)
            ):
                raise FeatureStoreError(
                    f"key column {name!r} of {where} must hold text or integers, got {col.type}",
                    store=where,
                )
            if col.null_count:
                raise FeatureStoreError(
                    f"key column {name!r} of {where} has {col.null_count} empty cell(s); "
                    "every row needs its key",
                    store=where,
                )
            key_parts.append([key_text(v) for v in col.to_pylist()])
        n = table.num_rows
        values = np.full((n + 1, len(source.features)), np.nan)
        for j, name in enumerate(source.features):
            col = table.column(name)
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                raise FeatureStoreError(
                    f"feature column {name!r} of {where} must hold numbers, got {col.type}",
                    store=where,
                )
            # Nulls become NaN ("no value"); a NaN or infinity *stored* in the file is
            # garbage, refused below before it could become a score.
            if pa.types.is_floating(col.type) and pc.any(pc.invert(pc.is_finite(col))).as_py():
                bad = pc.index(pc.is_finite(col), False).as_py()
                raise FeatureStoreError(
                    f"feature column {name!r} of {where} holds a non-finite value at row {bad}",
                    store=where,
                )
            values[:n, j] = col.to_numpy().astype(np.float64, copy=False)
        index = _index(list(zip(*key_parts, strict=True)), where)
        return cls(
            index,
            values,
            source.features,
            description=f"parquet {where}",
            observer=observer,
        )

    @property
    def description(self) -> str:
        return self._description

    @property
    def n_entities(self) -> int:
        return len(self._index)

    def fetch(self, entities: Sequence[EntityId], features: Sequence[str]) -> FeatureMatrix:
        started = time.perf_counter()
        cols = self._column_index(features)
        missing_row = len(self._index)
        get = self._index.get
        if len(entities) == 1:
            row = get(entities[0], missing_row)
            out: FeatureMatrix = self._values[row : row + 1, cols]
        else:
            rows = np.fromiter(
                (get(e, missing_row) for e in entities), dtype=np.intp, count=len(entities)
            )
            out = self._values[rows][:, cols]
        self._observer.fetched(self.kind, time.perf_counter() - started)
        return out

    def _column_index(self, features: Sequence[str]) -> npt.NDArray[np.intp]:
        key = tuple(features)
        cols = self._selections.get(key)
        if cols is None:
            try:
                cols = np.array([self._columns[f] for f in key], dtype=np.intp)
            except KeyError as e:
                raise FeatureStoreError(
                    f"{self._description} has no feature {e.args[0]!r}; it has "
                    f"{list(self._columns)}",
                    store=self._description,
                    features=features,
                ) from None
            self._selections[key] = cols
        return cols

    def check(self) -> None:
        """Always answers: it is in memory."""

    def close(self) -> None:
        """Nothing to release but memory, which the garbage collector takes back."""

    def __repr__(self) -> str:
        return (
            f"InProcessTable({self._description!r}, entities={len(self._index)}, "
            f"features={list(self._columns)})"
        )


def _index(entities: list[EntityId], where: str) -> dict[EntityId, int]:
    index: dict[EntityId, int] = {}
    for i, e in enumerate(entities):
        if index.setdefault(e, i) != i:
            raise FeatureStoreError(
                f"feature table {where} lists entity {e!r} twice (rows {index[e]} and {i}); "
                "keys must be unique",
                store=where,
            )
    return index


def _check_finite(values: FeatureMatrix, names: list[str], where: str) -> None:
    bad = ~np.isfinite(values) & ~np.isnan(values)
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise FeatureStoreError(
            f"feature {names[col]!r} of {where} is infinite at row {row}", store=where
        )


def _columns_of(path: Path) -> list[str] | None:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception:  # unreadable: the caller reports the original error
        return None
