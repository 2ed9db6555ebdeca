"""One score-lake record and the Arrow schema every lake file has (ARCHITECTURE: score lake).

The scoring service appends one :class:`LakeRow` per (event, predictor) — the live result
and every shadow result — and offline tools (``fit``, ``report``) read them back to fit
per-tenant quantile maps T^Q (paper §2.3.3) and compare predictors (§2.5.1, shadow rules).

Why a ``NamedTuple``: rows are built on the request path, one per event and predictor;
a named tuple costs about as much as a plain tuple to create (a frozen dataclass costs
several times more) and ``zip(*rows)`` turns a batch into columns in one C-level pass.

Why column-wise: :func:`rows_to_table` converts each column with one ``pyarrow.array``
call, so the per-row Python work is the transpose alone — no pandas, no dict per row.

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

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow as pa

__all__ = ["LAKE_FORMAT", "LAKE_SCHEMA", "LakeRow", "rows_to_table"]

#: Bumped when a column is added, removed or changes meaning; stored in every file's metadata.
LAKE_FORMAT = "muse/score-lake@1"


class LakeRow(NamedTuple):
    """One predictor's result for one event, as written to the score lake.

    ``timestamp`` is a timezone-aware UTC ``datetime`` (a naive one is taken as UTC, as
    pyarrow does; any other zone is converted). ``intent`` holds every intent attribute,
    the tenant included; ``raw`` is the aggregate ``a`` fed to T^Q and ``score`` the final
    score; ``experts`` maps each model name to its raw output. ``role`` is ``"live"`` or
    ``"shadow"``.
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
    ],
    metadata={"muse.lake_format": LAKE_FORMAT},
)

_MAP_COLUMNS = frozenset(i for i, f in enumerate(LAKE_SCHEMA) if isinstance(f.type, pa.MapType))


def rows_to_table(rows: Sequence[LakeRow]) -> pa.Table:
    """The rows as an Arrow table with :data:`LAKE_SCHEMA`, built column by column.

    Raises ``TypeError`` or ``ValueError`` naming the column and the offending value when
    a field does not fit its column, e.g. a string where a float is expected.
    """
    if not rows:
        return LAKE_SCHEMA.empty_table()
    arrays = []
    for i, (field, values) in enumerate(zip(LAKE_SCHEMA, zip(*rows, strict=True), strict=True)):
        try:
            arrays.append(
                pa.array(_plain_maps(values) if i in _MAP_COLUMNS else values, type=field.type)
            )
        except (TypeError, ValueError, pa.ArrowException) as e:
            error = TypeError if isinstance(e, TypeError) else ValueError
            raise error(f"score lake column {field.name!r} ({field.type}): {e}") from e
    return pa.Table.from_arrays(arrays, schema=LAKE_SCHEMA)


def _plain_maps(values: Sequence[Mapping[str, Any]]) -> list[Any]:
    # pyarrow converts dicts to map entries but rejects other Mappings (MappingProxyType…).
    return [m if type(m) is dict else dict(m) for m in values]
