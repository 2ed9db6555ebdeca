"""The score lake: every live and shadow result, as hive-partitioned Parquet (ARCHITECTURE).

Offline tools read it with DuckDB or pyarrow to fit per-tenant quantile maps T^Q (paper
§2.3.3) and to compare shadow predictors with live ones (§2.5.1). The row schema and the
folder layout are a contract; see :mod:`muse.scorelog.record` and :mod:`muse.scorelog.layout`.
"""

from muse.scorelog.reader import LakeError, LakeReader, Window
from muse.scorelog.record import LAKE_SCHEMA, LakeColumns, LakeRow, rows_to_table
from muse.scorelog.writer import LakeWriter

__all__ = [
    "LAKE_SCHEMA",
    "LakeColumns",
    "LakeError",
    "LakeReader",
    "LakeRow",
    "LakeWriter",
    "Window",
    "rows_to_table",
]
