"""Reading the score lake back with DuckDB, for ``muse fit`` and ``muse report`` (ARCHITECTURE).

``fit`` needs one tenant's raw aggregates ``a`` of one predictor, in time order, to fit its
quantile map T^Q (paper §2.3.3) and hold out the latest part; ``report`` needs final scores,
optionally with fraud labels, and the model-CI pairing of a candidate's shadow results with
the live results on the same events (§2.5.1, shadow rules).

Which files are read — partition pruning done here, not left to DuckDB:
DuckDB prunes hive partitions from a ``<root>/**/*.parquet`` glob only without
``union_by_name``; with it (needed so files written before a column was added still read)
it opens the footer of *every* file of the lake at bind time. So the reader lists the
folders itself — ``date=`` folders within the window, then only the asked predictor's
folder in each (see :mod:`muse.scorelog.layout`) — and hands DuckDB that file list. A query
therefore costs one listing of the lake root, one per day in the window, and reads only
those files. Only names ending in ``.parquet`` and not starting with ``.`` or ``_`` count,
as for pyarrow's discovery: the writer's ``.part-*.parquet.tmp`` orphans stay invisible.

Semantics shared by every query:

* A ``predictor`` is matched by its partition folder, which is authoritative (DuckDB also
  takes the path's value over the file's column). An unknown predictor, or a tenant or a
  window without rows, gives an empty result, not an error: an operator asking about a
  predictor that has not served yet gets "0 events" from the sample-size guard. Only a lake
  folder that is missing or holds no Parquet file at all is a :class:`LakeError`.
* Replayed requests: an ``event_id`` seen more than once for one (predictor, tenant) counts
  once — the row with the latest ``timestamp`` (then the later file name and row, so the
  choice is deterministic) — *among the rows the filters keep*. Rows with an empty or
  missing ``event_id`` (in-process scoring without ids) cannot be told apart, so they are
  all kept, and never paired or labelled.
* Rows come in ``(timestamp, event_id)`` order, ties broken by file and row, so a split of
  the latest part is reproducible.

Values are always bound as parameters, the file list included; no caller string is pasted
into SQL. One DuckDB connection per reader, opened on first use: a reader is not meant to
be shared between threads.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import fsspec  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from muse.errors import MuseError
from muse.extras import require
from muse.scorelog.layout import partition_segment
from muse.types import ScoreArray

__all__ = ["PAIRED_SCHEMA", "SCORES_SCHEMA", "LakeError", "LakeReader", "Window"]


class LakeError(MuseError, ValueError):
    """The score lake (or a labels file) cannot be read as asked.

    Raised for a lake folder that does not exist or holds no Parquet file, labels missing
    a column or holding a label other than 0/1, and any DuckDB error while reading (a
    corrupt file, say), with the lake or labels location in the message.
    """


#: Columns of :meth:`LakeReader.scores` (plus ``label``: int8 0/1, when asked for labels).
SCORES_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("raw", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("tq_version", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("experts", pa.map_(pa.string(), pa.float64())),
    ]
)

#: Columns of :meth:`LakeReader.paired` (plus ``label``); ``timestamp`` is the live row's.
PAIRED_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("live_raw", pa.float64()),
        pa.field("live_score", pa.float64()),
        pa.field("live_tq_version", pa.string()),
        pa.field("candidate_raw", pa.float64()),
        pa.field("candidate_score", pa.float64()),
        pa.field("candidate_tq_version", pa.string()),
    ]
)

_LABEL = pa.field("label", pa.int8())

_ISO_EXAMPLES = "'2026-11-01', '2026-11-01T12:00' or '2026-11-01T12:00:00Z'"


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window ``[since, until)`` in UTC; a missing bound is unbounded.

    Half-open so that consecutive windows (one per day, per week) never count an event
    twice. Bounds must be timezone-aware (a naive datetime is ambiguous: local time or
    UTC?); they are stored converted to UTC.
    """

    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(
                    f"Window {name} must be a timezone-aware datetime, got {value!r}; "
                    "use Window.parse for ISO strings (naive ones are taken as UTC there)"
                )
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(
                f"Window since ({self.since.isoformat()}) must be before until "
                f"({self.until.isoformat()}): the window [since, until) would be empty"
            )

    @classmethod
    def parse(cls, since: str | None, until: str | None) -> Window:
        """The window between two ISO dates or datetimes, as given on a command line.

        A date means midnight UTC, a datetime without offset is UTC, ``Z`` or an offset is
        honoured. ``ValueError`` names the argument (``since``/``until``) that is wrong.
        """
        return cls(_parse_instant("since", since), _parse_instant("until", until))

    def days(self, margin: int = 0) -> tuple[date | None, date | None]:
        """First and last UTC day whose partition can hold rows of the window, ± ``margin`` days."""
        first = None if self.since is None else self.since.date() - timedelta(days=margin)
        last = (
            None
            if self.until is None
            else (self.until - timedelta(microseconds=1)).date() + timedelta(days=margin)
        )
        return first, last


