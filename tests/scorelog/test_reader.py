"""LakeReader: filters, pruning, ordering, replay dedup, the model-CI join, labels, errors.

Every lake here is written by the real :class:`LakeWriter`, so the reader is tested against
the layout the service produces, not against a hand-made imitation of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from muse.errors import MuseError
from muse.scorelog import LakeRow, LakeWriter, rows_to_table
from muse.scorelog.layout import partition_dir
from muse.scorelog.reader import PAIRED_SCHEMA, SCORES_SCHEMA, LakeError, LakeReader, Window
from tests.scorelog.rows import T0

LIVE = "ens-v1"
SHADOW = "2024"  # a numeric name: hive type inference would make it an integer


def at(day: int, minute: int = 0) -> datetime:
    return T0 + timedelta(days=day, minutes=minute)


def lake_row(
    event_id: str,
    ts: datetime,
    *,
    raw: float,
    predictor: str = LIVE,
    role: str = "live",
    tenant: str = "bank1",
    tq_version: str = "v1",
) -> LakeRow:
    return LakeRow(
        event_id=event_id,
        timestamp=ts,
        tenant=tenant,
        intent={"tenant": tenant},
        predictor=predictor,
        role=role,
        fingerprint=f"fp-{predictor}",
        tq_version=tq_version,
        raw=raw,
        score=raw / 1000,
        experts={"m1": raw, "m2": -raw},
        latency_ms=1.0,
        config_version="cfg-1",
    )


def shadow_row(event_id: str, ts: datetime, raw: float, tenant: str = "bank1") -> LakeRow:
    return lake_row(
        event_id, ts, raw=raw, predictor=SHADOW, role="shadow", tenant=tenant, tq_version="v2"
    )


#: The standard lake, one list per writer session (so partitions hold several files).
#: bank1 is live on LIVE over two days (raw = i); bank2 reuses the id ``evt-0``; LIVE
#: also has two shadow rows; SHADOW shadows part of bank1 (raw = 10 + i) plus one event
#: of its own, and bank2's ``evt-0``.
BATCHES: list[list[LakeRow]] = [
    [lake_row(f"evt-{i}", at(0, i), raw=i) for i in range(6)],
    [lake_row(f"evt-{i}", at(1, i - 6), raw=i) for i in range(6, 10)],
    [
        lake_row(e, at(0, i), raw=100 + i, tenant="bank2")
        for i, e in enumerate(["evt-0", "evt-100", "evt-101"])
    ],
    [lake_row(f"evt-{200 + i}", at(0, 30 + i), raw=200 + i, role="shadow") for i in range(2)],
    [shadow_row(f"evt-{i}", at(0, i), 10 + i) for i in range(4)],
    [
        shadow_row("evt-6", at(1, 0), 16),
        shadow_row("evt-7", at(1, 1), 17),
        shadow_row("evt-50", at(0, 50), 50),
        shadow_row("evt-200", at(0, 30), 210),
        shadow_row("evt-0", at(0, 0), 999, tenant="bank2"),
    ],
]


def write(url: str, rows: Sequence[LakeRow]) -> None:
    with LakeWriter(url) as writer:
        writer.append(rows)
    assert writer.written_rows == len(rows)


def write_standard(url: str) -> None:
    for batch in BATCHES:
        write(url, batch)


@pytest.fixture
def root(tmp_path: Path) -> str:
    path = tmp_path / "lake"
    write_standard(str(path))
    return str(path)


@pytest.fixture
def reader(root: str) -> Iterator[LakeReader]:
    with LakeReader(root) as r:
        yield r


@pytest.fixture(params=["local", "file-url", "memory"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The standard lake behind each kind of URL the reader accepts."""
    if request.param == "memory":
        name = f"lake-{uuid.uuid4().hex}"
        write_standard(f"memory://{name}")
        yield f"memory://{name}"
        fsspec.filesystem("memory").rm(f"/{name}", recursive=True)
        return
    path = tmp_path / "lake"
    write_standard(str(path))
    yield str(path) if request.param == "local" else path.as_uri()


def ids(table: pa.Table) -> list[str]:
    return [str(e) for e in table.column("event_id").to_pylist()]


def put_file(folder: Path, name: str, data: bytes | pa.Table) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        (folder / name).write_bytes(data)
    else:
        pq.write_table(data, folder / name)


