"""A file of events read in batches, each row checked and named by its line.

The input of ``muse score-file``: Parquet or CSV with a column per intent attribute
(``tenant`` required), the features (one column each), optionally ``event_id`` and
``timestamp``. Every batch becomes plain columns the scoring pass takes — intent columns as
strings, features as float64 — and the rows that cannot be scored, each with its line and
what is wrong with it; the rest of the batch is scored.

Why values are converted by Arrow and checked in Python only on failure: a backfill reads
hundreds of thousands of events a second, so the common case must be a few C-level casts
per column; when a cast fails, the column is read value by value to name every bad row.

Lines: a CSV row's line is its number in the file (the header is line 1; blank lines are
rows, reported as having no tenant). A quoted value holding a newline makes a row span two
lines: when the file's rows and lines do not match one to one, its rows are reported as
``row N`` (the first row under the header is row 1), as a Parquet file's always are.
Only an empty CSV field is null: ``NA``, ``null`` or ``nan`` are values (a tenant named
``NA`` is a tenant; a feature ``nan`` is not a finite number).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from muse.errors import MuseError

__all__ = ["BackfillError", "EventBatch", "EventsFile", "RowError"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

#: Columns with a meaning of their own (not intent attributes, not features).
EVENT_ID, TIMESTAMP = "event_id", "timestamp"


class BackfillError(MuseError, ValueError):
    """A backfill cannot start or go on: the file, its columns or the output (the message
    says which); rows that cannot be scored are :class:`RowError` s instead."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One row left out of a backfill: where it is in the file and what is wrong with it."""

    line: int
    message: str
    #: ``line`` or ``row`` (Parquet has rows, not lines).
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.message}"


@dataclass
class EventBatch:
    """One batch of a file: the rows that can be scored, as columns, and the others."""

    #: Line (or row) number of every kept row, in order.
    lines: npt.NDArray[np.int64]
    #: Intent attribute → its values (string array, nulls where a row has no value).
    intents: dict[str, pa.Array]
    features: dict[str, npt.NDArray[np.float64]]
    event_ids: pa.Array
    #: Microseconds since 1970-01-01 UTC of every kept row.
    timestamps_us: npt.NDArray[np.int64]
    errors: list[RowError] = field(default_factory=list)
    #: How rows are named: ``line`` (CSV) or ``row`` (Parquet).
    unit: str = "line"

    @property
    def n(self) -> int:
        return int(self.lines.size)