def _parse_instant(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except (TypeError, ValueError, AttributeError):
        raise ValueError(
            f"{name}: expected an ISO date or datetime such as {_ISO_EXAMPLES}, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


_EVERYTHING = Window()

#: ``hive_types`` declared, never inferred: a predictor named ``2024`` stays a string.
_READ_LAKE = (
    "read_parquet(?, hive_partitioning = true, "
    "hive_types = {'date': DATE, 'predictor': VARCHAR}, union_by_name = true, "
    "filename = true, file_row_number = true)"
)
_READ_LABELS = "read_parquet(?, hive_partitioning = false, union_by_name = true)"
#: The latest row per event id; rows without an id are kept (see the module docstring).
_LATEST = (
    "QUALIFY event_id IS NULL OR event_id = '' OR row_number() OVER "
    "(PARTITION BY event_id ORDER BY timestamp DESC, filename DESC, file_row_number DESC) = 1"
)
_ORDER = "ORDER BY timestamp, event_id, filename, file_row_number"

_LABEL_COLUMNS = {
    "event_id": "a string",
    "label": "0/1 as an integer or boolean",
    "labelled_at": "a timestamp",
}


class LakeReader:
    """Queries over a hive-partitioned score lake written by :class:`~muse.scorelog.LakeWriter`.

    ``url`` is the lake root: a local folder or any fsspec URL (``file:///…``,
    ``memory://lake``, ``s3://bucket/lake``); non-local filesystems are registered with the
    reader's DuckDB connection. ``labels`` optionally names a Parquet file, a folder of
    them or a glob, with columns ``event_id`` (string), ``label`` (0/1 integer or boolean)
    and ``labelled_at`` (timestamp); when an event has several labels the latest
    ``labelled_at`` wins (a chargeback overrides an earlier "legit"). If the labels also
    have a ``tenant`` column it is joined on too, since event ids are only unique per tenant.

    The constructor does no I/O; the connection opens on the first query and
    :meth:`close` (or ``with``) releases it. Every query lists the lake anew, so files
    written meanwhile are seen.
    """

    def __init__(self, url: str | Path, labels: str | Path | None = None) -> None:
        self.url = str(url)
        self.labels = None if labels is None else str(labels)
        self._con: Any = None
        self._closed = False
        self._fs: Any = None
        self._root = ""
        self._label_files: list[str] | None = None
        self._labels_have_tenant = False

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the DuckDB connection; the reader cannot be used afterwards. Idempotent."""
        self._closed = True
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------

    def raw_scores(
        self,
        predictor: str,
        tenant: str,
        *,
        role: str | None = None,
        window: Window | None = None,
    ) -> ScoreArray:
        """The raw aggregates ``a`` of ``predictor`` for ``tenant``, oldest first (fit input of T^Q).

        ``role`` ``None`` takes live and shadow rows both, so a shadow predictor's map can
        be fitted before it is promoted.
        """
        files = self._files(predictor, (window or _EVERYTHING).days())
        if not files:
            return np.empty(0, dtype=np.float64)
        rows, params = _rows_sql(files, tenant, role, window)
        table = self._arrow(f"SELECT raw FROM ({rows}) {_ORDER}", params)
        raw = table.column("raw").to_numpy()
        return np.ascontiguousarray(raw, dtype=np.float64)

    def count(
        self,
        predictor: str,
        tenant: str,
        *,
        role: str | None = None,
        window: Window | None = None,
    ) -> int:
        """How many events :meth:`raw_scores` would return, counted inside DuckDB."""
        files = self._files(predictor, (window or _EVERYTHING).days())
        if not files:
            return 0
        rows, params = _rows_sql(files, tenant, role, window)
        ((n,),) = self._fetchall(f"SELECT count(*) FROM ({rows})", params)
        return int(n)

    def tenants(
        self,
        predictor: str,
        *,
        role: str | None = None,
        window: Window | None = None,
    ) -> list[str]:
        """The tenants with rows of ``predictor`` (in ``role`` and ``window``), sorted."""
        files = self._files(predictor, (window or _EVERYTHING).days())
        if not files:
            return []
        where, params = _filters(role, window)
        sql = (
            f"SELECT DISTINCT tenant FROM {_READ_LAKE} "
            f"WHERE tenant IS NOT NULL{where} ORDER BY tenant"
        )
        return [str(t) for (t,) in self._fetchall(sql, [files, *params])]

    def scores(
        self,
        predictor: str,
        tenant: str,
        *,
        role: str | None = None,
        window: Window | None = None,
        with_labels: bool = False,
        as_arm: bool = False,
    ) -> pa.Table:
        """Rows of ``predictor`` for ``tenant`` with :data:`SCORES_SCHEMA`, oldest first.

        ``with_labels`` keeps only the labelled events and adds ``label`` (int8 0/1);
        it needs the reader's ``labels``. ``as_arm`` keeps only the live rows of events a
        canary split sent to ``predictor`` (its arm's own events; none in a lake written
        before format @2, which has no ``arm`` column).
        """
        labels = self._labels() if with_labels else None
        schema = _with_label(SCORES_SCHEMA, with_labels)
        files = self._files(predictor, (window or _EVERYTHING).days())
        if not files:
            return schema.empty_table()
        if as_arm and not self._has_column(files, "arm"):
            return schema.empty_table()
        rows, params = _rows_sql(files, tenant, "live" if as_arm else role, window)
        if as_arm:
            rows = rows.replace(" WHERE tenant = ?", " WHERE arm = ? AND tenant = ?", 1)
            params.insert(1, predictor)
        columns = ", ".join(f"s.{name}" for name in SCORES_SCHEMA.names)
        join, join_params = self._label_join(labels, "s")
        sql = (
            f"SELECT {columns}{', l.label' if labels is not None else ''} FROM ({rows}) s{join} "
            f"ORDER BY s.timestamp, s.event_id, s.filename, s.file_row_number"
        )
        return self._checked(self._arrow(sql, [*params, *join_params]), schema)

    def paired(
        self,
        live: str,
        candidate: str,
        tenant: str,
        *,
        window: Window | None = None,
        with_labels: bool = False,
    ) -> pa.Table:
        """The model-CI join: ``live``'s live rows and ``candidate``'s rows on the same events.

        Only events present in both, with :data:`PAIRED_SCHEMA`, in the live rows' time
        order. ``window`` selects the live rows; the candidate's rows are matched whatever
        their own timestamp (a shadow row is stamped with its batch's earliest arrival, so
        it may fall just before the window's start).
        """
        labels = self._labels() if with_labels else None
        schema = _with_label(PAIRED_SCHEMA, with_labels)
        days = (window or _EVERYTHING).days()
        live_files = self._files(live, days)
        candidate_files = self._files(candidate, (window or _EVERYTHING).days(margin=1))
        if not live_files or not candidate_files:
            return schema.empty_table()
        live_rows, live_params = _rows_sql(live_files, tenant, "live", window)
        cand_rows, cand_params = _rows_sql(candidate_files, tenant, None, None)
        join, join_params = self._label_join(labels, "v")
        sql = (
            f"SELECT v.event_id, v.timestamp, v.raw AS live_raw, v.score AS live_score, "
            f"v.tq_version AS live_tq_version, c.raw AS candidate_raw, "
            f"c.score AS candidate_score, c.tq_version AS candidate_tq_version"
            f"{', l.label' if labels is not None else ''} "
            f"FROM ({live_rows}) v JOIN ({cand_rows}) c ON c.event_id = v.event_id{join} "
            f"WHERE v.event_id <> '' "
            f"ORDER BY v.timestamp, v.event_id, v.filename, v.file_row_number"
        )
        table = self._arrow(sql, [*live_params, *cand_params, *join_params])
        return self._checked(table, schema)

    # -- files -------------------------------------------------------------------------

    def _has_column(self, files: list[str], name: str) -> bool:
        """Whether any of ``files`` has column ``name`` (reads only the files' footers)."""
        sql = (
            "SELECT count(*) FROM (DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)) "
            "WHERE column_name = ?"
        )
        return bool(self._fetchall(sql, [files, name])[0][0])

    def _files(self, predictor: str, days: tuple[date | None, date | None]) -> list[str]:
        """Data files of ``predictor`` in the partitions of ``days``, as DuckDB paths."""
        fs, root = self._filesystem()
        first, last = days
        segment = f"predictor={partition_segment(predictor)}"
        files: list[str] = []
        for folder in self._date_folders(fs, root):
            day = _folder_day(folder)
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            try:
                names = fs.ls(f"{folder}/{segment}", detail=False)
            except FileNotFoundError:
                continue
            files += [n for n in names if _is_data_file(n)]
        if not files:
            self._require_any_file(fs, root)
        return [self._duckdb_path(f) for f in sorted(files)]

    def _date_folders(self, fs: Any, root: str) -> list[str]:
        fs.invalidate_cache(root)  # long-lived readers must see files written since
        try:
            entries = fs.ls(root, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            raise LakeError(
                f"no score-lake files under {self.url!r}: the folder does not exist "
                "(check the path, or that the service's scorelog url points there)"
            ) from None
        return sorted(e.rstrip("/") for e in entries if _name(e).startswith("date="))

    def _require_any_file(self, fs: Any, root: str) -> None:
        """Raise unless the lake holds at least one data file (stops at the first found)."""
        for folder in self._date_folders(fs, root):
            for sub in fs.ls(folder, detail=False):
                try:
                    if any(_is_data_file(n) for n in fs.ls(sub, detail=False)):
                        return
                except (FileNotFoundError, NotADirectoryError):
                    continue
        raise LakeError(
            f"no score-lake files under {self.url!r}: expected "
            "date=YYYY-MM-DD/predictor=<name>/part-*.parquet files there "
            "(is it the lake root, and has the writer flushed?)"
        )

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            self._fs, self._root = self._resolve(self.url, "score lake")
            self._root = self._root.rstrip("/") or "/"
        return self._fs, self._root

    def _resolve(self, url: str, what: str) -> tuple[Any, str]:
        try:
            fs, path = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError, TypeError) as e:
            raise LakeError(
                f"{what} url {url!r}: {e}; use a local folder or an fsspec URL whose "
                "package is installed (s3fs for s3://)"
            ) from e
        if not _is_local(fs):
            con = self._connection()
            if not any(con.filesystem_is_registered(p) for p in _protocols(fs)):
                con.register_filesystem(fs)
        return fs, str(path)

    def _duckdb_path(self, path: str) -> str:
        # Local files go through DuckDB's own (C++) filesystem; others through fsspec.
        return path if _is_local(self._fs) else str(self._fs.unstrip_protocol(path))

    # -- labels ------------------------------------------------------------------------

    def _labels(self) -> list[str]:
        """The labels' files, their columns checked once per reader."""
        if self.labels is None:
            raise LakeError(
                "labels were asked for but this LakeReader has none: pass "
                "LakeReader(url, labels='labels.parquet') (columns event_id, label, labelled_at)"
            )
        if self._label_files is None:
            fs, path = self._resolve(self.labels, "labels")
            files = _label_files(fs, path, self.labels)
            paths = files if _is_local(fs) else [str(fs.unstrip_protocol(f)) for f in files]
            columns = {
                str(name): str(kind)
                for name, kind, *_ in self._fetchall(
                    f"DESCRIBE SELECT * FROM {_READ_LABELS}",
                    [paths],
                    subject=f"labels {self.labels!r}",
                )
            }
            _check_label_columns(self.labels, columns)
            self._labels_have_tenant = columns.get("tenant") == "VARCHAR"
            self._label_files = paths
        return self._label_files

    def _label_join(self, labels: list[str] | None, alias: str) -> tuple[str, list[Any]]:
        """A join of the latest label per event onto ``alias``, or nothing."""
        if labels is None:
            return "", []
        key = "tenant, event_id" if self._labels_have_tenant else "event_id"
        tenant = f" AND l.tenant = {alias}.tenant" if self._labels_have_tenant else ""
        latest = (
            f"SELECT {key}, label::TINYINT AS label FROM {_READ_LABELS} "
            f"WHERE event_id IS NOT NULL AND event_id <> '' QUALIFY row_number() OVER "
            f"(PARTITION BY {key} ORDER BY labelled_at DESC NULLS LAST, label DESC) = 1"
        )
        return f" JOIN ({latest}) l ON l.event_id = {alias}.event_id{tenant}", [labels]

    def _checked(self, table: pa.Table, schema: pa.Schema) -> pa.Table:
        """``table`` cast to ``schema``; labels other than 0/1 are refused, naming an event."""
        table = table.select(schema.names).cast(schema)
        if "label" in schema.names and table.num_rows:
            label = table.column("label")
            bad = pc.invert(pc.fill_null(pc.is_in(label, pa.array([0, 1], pa.int8())), False))
            if pc.any(bad).as_py():
                row = table.filter(bad).slice(0, 1).to_pylist()[0]
                raise LakeError(
                    f"labels {self.labels!r}: label must be 0 or 1, got {row['label']!r} "
                    f"for event {row['event_id']!r}"
                )
        return table

    # -- DuckDB ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._closed:
            raise LakeError(f"LakeReader for {self.url!r} is closed; create a new one")
        if self._con is None:
            con = _duckdb().connect(":memory:")
            con.sql("SET TimeZone = 'UTC'")  # Arrow timestamps come out tagged UTC
            self._con = con
        return self._con

    def _arrow(self, sql: str, params: Sequence[Any]) -> pa.Table:
        table: pa.Table = self._run(sql, params, lambda rel: rel.to_arrow_table())
        return table

    def _fetchall(
        self, sql: str, params: Sequence[Any], *, subject: str | None = None
    ) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._run(sql, params, lambda rel: rel.fetchall(), subject)
        return rows

    def _run(
        self,
        sql: str,
        params: Sequence[Any],
        fetch: Callable[[Any], Any],
        subject: str | None = None,
    ) -> Any:
        """``fetch`` applied to the query's relation; DuckDB errors become :class:`LakeError`."""
        duckdb = _duckdb()
        try:
            return fetch(self._connection().sql(sql, params=list(params)))
        except duckdb.Error as e:
            raise LakeError(f"{subject or f'score lake {self.url!r}'}: {e}") from e


def _duckdb() -> Any:
    """DuckDB, from the ``reports`` extra: only the lake's readers need it, never a replica."""
    return require("duckdb", "reading the score lake")


def _rows_sql(
    files: list[str], tenant: str, role: str | None, window: Window | None
) -> tuple[str, list[Any]]:
    """The deduplicated rows of one tenant in ``files``, with the columns queries need."""
    where, params = _filters(role, window)
    sql = (
        "SELECT event_id, timestamp, tenant, raw, score, tq_version, fingerprint, experts, "
        f"filename, file_row_number FROM {_READ_LAKE} WHERE tenant = ?{where} {_LATEST}"
    )
    return sql, [files, tenant, *params]


def _filters(role: str | None, window: Window | None) -> tuple[str, list[Any]]:
    where = ""
    params: list[Any] = []
    if role is not None:
        where += " AND role = ?"
        params.append(role)
    if window is not None and window.since is not None:
        where += " AND timestamp >= ?"
        params.append(window.since)
    if window is not None and window.until is not None:
        where += " AND timestamp < ?"
        params.append(window.until)
    return where, params


def _with_label(schema: pa.Schema, with_labels: bool) -> pa.Schema:
    return schema.append(_LABEL) if with_labels else schema


def _label_files(fs: Any, path: str, given: str) -> list[str]:
    if any(c in path for c in "*?["):
        files = [f for f in fs.glob(path) if _is_data_file(f)]
    elif fs.isdir(path):
        files = [f for f in fs.find(path) if _is_data_file(f)]
    elif fs.isfile(path):
        files = [path]
    else:
        raise LakeError(f"labels {given!r}: no such file or folder")
    if not files:
        raise LakeError(f"labels {given!r}: no .parquet file there")
    return sorted(files)


def _check_label_columns(given: str, columns: dict[str, str]) -> None:
    problems = [
        f"{name} ({expected}) is missing"
        for name, expected in _LABEL_COLUMNS.items()
        if name not in columns
    ]
    checks: dict[str, Callable[[str], bool]] = {
        "event_id": lambda t: t == "VARCHAR",
        "label": lambda t: (
            t == "BOOLEAN" or t.endswith(("INT", "INTEGER"))
        ),  # any width, signed or not
        "labelled_at": lambda t: t.startswith("TIMESTAMP"),
    }
    problems += [
        f"{name} must be {_LABEL_COLUMNS[name]}, got {columns[name]}"
        for name, ok in checks.items()
        if name in columns and not ok(columns[name])
    ]
    if problems:
        found = ", ".join(f"{n} {t}" for n, t in columns.items())
        raise LakeError(f"labels {given!r}: {'; '.join(problems)} (found columns: {found})")


def _folder_day(folder: str) -> date:
    value = _name(folder).removeprefix("date=")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise LakeError(
            f"score-lake folder {folder!r} is not a day: expected date=YYYY-MM-DD "
            "(move foreign folders out of the lake root)"
        ) from None


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/"))


def _is_data_file(path: str) -> bool:
    name = _name(path)
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def _is_local(fs: Any) -> bool:
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
