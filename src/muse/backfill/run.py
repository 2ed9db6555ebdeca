"""A backfill run: a file of events scored batch by batch into a Parquet file or the lake,
resumable when interrupted.

What an interruption must not do is lose or duplicate what was written. So every batch is
made durable before the run's progress records it:

* ``out``: each batch is a file ``batch-<k>.arrow`` in ``<out>.partial/``; when the last
  is written they are merged into ``<out>`` through a temporary file renamed into place —
  ``<out>`` appears whole or not at all;
* ``lake``: each batch's rows go to the lake's partitions under names fixed by the run and
  the batch (``part-bf-<run>-<batch>-<k>.parquet``, written then renamed like every lake
  file), so a batch written again after an interruption replaces its own files instead of
  adding rows.

The progress (``progress.json`` in ``<out>.partial/``, or ``_backfill/<run>.json`` in the
lake, a folder readers skip) records the batches done; a run started again on the same
file, config and options resumes after them. The run's identity is a digest of the file
(size, time, first and last MiB), the config version and digest, the batch size, whether
shadows are scored and the target, so a changed file or config starts afresh (``out``
refuses, naming ``--restart``, rather than mixing two runs' rows). Rows left out are
appended to ``errors`` (CSV: ``line,unit,message``), truncated on resume to what the
finished batches wrote.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from muse.backfill.columnar import ScoredBatch, score_batch_columns
from muse.backfill.source import BackfillError, EventsFile, RowError
from muse.scorelog.layout import partition_dir
from muse.scorelog.record import LAKE_SCHEMA
from muse.scorelog.writer import partition_table
from muse.snapshot import Snapshot

__all__ = ["BackfillReport", "score_file"]

FORMAT = "muse/backfill@1"
#: Row errors kept in the report (all of them go to the errors file).
KEEP_ERRORS = 1_000
#: Parquet codecs a backfill may write with.
CODECS = ("zstd", "lz4", "snappy", "none")
#: How lake rows are encoded: dictionaries only where values repeat (a unique event id's
#: dictionary is abandoned after costing its try), statistics only on the columns readers
#: filter by. A third less time per row than Parquet's defaults (measured), same readers.
PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": [
        "tenant", "predictor", "role", "fingerprint", "tq_version", "config_version", "arm",
        "intent.key_value.key", "intent.key_value.value", "experts.key_value.key",
    ],
    "write_statistics": ["event_id", "timestamp", "tenant", "predictor", "role"],
}  # fmt: skip

Progress = Callable[[int, int], None]


@dataclass
class BackfillReport:
    """What a backfill did (this run and, resumed, the runs before it on the same file)."""

    output: str
    rows_in_file: int
    scored: int = 0
    rejected: int = 0
    rows_written: int = 0
    batches: int = 0
    #: Batches a previous, interrupted run had finished.
    resumed_batches: int = 0
    seconds: float = 0.0
    #: The first :data:`KEEP_ERRORS` rows left out by this run.
    errors: list[RowError] = field(default_factory=list)
    #: Shadow predictor → (events it could not score, the first reason).
    shadow_errors: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        done = self.scored + self.rejected
        return done / self.seconds if self.seconds > 0 else 0.0


def score_file(
    snapshot: Snapshot,
    events: str | Path,
    *,
    out: str | Path | None = None,
    lake: str | None = None,
    batch_size: int = 65_536,
    shadows: bool = True,
    restart: bool = False,
    errors: str | Path | None = None,
    progress: Progress | None = None,
    compression: str = "zstd",
) -> BackfillReport:
    """Score every event of ``events`` (Parquet or CSV) on ``snapshot`` through the serving
    path and write the lake rows the service would write, to the Parquet file ``out`` or
    into the lake at ``lake`` (exactly one). Resumes an interrupted run of the same file,
    config and options (``restart``: start over). ``progress(done, total)`` is called after
    each batch. ``compression`` is the Parquet codec of what is written (``zstd``, as the
    service writes the lake; ``lz4``, ``snappy``, ``none``). Raises
    :class:`BackfillError` for what stops the run; rows that cannot be scored are counted,
    reported and written to ``errors``."""
    if compression not in CODECS:
        raise BackfillError(f"compression must be one of {', '.join(CODECS)}, got {compression!r}")
    if (out is None) == (lake is None):
        raise BackfillError("give exactly one of out (a Parquet file) and lake (a lake URL)")
    source = EventsFile(
        events,
        snapshot.router.attributes,
        sorted(snapshot.known_features),
        batch_size=batch_size,
    )
    target: _Target = (
        _FileTarget(Path(out), compression)
        if out is not None
        else _LakeTarget(str(lake), compression)
    )
    run = _run_id(snapshot, source, batch_size, shadows, target.name)
    state = target.begin(run, restart)
    if "default_us" in state:  # rows without a time keep the first run's stamp
        source.default_us = int(state["default_us"])
    total = source.count_rows()
    report = BackfillReport(output=target.name, rows_in_file=total)
    report.resumed_batches = done = int(state.get("batches_done", 0))
    report.scored = int(state.get("scored", 0))
    report.rejected = int(state.get("rejected", 0))
    report.rows_written = int(state.get("rows_written", 0))
    error_file = _ErrorFile(errors, int(state.get("errors_bytes", 0)), resume=done > 0)
    started = time.perf_counter()
    if progress is not None:
        progress(report.scored + report.rejected, total)
    try:
        for number, batch in enumerate(source.batches(skip_batches=done), start=done):
            scored = score_batch_columns(snapshot, batch, shadows=shadows)
            target.write(number, scored.table)
            _account(report, scored)
            state = {
                "format": FORMAT,
                "run": run,
                "events": str(source.path),
                "batches_done": number + 1,
                "scored": report.scored,
                "rejected": report.rejected,
                "rows_written": report.rows_written,
                "errors_bytes": error_file.append(scored.errors),
                "default_us": source.default_us,
            }
            target.save(state)
            report.batches += 1
            if progress is not None:
                progress(report.scored + report.rejected, total)
        target.finish(report.resumed_batches + report.batches)
    finally:
        error_file.close()
        report.seconds = time.perf_counter() - started
    return report


def _account(report: BackfillReport, scored: ScoredBatch) -> None:
    report.scored += scored.events
    report.rejected += len(scored.errors)
    report.rows_written += scored.table.num_rows
    room = KEEP_ERRORS - len(report.errors)
    report.errors.extend(scored.errors[: max(room, 0)])
    for predictor, (n, first) in scored.shadow_errors.items():
        before, reason = report.shadow_errors.get(predictor, (0, first))
        report.shadow_errors[predictor] = (before + n, reason)


def _run_id(
    snapshot: Snapshot, source: EventsFile, batch_size: int, shadows: bool, target: str
) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in (
        source.fingerprint(),
        snapshot.version,
        snapshot.config.digest,
        str(batch_size),
        str(shadows),
        target,
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class _ErrorFile:
    """Row errors as CSV, appended batch by batch; truncated on resume to the finished
    batches' bytes, so a batch done again does not list its rows twice."""

    def __init__(self, path: str | Path | None, keep_bytes: int, *, resume: bool) -> None:
        self.path = None if path is None else Path(path)
        self._f: Any = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._f = self.path.open("r+", newline="", encoding="utf-8")
            self._f.truncate(keep_bytes)
            self._f.seek(keep_bytes)
        else:
            self._f = self.path.open("w", newline="", encoding="utf-8")
            csv.writer(self._f).writerow(["line", "unit", "message"])
        self._writer = csv.writer(self._f)

    def append(self, errors: list[RowError]) -> int:
        if self._f is None:
            return 0
        self._writer.writerows((e.line, e.unit, e.message) for e in errors)
        self._f.flush()
        os.fsync(self._f.fileno())
        return int(self._f.tell())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