def write_labels(path: Path, **columns: Any) -> str:
    pq.write_table(pa.table(columns), path)
    return str(path)


# -- reading, every kind of URL --------------------------------------------------------


def test_every_kind_of_url_reads_the_same_lake(any_url: str) -> None:
    with LakeReader(any_url) as reader:
        raw = reader.raw_scores(LIVE, "bank1", role="live")
        assert raw.tolist() == list(range(10))
        assert raw.dtype == np.float64
        assert reader.count(SHADOW, "bank1") == 8
        assert reader.tenants(LIVE) == ["bank1", "bank2"]
        assert ids(reader.paired(LIVE, SHADOW, "bank1")) == [
            "evt-0",
            "evt-1",
            "evt-2",
            "evt-3",
            "evt-6",
            "evt-7",
        ]


def test_a_path_object_and_a_root_with_quotes_and_spaces_are_read(tmp_path: Path) -> None:
    root = tmp_path / "o'brien's lake; DROP TABLE x"
    write(str(root), BATCHES[0])
    with LakeReader(root) as reader:
        assert reader.count(LIVE, "bank1") == 6


# -- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predictor", "tenant", "role", "expected"),
    [
        (LIVE, "bank1", None, [0, 1, 2, 3, 4, 5, 200, 201, 6, 7, 8, 9]),
        (LIVE, "bank1", "live", list(range(10))),
        (LIVE, "bank1", "shadow", [200, 201]),
        (LIVE, "bank2", None, [100, 101, 102]),
        (SHADOW, "bank1", "shadow", [10, 11, 12, 13, 210, 50, 16, 17]),
        (SHADOW, "bank1", "live", []),
        (SHADOW, "bank2", None, [999]),
        (LIVE, "bank3", None, []),
    ],
)
def test_raw_scores_filter_by_predictor_tenant_and_role(
    reader: LakeReader, predictor: str, tenant: str, role: str | None, expected: list[float]
) -> None:
    raw = reader.raw_scores(predictor, tenant, role=role)
    assert raw.tolist() == expected
    assert reader.count(predictor, tenant, role=role) == len(expected)


def test_tenants_are_those_with_rows_sorted(reader: LakeReader) -> None:
    assert reader.tenants(LIVE) == ["bank1", "bank2"]
    assert reader.tenants(LIVE, role="shadow") == ["bank1"]
    assert reader.tenants(SHADOW) == ["bank1", "bank2"]
    assert reader.tenants(LIVE, window=Window(since=at(1))) == ["bank1"]


def test_the_window_is_half_open(reader: LakeReader) -> None:
    window = Window(since=at(0, 2), until=at(1, 1))
    raw = reader.raw_scores(LIVE, "bank1", role="live", window=window)
    assert raw.tolist() == [2, 3, 4, 5, 6]  # at(0, 2) is in, at(1, 1) is out


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (Window(until=datetime(2026, 11, 23, tzinfo=UTC)), list(range(6))),
        (Window(since=datetime(2026, 11, 23, tzinfo=UTC)), [6, 7, 8, 9]),
        (Window(since=at(5)), []),
        (Window(until=at(-5)), []),
    ],
)
def test_a_window_on_a_day_boundary_keeps_exactly_its_days(
    reader: LakeReader, window: Window, expected: list[float]
) -> None:
    assert reader.raw_scores(LIVE, "bank1", role="live", window=window).tolist() == expected


def test_only_the_predictor_and_days_asked_for_are_opened(root: str) -> None:
    # Unreadable files in other partitions: any attempt to open them fails the query.
    put_file(Path(root, "date=2026-11-25", f"predictor={LIVE}"), "part-bad.parquet", b"junk")
    put_file(Path(root, "date=2026-11-22", "predictor=other"), "part-bad.parquet", b"junk")
    with LakeReader(root) as reader:
        assert reader.count(LIVE, "bank1", window=Window(until=at(2))) == 12
        assert reader.count(SHADOW, "bank1") == 8
        with pytest.raises(LakeError, match=r"part-bad\.parquet") as caught:
            reader.count(LIVE, "bank1")
        assert root in str(caught.value)


