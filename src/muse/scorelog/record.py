"""One score-lake record and the Arrow schema every lake file has (ARCHITECTURE: score lake).

The scoring service appends one :class:`LakeRow` per (event, predictor) — the live result
and every shadow result — and offline tools (``fit``, ``report``) read them back to fit
per-tenant quantile maps T^Q (paper §2.3.3) and compare predictors (§2.5.1, shadow rules).

Why a ``NamedTuple``: rows are built on the request path, one per event and predictor;
a named tuple costs about as much as a plain tuple to create (a frozen dataclass costs
several times more) and ``zip(*rows)`` turns a batch into columns in one C-level pass.

Why column-wise: rows wait in a :class:`LakeColumns` — a list per column of plain
``str``/``float``/``int`` values, the map columns flattened — and each column becomes Arrow
with one ``pyarrow.array`` call: no pandas, no object per row while rows wait to be written.

The layout on disk is a contract shared with DuckDB and pyarrow readers
(``read_parquet('<root>/**/*.parquet', hive_partitioning=true)``)::

    <root>/date=2026-11-22/predictor=ensemble-v1/part-<uuid4 hex>.parquet

``date`` (the UTC calendar day of ``timestamp``) lives only in the path. ``predictor``
lives in the path *and* in the file, on purpose: a single file stays self-describing when
copied or read without hive partitioning, and both readers accept the duplicate — pyarrow
merges the two string fields, DuckDB (since 0.7) takes the path's value. The two always
agree because every file holds exactly one predictor. Path values are percent-encoded as
DuckDB and pyarrow decode them (a no-op for config names, ``[A-Za-z0-9][A-Za-z0-9_.-]*``).
Readers should declare the partition types rather than infer them, see
:data:`muse.scorelog.layout.PARTITION_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, NamedTuple

import pyarrow as pa

__all__ = ["LAKE_FORMAT", "LAKE_SCHEMA", "LakeColumns", "LakeRow", "rows_to_table"]

#: Bumped when a column is added, removed or changes meaning; stored in every file's metadata.
#: @2 added ``arm``; files of @1 read as rows with a null arm (readers union by name).
LAKE_FORMAT = "muse/score-lake@2"


class LakeRow(NamedTuple):
    """One predictor's result for one event, as written to the score lake.

    ``timestamp`` is a timezone-aware UTC ``datetime`` (a naive one is taken as UTC, as
    pyarrow does; any other zone is converted). ``intent`` holds every intent attribute,
    the tenant included; ``raw`` is the aggregate ``a`` fed to T^Q and ``score`` the final
    score; ``experts`` maps each model name to its raw output. ``role`` is ``"live"`` or
    ``"shadow"``. ``arm`` is the predictor a canary split chose to serve the event (on its
    live row and on its shadow rows alike), None for an event no split routed: the arms of
    an experiment are compared on their own events by selecting live rows with an arm.
    """

    event_id: str
    timestamp: datetime
    tenant: str
    intent: Mapping[str, str]
    predictor: str
    role: str
    fingerprint: str
    tq_version: str
    raw: float
    score: float
    experts: Mapping[str, float]
    latency_ms: float
    config_version: str
    arm: str | None = None


#: Arrow schema of every lake file, in :class:`LakeRow` field order. ``role`` stays a plain
#: string: Parquet dictionary-encodes it on disk anyway, and readers get a simple VARCHAR.
LAKE_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("tenant", pa.string()),
        pa.field("intent", pa.map_(pa.string(), pa.string())),
        pa.field("predictor", pa.string()),
        pa.field("role", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("tq_version", pa.string()),
        pa.field("raw", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("experts", pa.map_(pa.string(), pa.float64())),
        pa.field("latency_ms", pa.float64()),
        pa.field("config_version", pa.string()),
        pa.field("arm", pa.string()),
    ],
    metadata={"muse.lake_format": LAKE_FORMAT},
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class LakeColumns:
    """Lake rows held column by column until they are written.

    Why not a list of :class:`LakeRow`: the service holds every result for up to a flush
    interval. As row objects — a tuple, a dict of expert scores, a datetime each — a
    buffer of a few thousand rows is thousands of objects that the garbage collector scans
    at every young collection (~1.2 ms, ten times a second at 1,000 requests/s, measured)
    and that the writer thread converts one by one under the GIL (~1.6 µs a row). Here a
    buffer is 18 lists of plain ``str``, ``float`` and ``int`` values — the map columns
    flattened into keys, values and entry counts, timestamps in microseconds since the
    epoch (UTC) — and each list becomes an Arrow array in one call (~0.6 µs a row in all).

    Values are not checked when added (the request path must stay cheap): a value that
    does not fit its column makes :meth:`to_table` raise, naming the column.
    """

    __slots__ = (
        "arm",
        "config_version",
        "event_id",
        "expert_counts",
        "expert_names",
        "expert_scores",
        "fingerprint",
        "intent_counts",
        "intent_keys",
        "intent_values",
        "latency_ms",
        "predictor",
        "raw",
        "role",
        "score",
        "tenant",
        "timestamp_us",
        "tq_version",
    )

    def __init__(self) -> None:
        self.event_id: list[str] = []
        self.timestamp_us: list[int | None] = []
        self.tenant: list[str] = []
        self.intent_keys: list[str] = []
        self.intent_values: list[str] = []
        self.intent_counts: list[int] = []
        self.predictor: list[str] = []
        self.role: list[str] = []
        self.fingerprint: list[str] = []
        self.tq_version: list[str] = []
        self.raw: list[float] = []
        self.score: list[float] = []
        self.expert_names: list[str] = []
        self.expert_scores: list[float] = []
        self.expert_counts: list[int] = []
        self.latency_ms: list[float] = []
        self.config_version: list[str] = []
        self.arm: list[str | None] = []

    def __len__(self) -> int:
        return len(self.event_id)

    def add(
        self,
        event_id: str,
        timestamp_us: int | None,
        tenant: str,
        intent: Mapping[str, str],
        predictor: str,
        role: str,
        fingerprint: str,
        tq_version: str,
        raw: float,
        score: float,
        experts: Mapping[str, float],
        latency_ms: float,
        config_version: str,
        arm: str | None = None,
    ) -> None:
        """One row; ``timestamp_us`` counts microseconds since 1970-01-01 UTC."""
        self.event_id.append(event_id)
        self.timestamp_us.append(timestamp_us)
        self.tenant.append(tenant)
        self.intent_keys.extend(intent)
        self.intent_values.extend(intent.values())
        self.intent_counts.append(len(intent))
        self.predictor.append(predictor)
        self.role.append(role)
        self.fingerprint.append(fingerprint)
        self.tq_version.append(tq_version)
        self.raw.append(raw)
        self.score.append(score)
        self.expert_names.extend(experts)
        self.expert_scores.extend(experts.values())
        self.expert_counts.append(len(experts))
        self.latency_ms.append(latency_ms)
        self.config_version.append(config_version)
        self.arm.append(arm)

    def add_rows(self, rows: Iterable[LakeRow]) -> None:
        """Rows given as :class:`LakeRow` (a naive timestamp is taken as UTC).

        Raises ``TypeError`` at the first row whose ``intent`` or ``experts`` is not a
        mapping; the rows before it are added, that row is not.
        """
        add = self.add
        for r in rows:
            for name, value in (("intent", r.intent), ("experts", r.experts)):
                if not isinstance(value, Mapping):
                    raise TypeError(
                        f"score lake column {name!r}: expected a mapping, got "
                        f"{type(value).__name__}"
                    )
            add(
                r.event_id,
                micros(r.timestamp),
                r.tenant,
                r.intent,
                r.predictor,
                r.role,
                r.fingerprint,
                r.tq_version,
                r.raw,
                r.score,
                r.experts,
                r.latency_ms,
                r.config_version,
                r.arm,
            )

    def extend(self, other: LakeColumns) -> None:
        """Append every row of ``other``."""
        # Spelled out: a loop over the slot names with getattr cost ~10 µs a call, and the
        # service calls this once per scored micro-batch.
        self.event_id += other.event_id
        self.timestamp_us += other.timestamp_us
        self.tenant += other.tenant
        self.intent_keys += other.intent_keys
        self.intent_values += other.intent_values
        self.intent_counts += other.intent_counts
        self.predictor += other.predictor
        self.role += other.role
        self.fingerprint += other.fingerprint
        self.tq_version += other.tq_version
        self.raw += other.raw
        self.score += other.score
        self.expert_names += other.expert_names
        self.expert_scores += other.expert_scores
        self.expert_counts += other.expert_counts
        self.latency_ms += other.latency_ms
        self.config_version += other.config_version
        self.arm += other.arm

    def head(self, n: int) -> LakeColumns:
        """A new buffer with the first ``n`` rows."""
        out = LakeColumns()
        n_intent = sum(self.intent_counts[:n])
        n_expert = sum(self.expert_counts[:n])
        for name in self.__slots__:
            stop = {"intent_keys": n_intent, "intent_values": n_intent}.get(
                name, n_expert if name in ("expert_names", "expert_scores") else n
            )
            setattr(out, name, getattr(self, name)[:stop])
        return out

    def to_table(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Rows ``start:stop`` as an Arrow table with :data:`LAKE_SCHEMA`.

        Raises ``TypeError`` or ``ValueError`` naming the column and the offending value
        when a value does not fit its column, e.g. a string where a float is expected.
        """
        stop = len(self) if stop is None else min(stop, len(self))
        start = min(start, stop)
        return self._table(start, stop, _offsets(self.intent_counts), _offsets(self.expert_counts))

    def tables(self, rows_per_table: int) -> Iterator[pa.Table]:
        """Every row, as consecutive tables of at most ``rows_per_table`` rows (each
        conversion holds the GIL, so the writer converts a big buffer slice by slice; the
        map columns' offsets are computed once for all slices). Raises as :meth:`to_table`.
        """
        intents, experts = _offsets(self.intent_counts), _offsets(self.expert_counts)
        for start in range(0, len(self), rows_per_table):
            yield self._table(start, min(start + rows_per_table, len(self)), intents, experts)

    def _table(self, start: int, stop: int, intents: list[int], experts: list[int]) -> pa.Table:
        sl = slice(start, stop)
        arrays = []
        for field in LAKE_SCHEMA:
            try:
                if field.name == "intent":
                    arrays.append(
                        _map_array(intents, self.intent_keys, self.intent_values, sl, field.type)
                    )
                elif field.name == "experts":
                    arrays.append(
                        _map_array(experts, self.expert_names, self.expert_scores, sl, field.type)
                    )
                elif field.name == "timestamp":
                    arrays.append(pa.array(self.timestamp_us[sl], type=pa.int64()).cast(field.type))
                else:
                    arrays.append(pa.array(getattr(self, field.name)[sl], type=field.type))
            except (TypeError, ValueError, pa.ArrowException) as e:
                error = TypeError if isinstance(e, TypeError) else ValueError
                raise error(f"score lake column {field.name!r} ({field.type}): {e}") from e
        return pa.Table.from_arrays(arrays, schema=LAKE_SCHEMA)


