"""Where a batch of lake rows goes: hive-style partition folders and file names.

Readers glob ``<root>/**/*.parquet`` (DuckDB) or discover the folder tree (pyarrow
datasets, Spark), so a file must be invisible to both until it is complete. A file is
first written as ``.part-<id>.parquet.tmp`` *in its final folder* and then renamed:

* the ``.tmp`` suffix keeps it out of ``*.parquet`` globs, and the leading dot out of
  pyarrow's and Spark's discovery (they skip names starting with ``.`` or ``_``);
* the same folder makes the rename a single ``rename(2)`` on a local disk — atomic, and
  never across devices — and a plain copy-then-delete on object stores, where the copy
  itself appears atomically.

A crash between write and rename leaves a ``.part-*.parquet.tmp`` orphan that no reader
sees; housekeeping may delete such files once they are older than any write can take.
File ids are uuid4, so any number of service replicas can write the same lake.

Readers should declare the partition types (:data:`PARTITION_SCHEMA`) instead of letting
them be inferred: inference reads a predictor named ``2024`` as an integer, which then
clashes with the string ``predictor`` column inside the file (pyarrow refuses to merge
them). With pyarrow: ``ds.dataset(root, format="parquet",
partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"))``; with DuckDB:
``read_parquet('<root>/**/*.parquet', hive_partitioning=true,
hive_types={'date': DATE, 'predictor': VARCHAR})`` (see :mod:`muse.scorelog.reader`).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from urllib.parse import quote

import pyarrow as pa

__all__ = ["PARTITION_SCHEMA", "part_names", "partition_dir", "partition_segment"]

#: Types of the fields encoded in the path: ``date=YYYY-MM-DD`` (UTC day) / ``predictor=<name>``.
PARTITION_SCHEMA: pa.Schema = pa.schema([("date", pa.date32()), ("predictor", pa.string())])

_EPOCH = date(1970, 1, 1)


def partition_segment(value: str) -> str:
    """``value`` percent-encoded for a hive path segment, as DuckDB and pyarrow decode it.

    Config names pass unchanged. A leading ``.`` or ``_`` is encoded too, so the folder
    is never mistaken for a hidden one that readers would silently skip.
    """
    seg = quote(value, safe="")
    if seg[:1] in (".", "_"):
        seg = f"%{ord(seg[0]):02X}{seg[1:]}"
    return seg


def partition_dir(root: str, day: int, predictor: str) -> str:
    """Folder of the files of ``predictor`` on ``day`` (days since 1970-01-01, UTC)."""
    iso = (_EPOCH + timedelta(days=day)).isoformat()
    return f"{root}/date={iso}/predictor={partition_segment(predictor)}"


def part_names(folder: str) -> tuple[str, str]:
    """A fresh (temporary, final) path pair for one file in ``folder``."""
    name = f"part-{uuid.uuid4().hex}.parquet"
    return f"{folder}/.{name}.tmp", f"{folder}/{name}"
