"""The deployment store: publish validates and stores content-addressed versions; versions
unpack to the same config, byte for byte; promote and rollback move the active pointer only
when every live replica prepared the version."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from muse.config import load_config
from muse.errors import ConfigError
from muse.fleet import DeploymentStore, StoreError, publish
from muse.fleet.promotion import (
    answer,
    forget_gone_replicas,
    heartbeat,
    live_replicas,
    pending_promotion,
    promote,
    rollback,
    version_states,
)
from muse.service import ScoringService
from tests.cli_support import invoke
from tests.config_fixtures import SAMPLE_EVENT
from tests.config_fixtures import Deployment as Quickstart

QUICKSTART_FILES = {
    "muse.yaml",
    "models/m1.txt",
    "models/m2.onnx",
    "models/m3.onnx",
    "features/cards.parquet",
    "transforms/single-v1/default/v0.json",
    "transforms/ensemble-v1/default/v0.json",
    "transforms/single-v1/tenants/bank1/v1.json",
    "transforms/ensemble-v1/tenants/bank2/v1.json",
}


# -- publish -------------------------------------------------------------------------------


def test_publish_stores_the_config_and_every_file_it_names(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    done = publish(quickstart.config, store, by="alice")
    assert done.new
    v = done.version
    assert v.id.startswith("v-")
    assert v.config_version == "quickstart-1"
    assert v.published_by == "alice"
    assert set(v.files) >= QUICKSTART_FILES
    assert done.uploaded_files == len(v.files)
    assert [r.id for r in store.versions()] == [v.id]
    assert [e["event"] for e in store.history()] == ["published"]


def test_publishing_the_same_bundle_again_is_the_same_version(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    first = publish(quickstart.config, store)
    again = publish(quickstart.config, store)
    assert again.version.id == first.version.id
    assert not again.new
    assert again.uploaded_files == 0


def test_only_new_files_travel(quickstart: Quickstart, store: DeploymentStore) -> None:
    first = publish(quickstart.config, store)
    quickstart.replace("version: quickstart-1", "version: quickstart-2")
    second = publish(quickstart.config, store)
    assert second.version.id != first.version.id
    assert second.uploaded_files == 1  # muse.yaml: the models and maps are already there


def test_an_unpacked_version_loads_to_the_same_config_and_scores(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    v = publish(quickstart.config, store).version
    config = store.materialize(v.id, tmp_path / "cache")
    assert load_config(config).digest == load_config(quickstart.config).digest
    assert store.materialize(v.id, tmp_path / "cache") == config  # reused
    here = ScoringService.from_config(quickstart.config).score({"tenant": "bank1"}, SAMPLE_EVENT)
    there = ScoringService.from_config(config).score({"tenant": "bank1"}, SAMPLE_EVENT)
    assert there.score == here.score


def test_a_corrupt_object_is_refused_when_unpacking(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    v = publish(quickstart.config, store).version
    digest = v.files["models/m1.txt"]
    (tmp_path / "store" / "objects" / digest[:2] / digest).write_bytes(b"tampered")
    with pytest.raises(StoreError, match="corrupt"):
        store.materialize(v.id, tmp_path / "cache")
    assert not (tmp_path / "cache" / v.id).exists()  # no half version left behind


def test_an_invalid_config_is_refused_and_nothing_is_stored(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    (quickstart.root / "models" / "m2.onnx").write_bytes(b"not a model" * 10)
    with pytest.raises(ConfigError) as info:
        publish(quickstart.config, store)
    paths = {i.path for i in info.value.issues}
    assert "models.m2" in paths
    assert store.versions() == []


def test_a_file_outside_the_config_folder_is_refused(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    outside = quickstart.root.parent / "elsewhere"
    outside.mkdir()
    (quickstart.root / "models" / "m1.txt").rename(outside / "m1.txt")
    quickstart.replace("uri: models/m1.txt", "uri: ../elsewhere/m1.txt")
    with pytest.raises(ConfigError, match="outside the config's folder"):
        publish(quickstart.config, store)


def test_a_store_can_be_any_fsspec_url(quickstart: Quickstart, tmp_path: Path) -> None:
    remote = DeploymentStore(f"memory://muse-test-{time.monotonic_ns()}")
    v = publish(quickstart.config, remote).version
    config = remote.materialize(v.id, tmp_path / "cache")
    assert load_config(config).version == "quickstart-1"


def test_an_unknown_version_names_the_published_ones(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    v = publish(quickstart.config, store).version
    with pytest.raises(StoreError, match=v.id):
        store.version("v-0000000000000000")


# -- promote and roll back -----------------------------------------------------------------


def _two_versions(quickstart: Quickstart, store: DeploymentStore) -> tuple[str, str]:
    a = publish(quickstart.config, store).version.id
    quickstart.replace("version: quickstart-1", "version: quickstart-2")
    b = publish(quickstart.config, store).version.id
    return a, b


def test_with_no_live_replica_a_promotion_activates_at_once(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    a, b = _two_versions(quickstart, store)
    assert promote(store, a, switch_delay_s=0).activated
    assert promote(store, b, switch_delay_s=0).activated
    states = {s.record.id: s.state for s in version_states(store)}
    assert states == {a: "retired", b: "active"}
    back = rollback(store, switch_delay_s=0)
    assert back.activated
    assert back.version == a
    active = store.active()
    assert active is not None
    assert (active["version"], active["previous"]) == (a, b)
    events = [e["event"] for e in store.history()]
    assert events.count("activated") == 3
    assert "rollback-requested" in events


def test_a_rollback_needs_a_previous_version(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    with pytest.raises(StoreError, match="no active version"):
        rollback(store)
    a = publish(quickstart.config, store).version.id
    promote(store, a, switch_delay_s=0)
    with pytest.raises(StoreError, match="nothing to roll back to"):
        rollback(store)


class Replica(threading.Thread):
    """A stand-in for a replica's store protocol (heartbeat, answer), bounded in time."""

    def __init__(self, store: DeploymentStore, name: str, verdict: str | None) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.name = name
        self.verdict = verdict  # None: never answers
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            heartbeat(self.store, self.name, None)
            pending = pending_promotion(self.store)
            if pending is not None and self.verdict is not None:
                detail = "" if self.verdict == "prepared" else "models.m2: cannot be loaded"
                answer(self.store, pending["id"], self.name, self.verdict, detail)
            self.stop.wait(0.05)


