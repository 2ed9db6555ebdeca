"""The score-lake writer: appends lake rows off the request path (ARCHITECTURE invariant 7).

Serving must never wait for the lake, and the lake must never take serving down:

* :meth:`LakeWriter.append` and :meth:`LakeWriter.append_columns` only extend in-memory
  column lists (:class:`~muse.scorelog.record.LakeColumns`) under a lock. One background
  thread turns them into Arrow tables and Parquet files, every ``flush_interval_s`` or as
  soon as ``max_rows_per_file`` rows wait, one file per (date, predictor) and flush.
* The buffer is bounded (``max_pending_rows``, counting rows being written too): when the
  sink is slow or down the *excess is dropped and counted*, with a rate-limited warning,
  instead of growing memory until the process dies or blocking requests. Serving goes on.
* A failed file (write or rename raised) is retried with back-off (0.1 s doubling to 5 s)
  as long as the sink has been failing for less than ``retry_for_s``: a short outage of the
  sink (an object store's blip, a volume remounted) then loses nothing. Meanwhile new rows
  wait in the same bounded buffer, so an outage never grows memory beyond
  ``max_pending_rows``: the excess is dropped and counted, as above. Once the sink has been
  failing longer, each file gets one attempt and its rows are counted as lost on failure, so
  a long outage costs one attempt per flush, not a wait per file. A success resets it.
* Every row passed to :meth:`~LakeWriter.append` is counted exactly once, so metrics
  can prove nothing vanished: ``appended == dropped_rows + written_rows + lost_rows +
  pending_rows``. When :meth:`~LakeWriter.close` returns True, ``pending_rows == 0``: a
  graceful shutdown loses no acknowledged row.
* Files appear atomically under their final name (see :mod:`muse.scorelog.layout`).

The list → Arrow conversion holds the GIL, so it runs in slices of a few hundred rows:
the event loop waits at most ~0.3 ms for it at a time. Encoding and compression happen
inside ``pyarrow.parquet.write_table``, which releases the GIL.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from types import TracebackType
from typing import Any, Self

import fsspec  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from muse.errors import ConfigError
from muse.scorelog.layout import part_names, partition_dir
from muse.scorelog.record import LakeColumns, LakeRow
from muse.threads import yield_to_requests

__all__ = ["LakeWriter", "partition_table"]

logger = logging.getLogger("muse.scorelog")

_US_PER_DAY = 86_400_000_000
#: Rows converted per slice: ~0.3 ms of GIL at a time (see the module docstring).
_CONVERT_CHUNK = 256
#: Back-off between attempts to write a failed file: doubling from the first to the last.
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0
#: Folders known to exist are remembered to spare a makedirs per file; capped for very old processes.
_MAX_KNOWN_DIRS = 10_000


class LakeWriter:
    """Appends :class:`~muse.scorelog.record.LakeRow` s to a hive-partitioned Parquet lake.

    ``url`` is a local folder or any fsspec URL (``memory://lake``, ``file:///…``,
    ``s3://bucket/lake``); pass ``fs`` to use a ready filesystem, ``url`` then being a
    path on it. The constructor does no I/O: :meth:`start` (or ``with``) resolves the
    filesystem and starts the writer thread; :meth:`close` flushes and stops it.

    ``clock`` (monotonic seconds) paces flushes and the dropped-rows warning, at most one
    per ``drop_warning_interval_s``. ``retry_for_s``: how long a failing sink is retried
    before rows are counted lost (0: never retried).
    """

    def __init__(
        self,
        url: str,
        *,
        max_rows_per_file: int = 100_000,
        flush_interval_s: float = 5.0,
        max_pending_rows: int = 200_000,
        fs: fsspec.AbstractFileSystem | None = None,
        clock: Callable[[], float] = time.monotonic,
        drop_warning_interval_s: float = 60.0,
        compression: str = "zstd",
        retry_for_s: float = 60.0,
    ) -> None:
        _check_positive("max_rows_per_file", max_rows_per_file, integer=True)
        _check_positive("max_pending_rows", max_pending_rows, integer=True)
        _check_positive("flush_interval_s", flush_interval_s)
        _check_positive("drop_warning_interval_s", drop_warning_interval_s)
        if isinstance(retry_for_s, bool) or not (math.isfinite(retry_for_s) and retry_for_s >= 0):
            raise ConfigError(
                f"LakeWriter retry_for_s must be zero or a positive number of seconds, "
                f"got {retry_for_s!r}"
            )
        if fs is None:
            _check_protocol(url)
        self.url = url
        self.max_rows_per_file = max_rows_per_file
        self.flush_interval_s = flush_interval_s
        self.max_pending_rows = max_pending_rows
        self.compression = compression
        self.retry_for_s = retry_for_s
        self._failing_since: float | None = None  # the sink's first failure since a success
        self._fs: Any = fs
        self._root = ""
        self._clock = clock
        self._drop_warning_interval_s = drop_warning_interval_s

        self._cond = threading.Condition(threading.Lock())
        self._pending = LakeColumns()
        # Row sequence numbers: accepted ≥ taken (handed to the thread) ≥ finished (written or lost).
        self._accepted = 0
        self._taken = 0
        self._finished = 0
        self._batch_settled = 0  # rows of the batch being written already counted
        self._flush_target = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._last_flush = clock()
        self._next_drop_warning = -math.inf
        self._known_dirs: set[str] = set()

        self._written_rows = 0
        self._written_files = 0
        self._dropped_rows = 0
        self._lost_rows = 0
        self._unfit_rows = 0  # lost at append(): not in the row sequence numbers
        self._failed_files = 0
        self._write_retries = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Resolve the filesystem and start the writer thread (a no-op when running)."""
        with self._cond:
            if self._closing:
                raise RuntimeError(
                    f"score lake writer for {self.url!r} is closed; create a new LakeWriter"
                )
        self._launch()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row accepted before this call is written or lost.

        Returns False when ``timeout`` seconds passed first, or when no writer thread runs
        (never started, or stopped) while rows still wait.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._accepted
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            while self._finished < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Write every accepted row, then stop the thread; later appends are dropped.

        Returns True when everything was written (or lost) and the thread stopped within
        ``timeout`` seconds. Idempotent: a second call waits again and reports again.
        """
        with self._cond:
            first = not self._closing
            self._closing = True
            self._cond.notify_all()
            orphaned = self._thread is None and bool(self._pending)
        if orphaned:  # appended to but never started: start just to drain
            self._launch()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        stopped = thread is None or not thread.is_alive()
        pending = self.pending_rows
        if first:
            if stopped and not pending:
                logger.info(
                    "score lake %s closed: %d rows in %d files written, %d dropped, %d lost",
                    self.url,
                    self.written_rows,
                    self.written_files,
                    self.dropped_rows,
                    self.lost_rows,
                )
            else:
                logger.warning(
                    "score lake %s: close timed out after %ss with %d rows not yet written "
                    "(the sink is slow or hangs); they are lost if the process exits now",
                    self.url,
                    timeout,
                    pending,
                )
        return stopped and not pending

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- request path ------------------------------------------------------------------

    def append(self, rows: Sequence[LakeRow]) -> int:
        """Queue ``rows`` for writing without blocking on I/O; returns how many were accepted.

        Rows beyond ``max_pending_rows`` (or any row after :meth:`close`) are dropped and
        counted in :attr:`dropped_rows`. A row whose ``intent`` or ``experts`` is not a
        mapping is accepted and counted as lost at once (whatever the room), with an error
        logged.
        """
        columns = LakeColumns()
        unfit = 0
        try:
            columns.add_rows(rows)
        except TypeError as e:
            columns, unfit = LakeColumns(), 0
            for row in rows:  # the slow path, only for a batch holding a malformed row
                try:
                    columns.add_rows((row,))
                except TypeError:
                    unfit += 1
            logger.error("score lake %s: lost %d rows: %s", self.url, unfit, e)
        return self._accept(columns, unfit)

    def append_columns(self, columns: LakeColumns) -> int:
        """Queue the rows of ``columns`` (which the writer takes over: do not reuse it);
        otherwise as :meth:`append`. The service's path: no object per row."""
        return self._accept(columns, 0)

    def _accept(self, columns: LakeColumns, unfit: int) -> int:
        n = len(columns)
        if not n and not unfit:
            return 0
        with self._cond:
            # Rows that did not fit the schema are lost at once. They never enter the row
            # sequence numbers (_accepted ≥ _taken ≥ _finished), which must advance in
            # order for flush() to mean "everything before this call is settled".
            self._unfit_rows += unfit
            room = 0 if self._closing else self.max_pending_rows - (self._accepted - self._finished)
            accepted = min(n, max(room, 0))
            if accepted:
                self._pending.extend(columns if accepted == n else columns.head(accepted))
                self._accepted += accepted
                if len(self._pending) >= self.max_rows_per_file:
                    self._cond.notify_all()
            dropped = n - accepted
            warn, total, closing = False, 0, False
            if dropped:
                self._dropped_rows += dropped
                now = self._clock()
                if now >= self._next_drop_warning:
                    self._next_drop_warning = now + self._drop_warning_interval_s
                    warn = True
                total, closing = self._dropped_rows, self._closing
        if warn:
            reason = (
                "the writer is closed"
                if closing
                else f"{self.max_pending_rows} rows already wait (the sink is slow or down)"
            )
            logger.warning(
                "score lake %s: dropped %d rows because %s; %d dropped so far",
                self.url,
                dropped,
                reason,
                total,
            )
        return accepted + unfit

    # -- counters (for metrics) --------------------------------------------------------

    @property
    def written_rows(self) -> int:
        """Rows in files that were written and renamed into place."""
        return self._written_rows

    @property
    def written_files(self) -> int:
        """Files written and renamed into place."""
        return self._written_files

    @property
    def dropped_rows(self) -> int:
        """Rows refused by :meth:`append` (buffer full, or writer closed)."""
        return self._dropped_rows

    @property
    def lost_rows(self) -> int:
        """Rows accepted but not written: their file failed, or they did not fit the schema."""
        return self._lost_rows + self._unfit_rows

    @property
    def failed_files(self) -> int:
        """Files whose write or rename raised."""
        return self._failed_files

    @property
    def write_retries(self) -> int:
        """Attempts to write a file again after it failed."""
        return self._write_retries

    @property
    def pending_rows(self) -> int:
        """Rows accepted and neither written nor lost yet (waiting or being written)."""
        with self._cond:
            return self._accepted - self._written_rows - self._lost_rows

    # -- writer thread -----------------------------------------------------------------

    def _launch(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
        if self._fs is None:
            try:
                fs, root = fsspec.core.url_to_fs(self.url)
            except (ValueError, ImportError, TypeError) as e:
                raise ConfigError(f"score lake url {self.url!r}: {e}") from e
        else:
            fs, root = self._fs, self._fs._strip_protocol(self.url)
        with self._cond:
            if self._thread is not None:  # started concurrently
                return
            self._fs, self._root = fs, str(root).rstrip("/")
            self._thread = threading.Thread(
                target=self._run, name=f"muse-scorelog {self.url}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        yield_to_requests()
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._write_batch(batch)
            except Exception:  # a bug here must not stop the lake for good
                logger.exception("score lake %s: unexpected error writing a batch", self.url)
                with self._cond:
                    self._lost_rows += len(batch) - self._batch_settled
            with self._cond:
                self._finished += len(batch)
                self._cond.notify_all()

    def _next_batch(self) -> LakeColumns | None:
        """Wait (holding the lock) until a flush is due; the rows to write, None to stop."""
        while True:
            now = self._clock()
            due = now - self._last_flush >= self.flush_interval_s
            n = len(self._pending)
            if n and (
                due
                or self._closing
                or n >= self.max_rows_per_file
                or self._flush_target > self._taken
            ):
                batch, self._pending = self._pending, LakeColumns()
                self._taken += n
                self._last_flush = now
                self._batch_settled = 0
                return batch
            if self._closing:
                return None
            if due:
                self._last_flush = now
            self._cond.wait(max(self._last_flush + self.flush_interval_s - now, 0.001))

    def _write_batch(self, batch: LakeColumns) -> None:
        try:
            table = pa.concat_tables(list(batch.tables(_CONVERT_CHUNK)))
        except (TypeError, ValueError, pa.ArrowException) as e:
            logger.error(
                "score lake %s: lost %d rows: a batch does not fit the lake schema: %s",
                self.url,
                len(batch),
                e,
            )
            self._count(lost=len(batch), failed=0)
            return
        table = self._placeable(table)
        for day, predictor, part in partition_table(table):
            folder = partition_dir(self._root, day, predictor)
            for start in range(0, part.num_rows, self.max_rows_per_file):
                self._write_file(folder, part.slice(start, self.max_rows_per_file))

    def _placeable(self, table: pa.Table) -> pa.Table:
        """The rows that have a timestamp and a predictor, i.e. a partition; the rest are lost."""
        valid = pc.and_(
            pc.is_valid(table.column("timestamp")), pc.is_valid(table.column("predictor"))
        )
        bad = table.num_rows - pc.sum(valid).as_py() if table.num_rows else 0
        if not bad:
            return table
        logger.error(
            "score lake %s: lost %d rows without a timestamp or predictor (no partition for them)",
            self.url,
            bad,
        )
        self._count(lost=bad, failed=0)
        return table.filter(valid)

    def _write_file(self, folder: str, table: pa.Table) -> None:
        """Write one file, retrying while the sink has failed for less than ``retry_for_s``."""
        delay = _RETRY_FIRST_S
        attempts = 0
        while True:
            attempts += 1
            tmp, final = part_names(folder)
            try:
                self._put(folder, table, tmp, final)
            # Any sink failure (OSError, cloud SDK errors…) concerns this file only.
            except Exception as e:
                self._known_dirs.discard(folder)
                self._remove_quietly(tmp)
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                cause = f"{type(e).__name__}: {e}"
                if now + delay - self._failing_since > self.retry_for_s:
                    logger.error(
                        "score lake: lost %d rows: could not write %s: %s%s",
                        table.num_rows,
                        final,
                        cause,
                        f" (after {attempts} attempts)" if attempts > 1 else "",
                    )
                    logger.debug(
                        "score lake: traceback of the failed write of %s", final, exc_info=True
                    )
                    self._count(lost=table.num_rows, failed=1)
                    return
                if attempts == 1:
                    logger.warning(
                        "score lake: could not write %s: %s; retrying while the sink has "
                        "failed for less than %gs (%d rows wait in memory)",
                        final,
                        cause,
                        self.retry_for_s,
                        self.pending_rows,
                    )
                with self._cond:
                    self._write_retries += 1
                time.sleep(delay)
                delay = min(2 * delay, _RETRY_MAX_S)
                continue
            self._failing_since = None
            if attempts > 1:
                logger.info("score lake: wrote %s at attempt %d", final, attempts)
            with self._cond:
                self._written_rows += table.num_rows
                self._written_files += 1
                self._batch_settled += table.num_rows
            return

    def _put(self, folder: str, table: pa.Table, tmp: str, final: str) -> None:
        if folder not in self._known_dirs:
            self._fs.makedirs(folder, exist_ok=True)
            if len(self._known_dirs) >= _MAX_KNOWN_DIRS:
                self._known_dirs.clear()
            self._known_dirs.add(folder)
        with self._fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression=self.compression)
        self._fs.mv(tmp, final)

    def _count(self, *, lost: int, failed: int) -> None:
        with self._cond:
            self._lost_rows += lost
            self._failed_files += failed
            self._batch_settled += lost

    def _remove_quietly(self, path: str) -> None:
        try:
            if self._fs.exists(path):
                self._fs.rm(path)
        except Exception:  # the sink is failing already; an orphan .tmp is invisible to readers
            logger.debug("score lake: could not remove temporary file %s", path, exc_info=True)


def partition_table(table: pa.Table) -> list[tuple[int, str, pa.Table]]:
    """Split ``table`` by (UTC day, predictor), vectorised: (day since epoch, predictor, rows)."""
    if not table.num_rows:
        return []
    us = table.column("timestamp").cast(pa.int64()).to_numpy()
    days = np.floor_divide(us, _US_PER_DAY)
    encoded = pc.dictionary_encode(table.column("predictor").combine_chunks())
    names: list[str] = encoded.dictionary.to_pylist()
    key = days * len(names) + encoded.indices.to_numpy().astype(np.int64)
    order = np.argsort(key, kind="stable")
    ordered_keys = key[order]
    bounds = [0, *(np.flatnonzero(np.diff(ordered_keys)) + 1).tolist(), len(order)]
    ordered = table.take(pa.array(order))
    parts: list[tuple[int, str, pa.Table]] = []
    for start, end in pairwise(bounds):
        day, index = divmod(int(ordered_keys[start]), len(names))
        parts.append((day, names[index], ordered.slice(start, end - start)))
    return parts


def _check_positive(name: str, value: float, *, integer: bool = False) -> None:
    ok = value > 0 and (not integer or isinstance(value, int)) and math.isfinite(value)
    if isinstance(value, bool) or not ok:
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise ConfigError(f"LakeWriter {name} must be {kind}, got {value!r}")


def _check_protocol(url: str) -> None:
    protocol, _ = fsspec.core.split_protocol(url)
    try:
        fsspec.get_filesystem_class(protocol or "file")
    except (ValueError, ImportError) as e:
        raise ConfigError(
            f"score lake url {url!r}: no filesystem for protocol {protocol!r} ({e}); "
            "use a local folder or an fsspec URL whose package is installed (s3fs for s3://)"
        ) from e