def micros(timestamp: datetime | None) -> int | None:
    """Microseconds since 1970-01-01 UTC (a naive ``timestamp`` is taken as UTC, as pyarrow
    does); anything but a datetime is returned as is, for :meth:`LakeColumns.to_table` to
    refuse (None: a null timestamp)."""
    if not isinstance(timestamp, datetime):
        return timestamp
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return (timestamp - _EPOCH) // _US


def _offsets(counts: list[int]) -> list[int]:
    """Where each row's map entries start in the flattened lists (and, last, the end)."""
    return list(accumulate(counts, initial=0))


def _map_array(
    offsets: list[int], keys: list[Any], items: list[Any], rows: slice, type_: pa.DataType
) -> pa.Array:
    first, last = offsets[rows.start], offsets[rows.stop]
    return pa.MapArray.from_arrays(
        pa.array([o - first for o in offsets[rows.start : rows.stop + 1]], type=pa.int32()),
        pa.array(keys[first:last], type=type_.key_type),
        pa.array(items[first:last], type=type_.item_type),
        type=type_,
    )


def rows_to_table(rows: Sequence[LakeRow]) -> pa.Table:
    """The rows as an Arrow table with :data:`LAKE_SCHEMA`, built column by column.

    Raises ``TypeError`` or ``ValueError`` naming the column and the offending value when
    a field does not fit its column, e.g. a string where a float is expected.
    """
    if not rows:
        return LAKE_SCHEMA.empty_table()
    columns = LakeColumns()
    columns.add_rows(rows)
    return columns.to_table()