@contextmanager
def _replicas(store: DeploymentStore, verdicts: dict[str, str | None]) -> Iterator[None]:
    """Stand-in replicas answering with ``verdicts`` (None: never), stopped on exit."""
    replicas = [Replica(store, n, v) for n, v in verdicts.items()]
    for r in replicas:
        heartbeat(store, r.name, None)
        r.start()
    try:
        yield
    finally:
        for r in replicas:
            r.stop.set()
        for r in replicas:
            r.join(5)


def test_a_promotion_activates_once_every_replica_prepared(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    a = publish(quickstart.config, store).version.id
    with _replicas(store, {"r1": "prepared", "r2": "prepared"}):
        before = datetime.now(UTC)
        result = promote(store, a, switch_delay_s=1.0, timeout_s=20)
    assert result.activated
    assert result.prepared == ("r1", "r2")
    assert result.activate_at is not None
    ahead = (datetime.fromisoformat(result.activate_at) - before).total_seconds()
    assert 1.0 <= ahead < 1.0 + result.seconds + 1.0


def test_one_refusal_activates_nowhere(quickstart: Quickstart, store: DeploymentStore) -> None:
    a, b = _two_versions(quickstart, store)
    promote(store, a, switch_delay_s=0)
    with _replicas(store, {"r1": "prepared", "r2": "refused"}):
        result = promote(store, b, timeout_s=20)
    assert result.state == "refused"
    assert result.refused == {"r2": "models.m2: cannot be loaded"}
    active = store.active()
    assert active is not None
    assert active["version"] == a
    assert pending_promotion(store) is None  # decided: replicas stop preparing it


def test_a_replica_that_never_answers_times_the_promotion_out(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    a = publish(quickstart.config, store).version.id
    with _replicas(store, {"r1": "prepared", "mute": None}):
        result = promote(store, a, timeout_s=0.5)
    assert result.state == "timed_out"
    assert result.missing == ("mute",)
    assert store.active() is None


def test_replicas_gone_silent_are_not_waited_for(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    a = publish(quickstart.config, store).version.id
    heartbeat(store, "ghost", None)
    assert "ghost" in live_replicas(store)
    assert "ghost" not in live_replicas(store, liveness_s=0.0)
    result = promote(store, a, liveness_s=0.0, switch_delay_s=0)
    assert result.activated


# -- the commands ----------------------------------------------------------------------------


def test_the_commands_publish_list_promote_and_roll_back(
    quickstart: Quickstart, tmp_path: Path
) -> None:
    url = str(tmp_path / "store")
    published = invoke("publish", str(quickstart.config), "--store", url, "--by", "ci")
    assert published.exit_code == 0, published.output
    a = published.stdout.strip().splitlines()[-1]
    assert a.startswith("v-")
    quickstart.replace("version: quickstart-1", "version: quickstart-2")
    b = invoke("publish", str(quickstart.config), "--store", url).stdout.strip().splitlines()[-1]
    assert invoke("promote", a, "--store", url, "--switch-delay", "0").exit_code == 0
    assert invoke("promote", b, "--store", url, "--switch-delay", "0").exit_code == 0
    listing = invoke("versions", "--store", url)
    assert listing.exit_code == 0
    rows = {
        line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:] if "v-" in line
    }
    assert rows[b][1:3] == ["active", "quickstart-2"]
    assert rows[a][1:3] == ["retired", "quickstart-1"]
    assert "(ci)" in " ".join(rows[a])
    assert invoke("rollback", "--store", url, "--switch-delay", "0").exit_code == 0
    after = invoke("versions", "--store", url).stdout
    assert any(line.split()[:2] == [a, "active"] for line in after.splitlines())


def test_publishing_an_invalid_config_exits_2_listing_the_problems(
    quickstart: Quickstart, tmp_path: Path
) -> None:
    (quickstart.root / "models" / "m3.onnx").write_bytes(b"garbage" * 10)
    result = invoke("publish", str(quickstart.config), "--store", str(tmp_path / "store"))
    assert result.exit_code == 2
    assert "  - models.m3: cannot be loaded:" in result.stderr
    assert result.stdout == ""


def test_promoting_an_unknown_version_exits_2(tmp_path: Path) -> None:
    result = invoke("promote", "v-nope", "--store", str(tmp_path / "store"))
    assert result.exit_code == 2
    assert "has no version 'v-nope'" in result.stderr


def test_workers_unpacking_one_version_fetch_each_object_once(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = publish(quickstart.config, store).version
    fetched: list[str] = []
    real = store._fs.cat

    def counting(paths: list[str], **kwargs: object) -> object:
        fetched.extend(p.rsplit("/", 1)[-1] for p in paths)
        return real(paths, **kwargs)

    monkeypatch.setattr(store._fs, "cat", counting)
    cache = tmp_path / "cache"
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(store.materialize(v.id, cache)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(paths) == 4
    assert len(set(paths)) == 1
    assert sorted(fetched) == sorted(set(v.files.values()))  # each object once
    # A second version shares the unchanged files: hard links to the same objects.
    quickstart.replace("version: quickstart-1", "version: quickstart-2")
    w = publish(quickstart.config, store).version
    again = store.materialize(w.id, cache)
    model = "models/m1.txt"
    assert (again.parent / model).stat().st_ino == (paths[0].parent / model).stat().st_ino


def test_a_promotion_forgets_replicas_gone_for_a_day(
    quickstart: Quickstart, store: DeploymentStore
) -> None:
    a = publish(quickstart.config, store).version.id
    heartbeat(store, "recent", None)
    store.write_json(
        {"replica": "ghost", "version": None, "at": "2026-01-01T00:00:00+00:00"},
        "replicas",
        "ghost.json",
    )
    assert set(store.list_json("replicas")) == {"recent", "ghost"}
    promote(store, a, liveness_s=0.0, switch_delay_s=0)
    assert store.list_json("replicas") == ["recent"]  # seen a second ago: kept
    assert forget_gone_replicas(store, older_than_s=0.0) == ["recent"]
    assert store.list_json("replicas") == []


@pytest.mark.parametrize("vid", ["", "..", "../elsewhere", ".hidden", "a/b", "a\\b"])
def test_a_path_is_never_made_of_something_that_is_not_a_version_id(
    store: DeploymentStore, tmp_path: Path, vid: str
) -> None:
    with pytest.raises(StoreError, match="is not a version id"):
        store.materialize(vid, tmp_path / "cache")
    with pytest.raises(StoreError, match="is not a version id"):
        store.version(vid)
    assert not (tmp_path / "cache").exists()
