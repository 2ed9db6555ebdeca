"""LakeWriter: batching, layout, bounded memory, atomic files, failure accounting, shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from muse.errors import ConfigError
from muse.scorelog import LakeColumns, LakeWriter
from tests.scorelog.conftest import Lake, memory_lake
from tests.scorelog.fakes import BlockingFS, FailingFS, SlowLocalFS, SlowMemoryFS
from tests.scorelog.rows import T0, exact_all, make_row, make_rows, wait_until

# -- layout and content ---------------------------------------------------------------


def test_the_lake_holds_exactly_the_appended_rows(lake: Lake) -> None:
    rows = make_rows(300) + make_rows(200, predictor="ensemble-v2", role="shadow")
    with LakeWriter(lake.url) as writer:
        assert writer.append(rows[:250]) == 250
        assert writer.append(rows[250:]) == 250

    assert exact_all(lake.rows()) == exact_all(rows)
    assert (writer.written_rows, writer.dropped_rows, writer.lost_rows) == (500, 0, 0)


def test_files_are_grouped_by_date_and_predictor(lake: Lake) -> None:
    day2 = T0 + timedelta(days=1)
    rows = [
        *make_rows(10, predictor="p1"),
        *make_rows(10, start=10, predictor="p2"),
        *make_rows(5, start=20, predictor="p1", timestamp=day2),
    ]
    with LakeWriter(lake.url) as writer:
        writer.append(rows)

    folders = sorted(f.rsplit("/", 1)[0].removeprefix(lake.root) for f in lake.files())
    assert folders == [
        "/date=2026-11-22/predictor=p1",
        "/date=2026-11-22/predictor=p2",
        "/date=2026-11-23/predictor=p1",
    ]
    counts = Counter((r.timestamp.date().isoformat(), r.predictor) for r in lake.rows())
    assert counts == {("2026-11-22", "p1"): 10, ("2026-11-22", "p2"): 10, ("2026-11-23", "p1"): 5}


def test_a_large_group_is_split_into_files_of_max_rows(lake: Lake) -> None:
    with LakeWriter(lake.url, max_rows_per_file=100) as writer:
        writer.append(make_rows(250))
        assert writer.flush(timeout=2)

    sizes = sorted(pq.read_metadata(f, filesystem=lake.fs).num_rows for f in lake.files())
    assert sizes == [50, 100, 100]
    assert writer.written_files == 3


def test_the_lake_reads_back_as_one_hive_dataset(lake: Lake) -> None:
    with LakeWriter(lake.url) as writer:
        writer.append(make_rows(3) + make_rows(2, start=3, predictor="other"))

    dataset = ds.dataset(lake.root, filesystem=lake.fs, format="parquet", partitioning="hive")
    table = dataset.to_table(filter=ds.field("predictor") == "other")
    assert sorted(table.column("event_id").to_pylist()) == ["evt-3", "evt-4"]
    assert set(table.column("date").to_pylist()) == {"2026-11-22"}


def test_numeric_predictor_names_read_back_as_strings_with_the_declared_partitions() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url) as writer:
        writer.append(make_rows(2, predictor="2024"))

    assert [r.predictor for r in lake.rows()] == ["2024", "2024"]


# -- flushing and shutdown -----------------------------------------------------------


def test_close_writes_everything_acknowledged() -> None:
    lake = memory_lake()
    writer = LakeWriter(lake.url)
    writer.start()
    assert writer.append(make_rows(10_000)) == 10_000

    assert writer.close(timeout=5)
    assert len(lake.rows()) == 10_000
    assert (writer.written_rows, writer.pending_rows) == (10_000, 0)


def test_flush_waits_for_rows_appended_before_it() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url, flush_interval_s=60) as writer:
        writer.append(make_rows(7))
        assert writer.flush(timeout=2)
        assert len(lake.rows()) == 7
        assert writer.flush(timeout=2)  # nothing new: returns at once


def test_rows_are_flushed_after_the_interval_without_being_asked() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url, flush_interval_s=0.02) as writer:
        writer.append(make_rows(3))
        wait_until(lambda: writer.written_rows == 3)


def test_rows_are_flushed_as_soon_as_a_file_is_full() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url, flush_interval_s=60, max_rows_per_file=50) as writer:
        writer.append(make_rows(50))
        wait_until(lambda: writer.written_rows == 50)


def test_append_after_close_is_dropped_and_counted() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url) as writer:
        writer.append(make_rows(2))

    assert writer.append(make_rows(3)) == 0
    assert (writer.written_rows, writer.dropped_rows) == (2, 3)


def test_close_is_idempotent_and_start_after_close_refused() -> None:
    writer = LakeWriter(memory_lake().url)
    writer.start()
    assert writer.close()
    assert writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.start()


def test_close_drains_a_writer_that_was_never_started() -> None:
    lake = memory_lake()
    writer = LakeWriter(lake.url)
    writer.append(make_rows(4))
    assert not writer.flush(timeout=0.01)  # no thread yet: cannot be written

    assert writer.close(timeout=2)
    assert len(lake.rows()) == 4


def test_the_constructor_does_no_io(tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    writer = LakeWriter(str(folder))
    writer.start()
    assert not folder.exists()  # folders are made with the first file
    writer.append(make_rows(1))
    assert writer.close(timeout=2)
    assert folder.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_rows_per_file": 0}, "max_rows_per_file must be a positive integer, got 0"),
        ({"max_pending_rows": 1.5}, "max_pending_rows must be a positive integer, got 1.5"),
        ({"flush_interval_s": -1.0}, "flush_interval_s must be a positive number"),
        ({"flush_interval_s": float("nan")}, "flush_interval_s must be a positive number"),
        ({"retry_for_s": -1.0}, "retry_for_s must be zero or a positive number"),
        ({"retry_for_s": float("inf")}, "retry_for_s must be zero or a positive number"),
    ],
)
def test_invalid_settings_are_config_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LakeWriter("memory://x", **kwargs)  # type: ignore[arg-type]


def test_an_unknown_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nosuchfs://lake"):
        LakeWriter("nosuchfs://lake")


# -- bounded memory ------------------------------------------------------------------


def test_a_hung_sink_bounds_memory_and_counts_drops() -> None:
    fs = BlockingFS()
    lake = memory_lake()
    writer = LakeWriter(lake.url, fs=fs, max_pending_rows=100)
    writer.start()

    accepted = writer.append(make_rows(1_000))
    assert not writer.flush(timeout=0.01)
    assert fs.waiting.wait(2)  # the thread holds the rows now, stuck in open()
    accepted += sum(writer.append([make_row(i)]) for i in range(1_000, 1_010))

    assert accepted == 100
    assert writer.dropped_rows == 910
    assert writer.pending_rows == 100
    fs.gate.set()
    assert writer.close(timeout=2)
    assert writer.written_rows + writer.dropped_rows + writer.lost_rows == 1_010
    assert len(lake.rows()) == writer.written_rows == 100


def test_close_gives_up_after_its_timeout_when_the_sink_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fs = BlockingFS()
    writer = LakeWriter(memory_lake().url, fs=fs)
    writer.start()
    writer.append(make_rows(3))

    with caplog.at_level(logging.WARNING, logger="muse.scorelog"):
        assert not writer.close(timeout=0.05)
    assert "close timed out" in caplog.text
    assert writer.pending_rows == 3

    fs.gate.set()
    assert writer.close(timeout=2)  # a second close waits again
    assert (writer.written_rows, writer.pending_rows) == (3, 0)


def test_drop_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    writer = LakeWriter(
        memory_lake().url, max_pending_rows=1, clock=lambda: now[0], drop_warning_interval_s=10
    )
    with caplog.at_level(logging.WARNING, logger="muse.scorelog"):
        for _ in range(5):
            writer.append(make_rows(2))
        now[0] = 10.0
        writer.append(make_rows(2))

    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 2
    assert "memory://" in warnings[0].getMessage()
    assert writer.dropped_rows == 11
    assert writer.close(timeout=2)


# -- atomic files --------------------------------------------------------------------


def test_a_file_gets_its_final_name_only_once_fully_written() -> None:
    fs = SlowMemoryFS()
    lake = memory_lake()
    with LakeWriter(lake.url, fs=fs, max_rows_per_file=200) as writer:
        writer.append(make_rows(400) + make_rows(100, start=400, predictor="p2"))

    moves = [path for op, path in fs.journal if op == "mv"]
    assert len(moves) == writer.written_files == 3
    assert not fs.clobbered
    for move in moves:
        tmp, final = move.split(" -> ")
        ops_on_tmp = [op for op, path in fs.journal if path == tmp]
        assert ops_on_tmp[0] == "open"
        assert ops_on_tmp[-1] == "close"
        assert "write" in ops_on_tmp
        assert fs.journal.index(("close", tmp)) < fs.journal.index(("mv", move))
        assert not any(path == final for op, path in fs.journal if op != "mv")
    assert len(lake.rows()) == 500


def test_concurrent_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    fs = SlowLocalFS()
    errors: list[str] = []
    seen: set[Path] = set()
    done = threading.Event()

    def read_forever() -> None:
        while not done.is_set():
            for path in root.glob("**/*.parquet"):  # what DuckDB's glob matches
                try:
                    pq.read_table(path)
                except Exception as e:
                    errors.append(f"{path}: {e}")
                seen.add(path)
            if root.exists():
                try:  # what pyarrow's discovery reads
                    ds.dataset(root, format="parquet", partitioning="hive").to_table()
                except Exception as e:
                    errors.append(f"dataset: {e}")

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        with LakeWriter(str(root), fs=fs, max_rows_per_file=100, flush_interval_s=0.01) as writer:
            for i in range(5):
                writer.append(make_rows(100, start=100 * i))
                assert writer.flush(timeout=2)
    finally:
        done.set()
        reader.join(5)

    assert errors == []
    assert seen  # the reader did see completed files
    assert writer.written_files == 5
    assert not list(root.glob("**/.*.tmp"))


# -- sink failures -------------------------------------------------------------------


def test_a_failing_sink_loses_counted_rows_and_the_writer_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fs = FailingFS()
    lake = memory_lake()
    writer = LakeWriter(lake.url, fs=fs, retry_for_s=0)
    writer.start()
    with caplog.at_level(logging.DEBUG, logger="muse.scorelog"):
        writer.append(make_rows(30) + make_rows(20, start=30, predictor="p2"))
        assert writer.flush(timeout=2)

    assert (writer.lost_rows, writer.failed_files, writer.written_rows) == (50, 2, 0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    for record in errors:
        message = record.getMessage()
        assert "date=2026-11-22/predictor=" in message
        assert "sink down" in message
        assert record.exc_info is None  # the traceback goes to DEBUG only
    assert sum(1 for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info) == 2

    fs.failing = False
    writer.append(make_rows(10, start=100))
    assert writer.close(timeout=2)
    assert writer.written_rows == 10
    assert sorted(r.event_id for r in lake.rows()) == sorted(f"evt-{i}" for i in range(100, 110))


def test_a_short_outage_of_the_sink_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    fs = FailingFS()
    lake = memory_lake()
    writer = LakeWriter(lake.url, fs=fs, retry_for_s=30, max_pending_rows=50)
    writer.start()
    with caplog.at_level(logging.INFO, logger="muse.scorelog"):
        assert writer.append(make_rows(30)) == 30
        assert not writer.flush(timeout=0.05)
        wait_until(lambda: writer.write_retries >= 2)  # back-off 0.1 s, 0.2 s, ...
        # Rows arriving meanwhile wait in the same bounded buffer: the excess is dropped.
        assert writer.append(make_rows(30, start=30)) == 20
        assert (writer.pending_rows, writer.dropped_rows, writer.lost_rows) == (50, 10, 0)
        fs.failing = False
        assert writer.flush(timeout=10)

    assert (writer.written_rows, writer.lost_rows, writer.failed_files) == (50, 0, 0)
    assert sorted(r.event_id for r in lake.rows()) == sorted(f"evt-{i}" for i in range(50))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("retrying while the sink has failed for less than 30s" in m for m in warnings) == 1
    assert any("at attempt" in r.getMessage() for r in caplog.records)
    assert writer.close(timeout=2)


def test_a_long_outage_counts_rows_lost_then_fails_fast_until_the_sink_is_back() -> None:
    fs = FailingFS()
    lake = memory_lake()
    writer = LakeWriter(lake.url, fs=fs, retry_for_s=0.3)
    writer.start()
    writer.append(make_rows(10))
    assert writer.flush(timeout=10)
    assert (writer.lost_rows, writer.failed_files) == (10, 1)
    retries = writer.write_retries
    assert retries >= 1

    # Once the sink has failed for longer than retry_for_s: one attempt per file, no waiting.
    time.sleep(0.3)  # the time that must pass, not a synchronisation
    opens = fs.write_opens
    writer.append(make_rows(5, start=10))
    assert writer.flush(timeout=10)
    assert (writer.lost_rows, writer.write_retries, fs.write_opens) == (15, retries, opens + 1)

    fs.failing = False  # back: a success resets the outage
    writer.append(make_rows(5, start=20))
    assert writer.close(timeout=5)
    assert (writer.written_rows, writer.lost_rows) == (5, 15)
    assert writer.written_rows + writer.lost_rows + writer.dropped_rows == 20


def test_a_failed_rename_leaves_no_file_behind() -> None:
    fs = FailingFS()
    fs.failing, fs.failing_mv = False, True
    lake = memory_lake()
    with LakeWriter(lake.url, fs=fs, retry_for_s=0) as writer:
        writer.append(make_rows(5))
        assert writer.flush(timeout=2)

    assert (writer.lost_rows, writer.failed_files) == (5, 1)
    assert fs.find(lake.root) == []  # neither final nor temporary file


def test_rows_that_do_not_fit_the_schema_are_lost_not_fatal() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url) as writer:
        writer.append([make_row(0)._replace(score="high")])  # type: ignore[arg-type]
        assert writer.flush(timeout=2)
        writer.append(make_rows(3, start=1))

    assert (writer.lost_rows, writer.written_rows) == (1, 3)


# -- concurrency ---------------------------------------------------------------------


def test_concurrent_appends_are_written_exactly_once() -> None:
    lake = memory_lake()
    with LakeWriter(lake.url, max_rows_per_file=500, flush_interval_s=0.01) as writer:

        def produce(k: int) -> None:
            rows = make_rows(2_500, start=k * 2_500)
            for i in range(0, len(rows), 7):
                writer.append(rows[i : i + 7])

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    ids = [r.event_id for r in lake.rows()]
    assert len(ids) == 10_000
    assert set(ids) == {f"evt-{i}" for i in range(10_000)}
    assert writer.written_rows == 10_000


# -- the service's columnar path ---------------------------------------------------------


def test_appended_columns_are_written_like_rows(lake: Lake) -> None:
    rows = make_rows(40) + make_rows(10, start=40, predictor="single-v1", role="shadow")
    with LakeWriter(lake.url, max_pending_rows=45) as writer:
        columns = LakeColumns()
        columns.add_rows(rows)
        assert writer.append_columns(columns) == 45  # the first 45 fit
        assert writer.append_columns(LakeColumns()) == 0

    assert writer.dropped_rows == 5
    assert exact_all(lake.rows()) == exact_all(rows[:45])


def test_a_malformed_row_is_lost_at_once_and_the_rest_written() -> None:
    lake = memory_lake()
    rows = make_rows(4)
    rows[2] = rows[2]._replace(intent=None)  # type: ignore[arg-type]
    with LakeWriter(lake.url) as writer:
        assert writer.append(rows) == 4
        assert writer.lost_rows == 1
        assert writer.flush(timeout=2)
        assert writer.append(make_rows(2, start=10)) == 2

    assert (writer.written_rows, writer.lost_rows, writer.pending_rows) == (5, 1, 0)
    assert {r.event_id for r in lake.rows()} == {"evt-0", "evt-1", "evt-3", "evt-10", "evt-11"}


def test_flush_waits_for_good_rows_whatever_unfit_rows_arrive_meanwhile() -> None:
    fs = BlockingFS()
    lake = memory_lake()
    writer = LakeWriter(lake.url, fs=fs, flush_interval_s=3600)
    writer.start()
    writer.append(make_rows(5))
    assert not writer.flush(timeout=0.01)  # hands the 5 rows to the thread...
    assert fs.waiting.wait(2)  # ...which now hangs in open()
    writer.append(make_rows(3, start=5))  # waiting in the buffer
    flushed: list[bool] = []
    waiter = threading.Thread(target=lambda: flushed.append(writer.flush(timeout=5)))
    waiter.start()
    wait_until(lambda: writer._flush_target == 8)
    unfit = [r._replace(experts=None) for r in make_rows(3, start=100)]  # type: ignore[arg-type]
    assert writer.append(unfit) == 3

    fs.gate.set()
    waiter.join(10)
    assert flushed == [True]
    assert writer.pending_rows == 0  # the flush covered the 3 good rows, not just counts
    assert (writer.written_rows, writer.lost_rows) == (8, 3)
    assert writer.close(timeout=2)
    assert len(lake.rows()) == 8
