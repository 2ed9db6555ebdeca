"""Lake rows for tests, and a reader that checks the layout contract while it reads."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from muse.scorelog import LakeRow
from muse.scorelog.layout import PARTITION_SCHEMA

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def make_row(
    i: int,
    *,
    predictor: str = "ensemble-v1",
    role: str = "live",
    timestamp: datetime | None = None,
    tenant: str = "bank1",
) -> LakeRow:
    return LakeRow(
        event_id=f"evt-{i}",
        timestamp=T0 + timedelta(microseconds=i) if timestamp is None else timestamp,
        tenant=tenant,
        intent={"tenant": tenant, "geography": "EMEA", "channel": "web"},
        predictor=predictor,
        role=role,
        fingerprint="sha256:0123456789abcdef",
        tq_version="v1",
        raw=i / 7,
        score=1 / (i + 3),
        experts={"lgbm": i / 11, "xgb": i / 13},
        latency_ms=0.25 * i,
        config_version="cfg-1",
    )


def make_rows(n: int, start: int = 0, **kwargs: Any) -> list[LakeRow]:
    return [make_row(i, **kwargs) for i in range(start, start + n)]


def read_lake(root: str, filesystem: Any = None) -> list[LakeRow]:
    """Every row of the lake, read the way offline tools do (pyarrow, declared hive partitions).

    Also checks, per file, that the path's ``date``/``predictor`` (percent-decoded, as DuckDB
    reads them) agree with the file's own rows.
    """
    partitioning = ds.partitioning(PARTITION_SCHEMA, flavor="hive")
    dataset = ds.dataset(root, filesystem=filesystem, format="parquet", partitioning=partitioning)
    for path in dataset.files:
        parts = dict(seg.split("=", 1) for seg in path.split("/") if "=" in seg)
        table = (
            pq.read_table(path, filesystem=filesystem, partitioning=None)
            if filesystem is not None
            else pq.read_table(path, partitioning=None)
        )
        assert set(table.column("predictor").to_pylist()) == {unquote(parts["predictor"])}, path
        days = {t.date().isoformat() for t in table.column("timestamp").to_pylist()}
        assert days == {parts["date"]}, path
    rows = []
    for rec in dataset.to_table().to_pylist():
        assert rec.pop("date") == rec["timestamp"].date()
        rec["intent"], rec["experts"] = dict(rec["intent"]), dict(rec["experts"])
        rows.append(LakeRow(**rec))
    return rows


def exact(row: LakeRow) -> tuple[Any, ...]:
    """A row as a hashable value in which floats compare bit for bit (0.0 ≠ -0.0)."""

    def f(x: float) -> str:
        return float(x).hex() if math.isfinite(x) else repr(x)

    return (
        row.event_id,
        row.timestamp.astimezone(UTC),
        row.tenant,
        tuple(sorted(row.intent.items())),
        row.predictor,
        row.role,
        row.fingerprint,
        row.tq_version,
        f(row.raw),
        f(row.score),
        tuple(sorted((k, f(v)) for k, v in row.experts.items())),
        f(row.latency_ms),
        row.config_version,
    )


def exact_all(rows: Iterable[LakeRow]) -> list[tuple[Any, ...]]:
    return sorted(exact(r) for r in rows)


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)