class EventsFile:
    """``path`` (``.parquet``/``.pq`` or ``.csv``) read in batches of ``batch_size`` rows.

    ``attributes`` are the deployment's intent attributes (the columns read as intents),
    ``features`` the features it knows (the columns read as features; others are ignored,
    as a label column). ``default_time`` stamps rows of a file without a ``timestamp``.
    """

    def __init__(
        self,
        path: str | Path,
        attributes: Sequence[str],
        features: Sequence[str],
        *,
        batch_size: int = 65_536,
        default_time: datetime | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BackfillError(f"events file {self.path} does not exist (or is not a file)")
        suffix = self.path.suffix.lower()
        if suffix not in (".parquet", ".pq", ".csv"):
            raise BackfillError(
                f"events file {self.path}: expected a .parquet (or .pq) or .csv file, "
                f"got {suffix or 'no suffix'!r}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BackfillError(f"batch size must be a positive integer, got {batch_size!r}")
        self.kind = "csv" if suffix == ".csv" else "parquet"
        self.batch_size = batch_size
        stamp = default_time or datetime.now(UTC)
        self.default_us = (stamp - _EPOCH) // _US
        self.columns = self._column_names()
        if "tenant" not in self.columns:
            raise BackfillError(
                f"events file {self.path} has no 'tenant' column: every event needs the "
                f"intent's tenant; columns: {', '.join(self.columns[:20])}"
            )
        self.attributes = [a for a in attributes if a in self.columns]
        self.features = [f for f in features if f in self.columns]
        self.has_ids = EVENT_ID in self.columns
        self.has_time = TIMESTAMP in self.columns
        self.rows = self._count_rows()
        #: How rows are named in reports, and the line (or row) number of the first.
        self.unit, self.first_line = "row", 1
        if self.kind == "csv" and self.rows == self._data_lines():
            self.unit, self.first_line = "line", 2

    # -- what the file is ------------------------------------------------------------

    def _column_names(self) -> list[str]:
        try:
            if self.kind == "parquet":
                return list(pq.read_schema(self.path).names)
            with pacsv.open_csv(self.path) as reader:
                return list(reader.schema.names)
        except (OSError, pa.ArrowInvalid) as e:
            raise BackfillError(f"cannot read events file {self.path}: {e}") from e

    def count_rows(self) -> int:
        """How many rows the file has."""
        return self.rows

    def _count_rows(self) -> int:
        """Parquet: its footer; CSV: the rows the parser finds (one column read)."""
        try:
            if self.kind == "parquet":
                return int(pq.ParquetFile(self.path).metadata.num_rows)
            with pacsv.open_csv(
                self.path,
                read_options=self._read_options(),
                parse_options=self._parse_options(),
                convert_options=pacsv.ConvertOptions(
                    include_columns=["tenant"], column_types={"tenant": pa.string()}
                ),
            ) as reader:
                return sum(batch.num_rows for batch in reader)
        except (OSError, pa.ArrowInvalid) as e:
            raise BackfillError(f"cannot read events file {self.path}: {e}") from e

    def _data_lines(self) -> int:
        """Physical lines under a CSV header (a last line without a newline counts)."""
        newlines, last = 0, b"\n"
        with self.path.open("rb") as f:
            while chunk := f.read(1 << 22):
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
        return max(newlines - 1 + (last != b"\n"), 0)

    @staticmethod
    def _read_options() -> pacsv.ReadOptions:
        return pacsv.ReadOptions(block_size=1 << 22)

    @staticmethod
    def _parse_options() -> pacsv.ParseOptions:
        # Quoted values may hold newlines; blank lines are rows, so every line is counted.
        return pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)

    def fingerprint(self) -> str:
        """Identifies this file's content cheaply (size, modification time, first and last
        MiB): a resumed run must read the same file it started on."""
        st = self.path.stat()
        h = hashlib.blake2b(digest_size=12)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with self.path.open("rb") as f:
            h.update(f.read(1 << 20))
            if st.st_size > 1 << 20:
                f.seek(max(st.st_size - (1 << 20), 0), os.SEEK_SET)
                h.update(f.read(1 << 20))
        return h.hexdigest()

    # -- batches -----------------------------------------------------------------------

    def batches(self, skip_batches: int = 0) -> Iterator[EventBatch]:
        """The file's batches from batch ``skip_batches`` on (those before are read past)."""
        first_line = self.first_line
        done = 0
        for number, table in enumerate(self._tables()):
            if number >= skip_batches:
                yield self._batch(table, first_line + done)
            done += table.num_rows

    def _tables(self) -> Iterator[pa.Table]:
        wanted = [*self.attributes, *self.features]
        wanted += [c for c in (EVENT_ID, TIMESTAMP) if c in self.columns]
        if self.kind == "parquet":
            try:
                parquet = pq.ParquetFile(self.path)
                for batch in parquet.iter_batches(batch_size=self.batch_size, columns=wanted):
                    yield pa.Table.from_batches([batch])
            except (OSError, pa.ArrowInvalid) as e:
                raise BackfillError(f"cannot read events file {self.path}: {e}") from e
            return
        # Every column as text: a bad value is then a row to report, not a failed read.
        options = pacsv.ConvertOptions(
            include_columns=wanted,
            column_types=dict.fromkeys(wanted, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        pending: list[pa.RecordBatch] = []
        rows = 0
        try:
            with pacsv.open_csv(
                self.path,
                read_options=self._read_options(),
                parse_options=self._parse_options(),
                convert_options=options,
            ) as reader:
                for batch in reader:
                    pending.append(batch)
                    rows += batch.num_rows
                    while rows >= self.batch_size:
                        table = pa.Table.from_batches(pending)
                        yield table.slice(0, self.batch_size)
                        rest = table.slice(self.batch_size)
                        pending, rows = rest.to_batches(), rest.num_rows
        except (OSError, pa.ArrowInvalid) as e:
            raise BackfillError(f"cannot read events file {self.path}: {e}") from e
        if rows:
            yield pa.Table.from_batches(pending)

    def _batch(self, table: pa.Table, first_line: int) -> EventBatch:
        n = table.num_rows
        lines = np.arange(first_line, first_line + n, dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        errors: list[RowError] = []

        def reject(mask: npt.NDArray[np.bool_], message: Any) -> None:
            """Reject the rows of ``mask`` not rejected yet; ``message(i)`` says why."""
            new = mask & ~bad
            for i in np.flatnonzero(new).tolist():
                errors.append(RowError(int(lines[i]), message(i), self.unit))
            bad[new] = True

        intents: dict[str, pa.Array] = {}
        for name in self.attributes:
            column = table.column(name).combine_chunks()
            if not pa.types.is_string(column.type):
                if not (
                    _is_text(column.type)
                    or pa.types.is_integer(column.type)
                    or pa.types.is_dictionary(column.type)
                ):
                    raise BackfillError(
                        f"events file {self.path}: intent column {name!r} must hold text (or "
                        f"whole numbers, read as text), got {column.type}"
                    )
                column = column.cast(pa.string())
            intents[name] = column
        tenant = intents["tenant"]
        empty = pc.fill_null(pc.equal(tenant, ""), True).to_numpy(zero_copy_only=False)
        reject(empty, lambda i: "no tenant: every event needs the intent's tenant")

        features: dict[str, npt.NDArray[np.float64]] = {}
        for name in self.features:
            values, problems = _numbers(table.column(name))
            for i, why in problems.items():
                reject(_only(n, i), lambda _i, name=name, why=why: f"feature {name!r} {why}")
            features[name] = values

        if self.has_ids:
            ids = table.column(EVENT_ID).combine_chunks()
            if not pa.types.is_string(ids.type):
                ids = ids.cast(pa.string())
            missing = pc.fill_null(pc.equal(ids, ""), True).to_numpy(zero_copy_only=False)
            reject(missing, lambda i: "no event_id (the column is there: every row needs one)")
        else:
            # Deterministic ids, so a resumed or repeated run writes the same rows.
            stem = self.path.name
            ids = pa.array([f"{stem}:{line}" for line in lines.tolist()], pa.string())

        if self.has_time:
            stamps, problems = _timestamps(table.column(TIMESTAMP))
            for i, why in problems.items():
                reject(_only(n, i), lambda _i, why=why: f"timestamp {why}")
        else:
            stamps = np.full(n, self.default_us, dtype=np.int64)

        if bad.any():
            keep = ~bad
            mask = pa.array(keep)
            return EventBatch(
                lines=lines[keep],
                intents={k: v.filter(mask) for k, v in intents.items()},
                features={k: v[keep] for k, v in features.items()},
                event_ids=ids.filter(mask),
                timestamps_us=stamps[keep],
                errors=sorted(errors, key=lambda e: e.line),
                unit=self.unit,
            )
        return EventBatch(lines, intents, features, ids, stamps, errors, self.unit)


def _is_text(type_: pa.DataType) -> bool:
    """Whether ``type_`` holds text (pandas' ``string[pyarrow]`` writes large strings)."""
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or getattr(pa.types, "is_string_view", lambda _t: False)(type_)
    )


def _only(n: int, i: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros(n, dtype=bool)
    mask[i] = True
    return mask


def _numbers(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.float64], dict[int, str]]:
    """A feature column as float64 (null → NaN: not sent, as in a request) and the rows
    whose value is not a finite number, with why."""
    array = column.combine_chunks()
    try:
        if _is_text(array.type):
            # "nan"/"inf" parse: caught below as not finite, like a request's.
            values = pc.cast(pc.utf8_trim_whitespace(array), pa.float64())
        elif pa.types.is_boolean(array.type):
            raise pa.ArrowInvalid("booleans are not numeric features")
        else:
            values = pc.cast(array, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _numbers_one_by_one(array)
    out = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    out = np.where(values.is_null().to_numpy(zero_copy_only=False), np.nan, out)
    bad = ~np.isfinite(out) & ~np.isnan(out)
    nan_sent = np.zeros(out.shape, dtype=bool)
    if _is_text(array.type) or pa.types.is_floating(array.type):
        # A value spelled "nan" (or a float NaN in Parquet) is not "not sent".
        nan_sent = np.isnan(out) & array.is_valid().to_numpy(zero_copy_only=False)
    problems = {int(i): f"must be finite, got {float(out[i])!r}" for i in np.flatnonzero(bad)}
    problems.update({int(i): "must be finite, got nan" for i in np.flatnonzero(nan_sent)})
    return out, problems


def _numbers_one_by_one(array: pa.Array) -> tuple[npt.NDArray[np.float64], dict[int, str]]:
    """The slow path of :func:`_numbers`: every value on its own, to name each bad one."""
    out = np.full(len(array), np.nan)
    problems: dict[int, str] = {}
    for i, v in enumerate(array.to_pylist()):
        if v is None:
            continue
        if isinstance(v, bool):
            problems[i] = f"must be a number, got {v!r}"
            continue
        try:
            x = float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError, OverflowError):
            problems[i] = f"must be a number, got {v!r}"
            continue
        if not math.isfinite(x):
            problems[i] = f"must be finite, got {v!r}"
            continue
        out[i] = x
    return out, problems


def _timestamps(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], dict[int, str]]:
    """Microseconds since the epoch, UTC (a time without a zone is taken as UTC), and the
    rows without a readable time."""
    array = column.combine_chunks()
    target = pa.timestamp("us", tz="UTC")
    try:
        if pa.types.is_timestamp(array.type):
            stamps = array.cast(pa.timestamp("us", tz=array.type.tz or "UTC"))
        elif _is_text(array.type):
            stamps = _parse_times(array.cast(pa.string()))
        else:
            raise pa.ArrowInvalid(f"a timestamp column must hold times or text, got {array.type}")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _timestamps_one_by_one(array)
    us = stamps.cast(target).cast(pa.int64())
    nulls = us.is_null().to_numpy(zero_copy_only=False)
    values = us.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    problems = {int(i): "is empty" for i in np.flatnonzero(nulls)}
    return values, problems


def _parse_times(array: pa.Array) -> pa.Array:
    """ISO 8601 text as UTC timestamps: with a zone (``Z``, ``+02:00``) or without (UTC)."""
    try:
        return pc.cast(array, pa.timestamp("us"))  # no zone in the text: UTC
    except pa.ArrowInvalid:
        return pc.cast(array, pa.timestamp("us", tz="UTC"))  # every value has a zone


def _timestamps_one_by_one(array: pa.Array) -> tuple[npt.NDArray[np.int64], dict[int, str]]:
    out = np.zeros(len(array), dtype=np.int64)
    problems: dict[int, str] = {}
    for i, v in enumerate(array.to_pylist()):
        if v is None:
            problems[i] = "is empty"
            continue
        try:
            t = v if isinstance(v, datetime) else datetime.fromisoformat(str(v).strip())
        except ValueError:
            problems[i] = f"is not an ISO 8601 time: {v!r}"
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        out[i] = (t - _EPOCH) // _US
    return out, problems