class _Target:
    name: str

    def begin(self, run: str, restart: bool) -> dict[str, Any]:
        raise NotImplementedError

    def write(self, number: int, table: pa.Table) -> None:
        raise NotImplementedError

    def save(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, batches: int) -> None:
        raise NotImplementedError


class _FileTarget(_Target):
    """One Parquet file, appearing whole at the end (see the module)."""

    def __init__(self, path: Path, compression: str) -> None:
        if path.suffix.lower() not in (".parquet", ".pq"):
            raise BackfillError(f"out {path}: expected a .parquet file name")
        self.path = path
        self.compression = compression
        self.name = str(path)
        self.parts = path.with_name(path.name + ".partial")
        self.state_path = self.parts / "progress.json"

    def begin(self, run: str, restart: bool) -> dict[str, Any]:
        if restart and self.parts.exists():
            shutil.rmtree(self.parts)
        if self.state_path.exists():
            try:
                state: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise BackfillError(
                    f"{self.state_path} is not a backfill's progress ({e}); give --restart"
                ) from e
            if state.get("run") != run:
                raise BackfillError(
                    f"{self.parts} holds an unfinished backfill of another file, config or "
                    "options: give --restart to discard it, or run it as it was"
                )
            return state
        try:
            if self.parts.exists():  # batches no progress records: nothing to resume
                shutil.rmtree(self.parts)
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BackfillError(f"cannot write beside {self.path}: {e}") from e
        return {}

    def write(self, number: int, table: pa.Table) -> None:
        # Arrow IPC, LZ4-compressed: a fifth of Parquet's cost to write and read back, and
        # the rows are encoded as Parquet once, into the output.
        final = self.parts / f"batch-{number:06d}.arrow"
        tmp = final.with_name(f".{final.name}.tmp")
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        with (
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, table.schema, options=options) as w,
        ):
            w.write_table(table)
        os.replace(tmp, final)

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_name(".progress.json.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, self.state_path)

    def finish(self, batches: int) -> None:
        parts = sorted(self.parts.glob("batch-*.arrow"))
        if len(parts) != batches:
            raise BackfillError(
                f"{self.parts} holds {len(parts)} batch file(s) where the progress records "
                f"{batches}: something else changed it; give --restart to score the file again"
            )
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with pq.ParquetWriter(
            tmp, LAKE_SCHEMA, compression=self.compression, **PARQUET_OPTIONS
        ) as writer:
            for part in parts:
                with pa.memory_map(str(part)) as source:
                    writer.write_table(pa.ipc.open_file(source).read_all())
        os.replace(tmp, self.path)
        # The progress first: batch files without it are never taken for a finished run.
        self.state_path.unlink()
        shutil.rmtree(self.parts)


class _LakeTarget(_Target):
    """The lake's partitions, each batch's files named by run and batch (see the module)."""

    def __init__(self, url: str, compression: str) -> None:
        self.name = url
        self.compression = compression
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError, TypeError) as e:
            raise BackfillError(f"lake {url!r}: {e}") from e
        self.root = self.root.rstrip("/")
        self.run = ""
        #: Files of the batches the progress records, and of the batch being written.
        self.saved: list[str] = []
        self.files: list[str] = []

    @property
    def state_path(self) -> str:
        return f"{self.root}/_backfill/{self.run}.json"

    def begin(self, run: str, restart: bool) -> dict[str, Any]:
        self.run = run
        with self._errors("could not read its backfill progress"):
            if self.fs.exists(self.state_path):
                try:
                    state: dict[str, Any] = json.loads(self.fs.cat_file(self.state_path))
                except ValueError as e:
                    raise BackfillError(
                        f"lake {self.name}: {self.state_path} is not a backfill's progress "
                        f"({e}); remove it, or give --restart"
                    ) from e
                if not restart:
                    self.saved = list(state.get("files", []))
                    # A batch cut short may have left files that a retry would not rename
                    # over (if its rows now fall into other partitions): remove them.
                    self._remove(f"part-bf-{run}-{int(state.get('batches_done', 0)):06d}-*")
                    return state
                self.fs.rm(self.state_path)
            if restart:
                self._remove(f"part-bf-{run}-*")
            self.fs.makedirs(f"{self.root}/_backfill", exist_ok=True)
        return {}

    def _remove(self, name: str) -> None:
        for path in self.fs.glob(f"{self.root}/date=*/predictor=*/{name}.parquet"):
            self.fs.rm(path)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Any filesystem failure (an OSError locally, an SDK's own error on an object
        store) as a :class:`BackfillError` naming the lake: never a traceback."""
        try:
            yield
        except BackfillError:
            raise
        except Exception as e:
            raise BackfillError(f"lake {self.name}: {doing}: {type(e).__name__}: {e}") from e

    def write(self, number: int, table: pa.Table) -> None:
        for k, (day, predictor, part) in enumerate(partition_table(table)):
            folder = partition_dir(self.root, day, predictor)
            name = f"part-bf-{self.run}-{number:06d}-{k:03d}.parquet"
            final, tmp = f"{folder}/{name}", f"{folder}/.{name}.tmp"
            with self._errors(f"could not write {final}"):
                self.fs.makedirs(folder, exist_ok=True)
                with self.fs.open(tmp, "wb") as f:
                    pq.write_table(part, f, compression=self.compression, **PARQUET_OPTIONS)
                self.fs.mv(tmp, final)
            self.files.append(final)

    def save(self, state: dict[str, Any]) -> None:
        self.saved += [f for f in self.files if f not in self.saved]
        self.files = []
        tmp = f"{self.root}/_backfill/.{self.run}.json.tmp"
        with self._errors("could not save the backfill's progress"):
            with self.fs.open(tmp, "w") as f:
                f.write(json.dumps({**state, "files": self.saved}))
            self.fs.mv(tmp, self.state_path)

    def finish(self, batches: int) -> None:
        """The progress file stays: it says the run is complete (a run again resumes after
        its last batch and writes nothing)."""
