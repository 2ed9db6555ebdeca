"""A batch of events' features as named float64 columns.

Each expert reads its own features in its own order (heterogeneous feature sets, paper
§2.5.1), so the batch is kept columnar and a model's matrix is assembled on demand, once
per distinct feature list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.errors import FeatureError
from muse.types import FeatureMatrix

__all__ = ["FeatureTable"]


class FeatureTable(Mapping[str, npt.NDArray[np.float64]]):
    """Named, equally long, finite float64 columns — checked once, at construction.

    Accepts a mapping of column name → sequence (a dict of lists or arrays, a pandas
    DataFrame, a pyarrow Table via ``to_pydict``) or, with :meth:`from_rows`, one dict of
    features per event. Non-numeric or non-finite values raise :class:`FeatureError` naming
    the feature and the event index: a NaN must never become a score.
    """

    __slots__ = ("_columns", "_matrices", "_n", "_row")

    def __init__(self, columns: Mapping[str, Any]) -> None:
        cols: dict[str, npt.NDArray[np.float64]] = {}
        n: int | None = None
        for name in columns:
            if not isinstance(name, str):
                raise FeatureError(f"feature names must be strings, got {name!r}")
            col = _column(name, columns[name])
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise FeatureError(
                    f"feature {name!r} has {col.shape[0]} values but earlier features have {n}",
                    feature=name,
                )
            cols[name] = col
        self._columns = cols
        self._n = 0 if n is None else n
        self._matrices: dict[tuple[str, ...], FeatureMatrix] = {}
        #: A single event's values in column order (from_row), for a cheap concat.
        self._row: npt.NDArray[np.float64] | None = None

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        *,
        checked: bool = False,
        optional: Iterable[str] = (),
    ) -> FeatureTable:
        """One mapping of feature → value per event; every event must have the same features,
        except those in ``optional``: a feature the feature store can fill in may be sent
        by some events of a batch and left to the store by others.

        ``checked``: every value is known to be a finite ``float`` (a typed JSON decoder
        produced them), so only the feature names are compared. An optional feature an
        event leaves out is NaN in its column — a gap the feature store fills or the
        service refuses, never a value a model reads (see :meth:`with_columns`).
        """
        if not rows:
            return cls({})
        names = list(rows[0])
        fast = _plain_matrix(names, rows, checked)
        if fast is not None:
            table = cls.__new__(cls)
            table._columns = dict(zip(names, fast, strict=True))
            table._n = len(rows)
            table._matrices = {}
            table._row = None
            return table
        # Something to report (or exotic number types): the slow checks find and name it.
        may_differ = frozenset(optional)
        expected = set(names) - may_differ
        seen = dict.fromkeys(names)
        for i, row in enumerate(rows):
            keys = set(row)
            if keys - may_differ != expected:
                missing = sorted(expected - keys)
                extra = sorted(keys - may_differ - expected)
                feature = (missing or extra)[0]
                raise FeatureError(
                    f"event {i} has different features than event 0 (missing {missing}, extra {extra})",
                    feature=feature,
                    index=i,
                )
            seen.update(dict.fromkeys(row))
        gaps = {f for f in seen if any(f not in row for row in rows)}
        if not gaps:
            return cls({name: [row[name] for row in rows] for name in names})
        # Check the values sent (the constructor would refuse the gaps' NaN), then mark gaps.
        columns: dict[str, npt.NDArray[np.float64]] = {}
        for f in seen:
            if not isinstance(f, str):
                raise FeatureError(f"feature names must be strings, got {f!r}")
            if f not in gaps:
                columns[f] = _column(f, [row[f] for row in rows])
                continue
            sent = [i for i, row in enumerate(rows) if f in row]
            col = np.full(len(rows), np.nan)
            col[sent] = _column(f, [rows[i][f] for i in sent], sent)
            columns[f] = col
        table = cls.__new__(cls)
        table._columns = columns
        table._n = len(rows)
        table._matrices = {}
        table._row = None
        return table

    @classmethod
    def with_gaps(cls, columns: Mapping[str, npt.NDArray[np.float64]]) -> FeatureTable:
        """A table of float64 columns whose NaN mean "not sent" (as :meth:`from_rows` marks
        an optional feature an event omits), every other value already checked finite by
        the caller — a backfill's reader, which reports each bad value by line. The
        scoring pass then treats a gap as a request would: the feature store fills it, or
        the event is refused."""
        n = {c.shape[0] for c in columns.values()}
        if len(n) > 1:
            raise FeatureError(f"feature columns differ in length: {sorted(n)}")
        table = cls.__new__(cls)
        table._columns = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
        table._n = n.pop() if n else 0
        table._matrices = {}
        table._row = None
        return table

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, checked: bool = False) -> FeatureTable:
        """A single event's features (the single-event request path).

        Checked with plain-float arithmetic and stored as views of one array: building one
        numpy column per feature cost more than running a small model. ``checked``: as
        for :meth:`from_rows`, the values are known finite floats.
        """
        names = list(row)
        values = list(row.values())
        for name, v in zip(names, () if checked else values, strict=False):
            if not isinstance(name, str):
                raise FeatureError(f"feature names must be strings, got {name!r}")
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise FeatureError(
                    f"feature {name!r} must be numeric, got {v!r} at event 0", feature=name, index=0
                )
            try:
                finite = math.isfinite(v)
            except OverflowError:  # an int beyond float range, e.g. 10**400 from JSON
                raise FeatureError(
                    f"feature {name!r} must be a finite number, got an integer out of range at event 0",
                    feature=name,
                    index=0,
                ) from None
            if not finite:
                raise FeatureError(
                    f"feature {name!r} must be finite, got {float(v)!r} at event 0",
                    feature=name,
                    index=0,
                )
        arr = np.array(values, dtype=np.float64)
        table = cls.__new__(cls)
        table._columns = {name: arr[j : j + 1] for j, name in enumerate(names)}
        table._n = 1 if names else 0
        table._matrices = {}
        table._row = arr
        return table

    def __getitem__(self, name: str) -> npt.NDArray[np.float64]:
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __contains__(self, name: object) -> bool:
        # Mapping's default tries __getitem__ and catches KeyError: ~10x slower when absent,
        # the usual answer when the feature store checks what a request lacks.
        return name in self._columns

    @property
    def n_events(self) -> int:
        """Number of events (rows)."""
        return self._n

    def missing(self, names: Iterable[str]) -> list[str]:
        """Which of ``names`` this table lacks, in the given order."""
        return [n for n in names if n not in self._columns]

    def matrix(self, names: Sequence[str]) -> FeatureMatrix:
        """Columns ``names`` as an ``(n_events, len(names))`` matrix, cached per name list."""
        key = tuple(names)
        m = self._matrices.get(key)
        if m is None:
            absent = self.missing(key)
            if absent:
                raise FeatureError(
                    f"missing feature(s) {absent}; the model needs {list(key)}", feature=absent[0]
                )
            m = np.empty((self._n, len(key)), dtype=np.float64)
            for j, name in enumerate(key):
                m[:, j] = self._columns[name]
            self._matrices[key] = m
        return m

    def take(self, indices: npt.NDArray[np.intp]) -> FeatureTable:
        """The events at ``indices`` (already validated: no re-check)."""
        sub = FeatureTable.__new__(FeatureTable)
        sub._columns = {k: v[indices] for k, v in self._columns.items()}
        sub._n = int(indices.shape[0])
        sub._matrices = {}
        sub._row = None
        return sub

    def with_columns(self, columns: Mapping[str, npt.NDArray[np.float64]]) -> FeatureTable:
        """This table plus ``columns`` (full-length float64 arrays; same names replace), unchecked.

        For the feature store (paper §2.5.1): its values were checked where they came
        from, and NaN marks events it could not fill — the service checks those events
        before a model reads them, so a NaN still never becomes a score.
        """
        out = FeatureTable.__new__(FeatureTable)
        out._columns = {**self._columns, **columns}
        out._n = self._n
        out._matrices = {}
        out._row = None
        return out

    @classmethod
    def concat(cls, tables: Sequence[FeatureTable]) -> FeatureTable:
        """The events of ``tables`` one after the other (already validated: no re-check).

        Every table must have the same features, in any order.
        """
        names = list(tables[0])
        out = cls.__new__(cls)
        out._matrices = {}
        out._row = None
        rows = [t._row for t in tables]
        if (
            names
            and all(r is not None for r in rows)
            and all(list(t._columns) == names for t in tables)
        ):
            # Single events with their features in the same order (the micro-batcher's
            # case): one array built from the rows, ~4x cheaper than a concatenate per feature.
            stacked = np.ascontiguousarray(np.array(rows).T)
            out._columns = dict(zip(names, stacked, strict=True))
            out._n = len(tables)
            return out
        expected = set(names)
        for t in tables[1:]:
            if set(t) != expected:
                raise FeatureError(
                    f"cannot concatenate feature tables with different features: "
                    f"{sorted(expected)} and {sorted(t)}"
                )
        out._columns = {n: np.concatenate([t._columns[n] for t in tables]) for n in names}
        out._n = sum(t._n for t in tables)
        return out

    def __repr__(self) -> str:
        return f"FeatureTable(n_events={self._n}, features={list(self._columns)})"


def _column(name: str, values: Any, events: Sequence[int] | None = None) -> npt.NDArray[np.float64]:
    """``values`` as a finite float64 column; errors name the event (``events[i]`` when
    the values are some events' only)."""
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        col = values.astype(np.float64, copy=False).ravel()
    else:
        seq = values if isinstance(values, np.ndarray | list | tuple) else list(values)
        for i, v in enumerate(seq):
            # bool is an int subclass, but "true" is not a numeric feature value.
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                e = i if events is None else events[i]
                raise FeatureError(
                    f"feature {name!r} must be numeric, got {v!r} at event {e}",
                    feature=name,
                    index=e,
                )
        try:
            col = np.asarray(seq, dtype=np.float64).ravel()
        except OverflowError:  # an int beyond float range, e.g. 10**400 from JSON
            i = next(k for k, v in enumerate(seq) if not _fits_float(v))
            e = i if events is None else events[i]
            raise FeatureError(
                f"feature {name!r} must be a finite number, got an integer out of range at event {e}",
                feature=name,
                index=e,
            ) from None
    finite = np.isfinite(col)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        e = i if events is None else events[i]
        raise FeatureError(
            f"feature {name!r} must be finite, got {float(col[i])!r} at event {e}",
            feature=name,
            index=e,
        )
    return col


_PLAIN = frozenset((float, int))


def _plain_matrix(
    names: list[str], rows: Sequence[Mapping[str, Any]], checked: bool
) -> npt.NDArray[np.float64] | None:
    """The rows' features as a ``(len(names), n_events)`` array, one row per feature, when
    every row has exactly ``names``, every name is a string and every value a finite
    ``float`` or ``int`` (not ``bool``); else None, for the slow checks to name the culprit.

    Why: per-value checks in Python cost ~4 µs an event at 10 features, a fifth of a batch
    request's CPU; here they are a few C-level passes (``map``, ``set``, ``np.fromiter``).
    """
    k, n = len(names), len(rows)
    if not k or not all(type(name) is str for name in names):
        return None
    # Plain dicts only: a missing key must raise KeyError (a Counter or defaultdict would
    # answer a default instead), and equal sizes + every name present = the same keys.
    if set(map(type, rows)) != {dict} or set(map(len, rows)) != {k}:
        return None
    pick = itemgetter(*names) if k > 1 else lambda r: (r[names[0]],)
    try:
        values = list(map(pick, rows))
    except KeyError:
        return None
    if not checked and not set(map(type, chain.from_iterable(values))) <= _PLAIN:
        return None
    try:
        flat = np.fromiter(chain.from_iterable(values), dtype=np.float64, count=n * k)
    except OverflowError:  # an int beyond float range
        return None
    if not checked and not np.isfinite(flat).all():
        return None
    return np.ascontiguousarray(flat.reshape(n, k).T)


def _fits_float(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except OverflowError:
        return False
    return True
