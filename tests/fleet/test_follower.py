"""A replica following a deployment store (in process): it serves the active version under
its id, prepares a promoted version beside the live one, answers, switches at the
activation time with the others, refuses a version it cannot prepare while it keeps
serving, and never switches back to an older promotion."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from muse.deployment import Deployment
from muse.features.table import FeatureTable
from muse.fleet import DeploymentStore, StoreError
from muse.fleet.follower import Follower, FollowerEvents
from muse.fleet.promotion import (
    answer,
    heartbeat,
    live_replicas,
    pending_promotion,
    promote,
    rollback,
)
from muse.scoring import score_live
from tests.config_fixtures import SAMPLE_EVENT
from tests.config_fixtures import Deployment as Quickstart
from tests.fleet.versions import publish_broken, publish_renamed


class Recorder:
    """Follower events, with when each switch happened."""

    def __init__(self) -> None:
        self.switches: list[tuple[str, float]] = []
        self.refused: list[str] = []
        self.prepared: list[str] = []

    def events(self) -> FollowerEvents:
        return FollowerEvents(
            switched=lambda v: self.switches.append((v, time.time())),
            prepared=self.prepared.append,
            refused=self.refused.append,
        )


@contextmanager
def following(
    store: DeploymentStore, cache: Path, names: list[str], *, poll_s: float = 0.05
) -> Iterator[list[tuple[Follower, Recorder]]]:
    """Replicas ``names`` started on the active version and following it; stopped on exit."""
    with ExitStack() as stack:
        out = []
        for name in names:
            recorder = Recorder()
            deployment = Deployment(cache / "unused.yaml")
            follower = Follower(
                store,
                deployment,
                cache=cache,
                replica=name,
                poll_s=poll_s,
                heartbeat_s=0.1,
                events=recorder.events(),
            )
            follower.start()
            follower.start_thread()
            stack.callback(deployment.close)
            stack.callback(follower.stop)
            out.append((follower, recorder))
        yield out


def _score(follower: Follower) -> tuple[str, float]:
    snap = follower.deployment.snapshot
    table = FeatureTable.from_row(SAMPLE_EVENT)
    outcome = score_live(snap, [{"tenant": "bank1"}], table, event_ids=["e"])
    result = outcome.results[0]
    return result.config_version, result.live.score


def test_a_replica_serves_the_active_version_under_its_id(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    a = publish_renamed(quickstart, store, "quickstart-1")
    promote(store, a, switch_delay_s=0)
    with following(store, tmp_path / "cache", ["r1"]) as [(r1, _)]:
        assert r1.version == a
        version, score = _score(r1)
        assert version == a  # responses and lake rows name the store's version id
        assert 0.0 < score < 1.0
        assert r1.status()["version"] == a
        assert "r1" in live_replicas(store)
    assert "r1" not in live_replicas(store)  # the heartbeat is withdrawn on stop


def test_a_store_with_no_active_version_is_refused_with_what_to_do(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    publish_renamed(quickstart, store, "quickstart-1")
    follower = Follower(store, Deployment(tmp_path / "x.yaml"), cache=tmp_path / "c")
    with pytest.raises(StoreError, match=r"no active version yet.*muse promote"):
        follower.start()


def test_every_replica_prepares_then_all_switch_together(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    a = publish_renamed(quickstart, store, "quickstart-1")
    promote(store, a, switch_delay_s=0)
    b = publish_renamed(quickstart, store, "quickstart-2")
    with following(store, tmp_path / "cache", ["r1", "r2", "r3"]) as replicas:
        result = promote(store, b, switch_delay_s=1.0, timeout_s=30, liveness_s=2.0)
        assert result.activated, result
        assert result.prepared == ("r1", "r2", "r3")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(f.version != b for f, _ in replicas):
            time.sleep(0.02)
        assert [f.version for f, _ in replicas] == [b, b, b]
        times = [rec.switches[-1][1] for _, rec in replicas]
        assert [rec.switches[-1][0] for _, rec in replicas] == [b, b, b]
        assert max(times) - min(times) < 0.5  # they switched at the activation time
        assert all(rec.prepared == [b] for _, rec in replicas)
        assert _score(replicas[0][0])[0] == b


def test_a_version_that_cannot_be_prepared_is_refused_and_nothing_switches(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    a = publish_renamed(quickstart, store, "quickstart-1")
    promote(store, a, switch_delay_s=0)
    broken = publish_broken(quickstart, store, tmp_path)
    with following(store, tmp_path / "cache", ["r1", "r2"]) as replicas:
        result = promote(store, broken, timeout_s=30, liveness_s=2.0)
        assert result.state == "refused"
        # The promotion ends at the first refusal: the other replica may not have answered.
        assert result.refused
        assert set(result.refused) <= {"r1", "r2"}
        assert all("models.m2: cannot be loaded" in d for d in result.refused.values())
        time.sleep(0.3)  # a few polls: nobody switches
        for follower, rec in replicas:
            assert follower.version == a
            assert rec.switches == []
            if follower.replica in result.refused:
                assert rec.refused == [broken]
                [refusal] = follower.status()["refusals"]
                assert refusal["version"] == broken
                assert "cannot be loaded" in refusal["detail"]
            assert _score(follower)[0] == a  # still serving


def test_a_prepared_version_is_released_when_another_replica_refuses(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    a = publish_renamed(quickstart, store, "quickstart-1")
    promote(store, a, switch_delay_s=0)
    b = publish_renamed(quickstart, store, "quickstart-2")
    with following(store, tmp_path / "cache", ["r1"]) as [(r1, rec)]:
        # A replica that refuses everything (its disk is full, say): the promotion fails.
        stop = threading.Event()

        def refuser() -> None:
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                heartbeat(store, "sick", None)
                pending = pending_promotion(store)
                # Refuse once r1 has prepared (what this test is about): refusing first
                # would end the promotion before r1 had anything to release.
                if pending is not None and rec.prepared:
                    answer(store, pending["id"], "sick", "refused", "disk full")
                stop.wait(0.05)

        thread = threading.Thread(target=refuser, daemon=True)
        heartbeat(store, "sick", None)
        thread.start()
        try:
            result = promote(store, b, timeout_s=30, liveness_s=2.0)
        finally:
            stop.set()
            thread.join(5)
        assert result.state == "refused"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and r1.status()["prepared"] is not None:
            time.sleep(0.02)
        assert r1.status()["prepared"] is None  # given up, its models released
        assert r1.version == a
        assert rec.prepared == [b]


def test_a_replica_started_mid_way_catches_up_and_none_switches_back(
    quickstart: Quickstart, store: DeploymentStore, tmp_path: Path
) -> None:
    a = publish_renamed(quickstart, store, "quickstart-1")
    first = promote(store, a, switch_delay_s=0)
    b = publish_renamed(quickstart, store, "quickstart-2")
    promote(store, b, switch_delay_s=0)  # no replica yet: activated at once
    with following(store, tmp_path / "cache", ["late"]) as [(late, rec)]:
        assert late.version == b
        current = store.active()
        assert current is not None
        # A stale read (an eventually consistent store) shows the older pointer: ignored.
        store.set_active({"version": a, "promotion": first.promotion, "activate_at": ""})
        time.sleep(0.3)
        assert late.version == b
        assert rec.switches == []
        # A rollback is a newer promotion: followed.
        store.set_active(current)
        back = rollback(store, switch_delay_s=0.5, timeout_s=30, liveness_s=2.0)
        assert back.activated
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and late.version != a:
            time.sleep(0.02)
        assert late.version == a