def test_orphan_temporary_and_hidden_files_are_ignored(root: str) -> None:
    extra = rows_to_table([lake_row("evt-x", at(0, 3), raw=-1.0)])
    folder = Path(root, "date=2026-11-22", f"predictor={LIVE}")
    put_file(folder, f".part-{uuid.uuid4().hex}.parquet.tmp", extra)
    put_file(folder, "_hidden.parquet", extra)
    put_file(folder, ".part-crashed.parquet.tmp", b"half a file")
    with LakeReader(root) as reader:
        assert reader.raw_scores(LIVE, "bank1", role="live").tolist() == list(range(10))


# -- order and replays -----------------------------------------------------------------


def test_rows_come_in_timestamp_then_event_id_order_whatever_the_files(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    same = at(0, 7)
    write(root, [lake_row("evt-b", same, raw=2), lake_row("evt-late", at(1), raw=9)])
    write(root, [lake_row("evt-a", same, raw=1), lake_row("evt-first", at(0), raw=0)])
    write(root, [lake_row("evt-c", same, raw=3)])
    with LakeReader(root) as reader:
        expected = [0, 1, 2, 3, 9]
        assert reader.raw_scores(LIVE, "bank1").tolist() == expected
        assert ids(reader.scores(LIVE, "bank1")) == [
            "evt-first",
            "evt-a",
            "evt-b",
            "evt-c",
            "evt-late",
        ]
        assert reader.raw_scores(LIVE, "bank1").tolist() == expected  # and again


def test_a_replayed_event_counts_once_with_its_latest_row(root: str) -> None:
    write(root, [lake_row("evt-3", at(1, 30), raw=33)])  # replayed the next day
    write(root, [lake_row("evt-4", at(0, 4), raw=4)])  # replayed at the same instant
    with LakeReader(root) as reader:
        table = reader.scores(LIVE, "bank1", role="live")
        assert ids(table).count("evt-3") == ids(table).count("evt-4") == 1
        assert reader.raw_scores(LIVE, "bank1", role="live").tolist() == [
            0,
            1,
            2,
            4,
            5,
            6,
            7,
            8,
            9,
            33,
        ]
        assert reader.count(LIVE, "bank1", role="live") == 10
        # Outside the replay's day, the original row is the latest one in the window.
        day1 = Window(until=at(1))
        assert reader.raw_scores(LIVE, "bank1", role="live", window=day1).tolist() == list(range(6))


def test_rows_without_an_event_id_are_all_kept_but_never_paired(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    write(root, [lake_row("", at(0, 1), raw=1), lake_row("", at(0, 2), raw=2)])
    write(root, [shadow_row("", at(0, 1), 11)])
    with LakeReader(root) as reader:
        assert reader.raw_scores(LIVE, "bank1").tolist() == [1, 2]
        assert reader.count(LIVE, "bank1") == 2
        assert reader.paired(LIVE, SHADOW, "bank1").num_rows == 0


# -- scores ----------------------------------------------------------------------------


def test_scores_have_the_documented_columns_and_values(reader: LakeReader) -> None:
    table = reader.scores(SHADOW, "bank1", window=Window(until=at(0, 2)))
    assert table.schema == SCORES_SCHEMA
    assert table.to_pylist() == [
        {
            "event_id": f"evt-{i}",
            "timestamp": at(0, i),
            "raw": 10.0 + i,
            "score": (10.0 + i) / 1000,
            "tq_version": "v2",
            "fingerprint": "fp-2024",
            "experts": [("m1", 10.0 + i), ("m2", -10.0 - i)],
        }
        for i in range(2)
    ]


def test_a_numeric_predictor_name_is_read_as_a_string(reader: LakeReader) -> None:
    assert reader.tenants(SHADOW) == ["bank1", "bank2"]
    assert reader.count(SHADOW, "bank1") == 8
    assert reader.count("2025", "bank1") == 0


def test_files_from_before_a_column_was_added_still_read(root: str) -> None:
    old = rows_to_table([lake_row("evt-old", at(0, 59), raw=-5.0)]).drop_columns(["fingerprint"])
    put_file(Path(root, "date=2026-11-22", f"predictor={LIVE}"), "part-old.parquet", old)
    with LakeReader(root) as reader:
        table = reader.scores(LIVE, "bank1", role="live", window=Window(until=at(1)))
        assert ids(table)[-1] == "evt-old"
        assert table.column("fingerprint").to_pylist()[-2:] == ["fp-ens-v1", None]


# -- the model-CI join -----------------------------------------------------------------


def test_paired_joins_live_rows_with_the_candidates_on_the_same_events(
    reader: LakeReader,
) -> None:
    table = reader.paired(LIVE, SHADOW, "bank1")
    assert table.schema == PAIRED_SCHEMA
    expected = [0, 1, 2, 3, 6, 7]  # evt-50 has no live row; evt-200 is LIVE's shadow row
    assert ids(table) == [f"evt-{i}" for i in expected]
    assert table.column("live_raw").to_pylist() == expected
    assert table.column("candidate_raw").to_pylist() == [10 + i for i in expected]
    assert table.column("candidate_score").to_pylist() == [(10 + i) / 1000 for i in expected]
    assert set(table.column("live_tq_version").to_pylist()) == {"v1"}
    assert set(table.column("candidate_tq_version").to_pylist()) == {"v2"}
    assert table.column("timestamp").to_pylist()[-1] == at(1, 1)


def test_paired_never_joins_across_tenants(reader: LakeReader) -> None:
    bank2 = reader.paired(LIVE, SHADOW, "bank2")
    assert bank2.select(["event_id", "live_raw", "candidate_raw"]).to_pylist() == [
        {"event_id": "evt-0", "live_raw": 100.0, "candidate_raw": 999.0}
    ]
    bank1 = reader.paired(LIVE, SHADOW, "bank1")
    assert bank1.column("candidate_raw").to_pylist()[0] == 10.0


def test_paired_windows_the_live_rows_and_finds_shadow_rows_stamped_before(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "lake")
    midnight = datetime(2026, 11, 23, tzinfo=UTC)
    write(root, [lake_row("evt-1", midnight, raw=1), lake_row("evt-2", at(1, 5), raw=2)])
    # Shadow rows carry their batch's earliest arrival: here the previous day.
    write(root, [shadow_row("evt-1", midnight - timedelta(microseconds=1), 11)])
    write(root, [shadow_row("evt-2", at(0), 12)])
    with LakeReader(root) as reader:
        table = reader.paired(LIVE, SHADOW, "bank1", window=Window(since=midnight))
        assert ids(table) == ["evt-1", "evt-2"]
        assert table.column("candidate_raw").to_pylist() == [11, 12]
        late = reader.paired(LIVE, SHADOW, "bank1", window=Window(since=at(1, 1)))
        assert ids(late) == ["evt-2"]


def test_paired_with_an_unknown_predictor_is_empty(reader: LakeReader) -> None:
    assert reader.paired(LIVE, "nope", "bank1").schema == PAIRED_SCHEMA
    assert reader.paired(LIVE, "nope", "bank1").num_rows == 0
    assert reader.paired("nope", SHADOW, "bank1").num_rows == 0


# -- labels ----------------------------------------------------------------------------


@pytest.fixture
def labels(tmp_path: Path) -> str:
    t = datetime(2026, 12, 1, tzinfo=UTC)
    return write_labels(
        tmp_path / "labels.parquet",
        event_id=["evt-0", "evt-1", "evt-1", "evt-6", "evt-50", "evt-999"],
        label=pa.array([1, 1, 0, 0, 1, 1], pa.int64()),
        labelled_at=pa.array([t, t, t + timedelta(hours=1), t, t, t], pa.timestamp("us", tz="UTC")),
    )


def test_scores_with_labels_keep_labelled_events_with_their_latest_label(
    root: str, labels: str
) -> None:
    with LakeReader(root, labels=labels) as reader:
        table = reader.scores(LIVE, "bank1", role="live", with_labels=True)
        assert table.schema == SCORES_SCHEMA.append(pa.field("label", pa.int8()))
        assert ids(table) == ["evt-0", "evt-1", "evt-6"]
        assert table.column("label").to_pylist() == [1, 0, 0]  # evt-1 was relabelled 0


def test_paired_with_labels(root: str, labels: str) -> None:
    with LakeReader(root, labels=labels) as reader:
        table = reader.paired(LIVE, SHADOW, "bank1", with_labels=True)
        assert table.schema.names == [*PAIRED_SCHEMA.names, "label"]
        assert ids(table) == ["evt-0", "evt-1", "evt-6"]
        assert table.column("label").to_pylist() == [1, 0, 0]
        assert table.column("candidate_raw").to_pylist() == [10, 11, 16]


def test_boolean_labels_in_a_folder_and_a_glob(root: str, tmp_path: Path) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    t = pa.array([datetime(2026, 12, 1)] * 2, pa.timestamp("ms"))
    write_labels(folder / "a.parquet", event_id=["evt-2"], label=[True], labelled_at=t[:1])
    write_labels(folder / "b.parquet", event_id=["evt-3"], label=[False], labelled_at=t[1:])
    for where in (str(folder), str(folder / "*.parquet")):
        with LakeReader(root, labels=where) as reader:
            table = reader.scores(LIVE, "bank1", with_labels=True)
            assert ids(table) == ["evt-2", "evt-3"]
            assert table.column("label").to_pylist() == [1, 0]


def test_labels_with_a_tenant_column_are_joined_per_tenant(root: str, tmp_path: Path) -> None:
    t = pa.array([datetime(2026, 12, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC"))
    path = write_labels(
        tmp_path / "labels.parquet",
        tenant=["bank1", "bank2"],
        event_id=["evt-0", "evt-0"],
        label=[0, 1],
        labelled_at=t,
    )
    with LakeReader(root, labels=path) as reader:
        assert reader.scores(LIVE, "bank1", with_labels=True).column("label").to_pylist() == [0]
        assert reader.scores(LIVE, "bank2", with_labels=True).column("label").to_pylist() == [1]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"event_id": ["evt-0"], "label": [1]}, r"labelled_at \(a timestamp\) is missing"),
        (
            {"id": ["evt-0"], "y": [1]},
            r"event_id \(a string\) is missing; label .* is missing; labelled_at .* is missing",
        ),
        (
            {"event_id": ["evt-0"], "label": [0.5], "labelled_at": [datetime(2026, 12, 1)]},
            r"label must be 0/1 as an integer or boolean, got DOUBLE",
        ),
        (
            {"event_id": [7], "label": [1], "labelled_at": [datetime(2026, 12, 1)]},
            r"event_id must be a string, got BIGINT",
        ),
    ],
)
def test_labels_with_wrong_columns_are_refused_naming_them(
    root: str, tmp_path: Path, columns: dict[str, Any], message: str
) -> None:
    path = write_labels(tmp_path / "labels.parquet", **columns)
    with LakeReader(root, labels=path) as reader, pytest.raises(LakeError, match=message):
        reader.scores(LIVE, "bank1", with_labels=True)


def test_a_label_other_than_0_or_1_is_refused(root: str, tmp_path: Path) -> None:
    path = write_labels(
        tmp_path / "labels.parquet",
        event_id=["evt-0"],
        label=[2],
        labelled_at=[datetime(2026, 12, 1)],
    )
    with LakeReader(root, labels=path) as reader:
        with pytest.raises(LakeError, match=r"label must be 0 or 1, got 2 for event 'evt-0'"):
            reader.scores(LIVE, "bank1", with_labels=True)
        assert reader.count(LIVE, "bank1") == 12  # unlabelled queries are unaffected


def test_labels_are_required_to_join_them(reader: LakeReader) -> None:
    with pytest.raises(LakeError, match="has none"):
        reader.scores(LIVE, "bank1", with_labels=True)
    with pytest.raises(LakeError, match="has none"):
        reader.paired(LIVE, SHADOW, "bank1", with_labels=True)


def test_missing_labels_are_reported(root: str, tmp_path: Path) -> None:
    with (
        LakeReader(root, labels=tmp_path / "nope.parquet") as reader,
        pytest.raises(LakeError, match="no such file"),
    ):
        reader.scores(LIVE, "bank1", with_labels=True)
    (tmp_path / "empty").mkdir()
    with (
        LakeReader(root, labels=tmp_path / "empty") as reader,
        pytest.raises(LakeError, match=r"no \.parquet file"),
    ):
        reader.scores(LIVE, "bank1", with_labels=True)


# -- empty results and errors ----------------------------------------------------------


def test_an_unknown_predictor_gives_empty_results_not_an_error(reader: LakeReader) -> None:
    assert reader.raw_scores("nope", "bank1").shape == (0,)
    assert reader.raw_scores("nope", "bank1").dtype == np.float64
    assert reader.count("nope", "bank1") == 0
    assert reader.tenants("nope") == []
    assert reader.scores("nope", "bank1").schema == SCORES_SCHEMA
    assert reader.scores("nope", "bank1").num_rows == 0


def test_a_missing_lake_is_an_error(tmp_path: Path) -> None:
    with LakeReader(tmp_path / "nope") as reader:
        with pytest.raises(LakeError, match=r"no score-lake files under .*does not exist"):
            reader.count(LIVE, "bank1")
        with pytest.raises(MuseError):
            reader.tenants(LIVE)


def test_a_lake_without_parquet_files_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "lake" / "date=2026-11-22" / f"predictor={LIVE}"
    put_file(folder, ".part-x.parquet.tmp", rows_to_table([lake_row("e", at(0), raw=1)]))
    with (
        LakeReader(tmp_path / "lake") as reader,
        pytest.raises(LakeError, match="no score-lake files under"),
    ):
        reader.raw_scores("other", "bank1")


def test_a_foreign_date_folder_is_reported(root: str) -> None:
    Path(root, "date=yesterday").mkdir()
    with LakeReader(root) as reader, pytest.raises(LakeError, match="date=yesterday"):
        reader.count(LIVE, "bank1")


def test_an_unknown_protocol_is_reported(tmp_path: Path) -> None:
    with LakeReader("nosuchproto://lake") as reader, pytest.raises(LakeError, match="nosuchproto"):
        reader.count(LIVE, "bank1")


def test_a_long_lived_reader_sees_files_written_after_its_first_query() -> None:
    url = f"memory://lake-{uuid.uuid4().hex}"
    write(url, BATCHES[0])
    with LakeReader(url) as reader:
        assert reader.count(LIVE, "bank1") == 6
        write(url, BATCHES[1])
        assert reader.count(LIVE, "bank1") == 10
    fsspec.filesystem("memory").rm(url.removeprefix("memory:/"), recursive=True)


def test_a_closed_reader_refuses_queries(root: str) -> None:
    reader = LakeReader(root)
    assert reader.count(LIVE, "bank1") == 12
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(LakeError, match="closed"):
        reader.count(LIVE, "bank1")


# -- Window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T12:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:30.5Z", datetime(2026, 11, 1, 12, 0, 30, 500_000, tzinfo=UTC)),
        ("2026-11-01T14:00+02:00", datetime(2026, 11, 1, 12, tzinfo=UTC)),
    ],
)
def test_window_parse_accepts_iso_dates_and_datetimes(text: str, expected: datetime) -> None:
    window = Window.parse(text, None)
    assert window.since == expected
    assert window.since is not None
    assert window.since.tzinfo == UTC
    assert window.until is None
    assert Window.parse(None, text).until == expected


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, r"^since: .*got 'yesterday'"),
        (None, "2026-13-01", r"^until: .*got '2026-13-01'"),
        ("", None, r"^since: "),
        ("2026-11-02", "2026-11-01", "must be before until"),
        ("2026-11-01", "2026-11-01", "must be before until"),
    ],
)
def test_window_parse_names_the_bad_argument(
    since: str | None, until: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Window.parse(since, until)


def test_window_bounds_must_be_timezone_aware_and_are_stored_in_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(since=datetime(2026, 11, 1))
    paris = timezone(timedelta(hours=1))
    assert Window(until=datetime(2026, 11, 1, 1, tzinfo=paris)).until == datetime(
        2026, 11, 1, tzinfo=UTC
    )


def test_window_days_are_the_partitions_that_can_hold_its_rows() -> None:
    window = Window.parse("2026-11-01T23:00", "2026-11-03")
    assert window.days() == (date(2026, 11, 1), date(2026, 11, 2))
    assert window.days(margin=1) == (date(2026, 10, 31), date(2026, 11, 3))
    assert Window().days() == (None, None)


def test_partition_dir_matches_what_the_reader_prunes_on() -> None:
    # The reader looks folders up by the writer's naming; keep the two tied together.
    day = (date(2026, 11, 22) - date(1970, 1, 1)).days
    assert partition_dir("/r", day, SHADOW) == f"/r/date=2026-11-22/predictor={SHADOW}"
