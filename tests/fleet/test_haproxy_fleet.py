"""The fleet over real processes behind a real load balancer.

Three replicas (``muse serve --store``, two of them with ``--workers 2``: five replicas
in the store's eyes) behind Debian's haproxy (active health check on ``/health/ready``,
retries on connection failure), under a bounded concurrent load of single and batch
requests from three tenants; then, in turn:

1. a promotion that changes a tenant's map and an ensemble's weights: 0 failed requests,
   a mixed-version window < 1 s (from the version headers), every acknowledged event
   exactly once in the lake with the version that scored it;
2. a broken version (a model file that does not load): refused by every replica, 0
   failed requests, every replica still on the old version;
3. the paper's Fig. 3: a shadow predictor for bank1 promoted to live, the cut-over in the
   lake;
4. one replica SIGKILLed under load: haproxy fails over; the failures are counted and
   bounded by what was in flight, and every event acknowledged by the others is in the lake;
5. every replica restarted in turn (SIGTERM, start): 0 failed requests.

Every process is started by these fixtures and stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from muse.fleet import DeploymentStore
from muse.fleet.promotion import live_replicas, promote
from muse.testing.haproxy import RunningHaproxy, start_haproxy
from muse.testing.load import Answer, ScoreLoad, mixed_window
from tests.config_fixtures import SAMPLE_EVENT
from tests.config_fixtures import Deployment as Quickstart
from tests.e2e.support import MuseProcess, free_port, wait_until
from tests.fleet.versions import (
    publish_broken,
    publish_renamed,
    publish_reweighted,
    publish_routing,
)

#: Replica → its worker processes.
REPLICAS = {"r0": 1, "r1": 2, "r2": 2}
WORKERS = sum(REPLICAS.values())
#: The quickstart's lake flush interval, and a margin for the writer's thread.
FLUSH_S = 2.0


@dataclass
class Fleet:
    root: Path
    quickstart: Quickstart
    store: DeploymentStore
    lake: Path
    replicas: dict[str, MuseProcess] = field(default_factory=dict)
    balancer: RunningHaproxy | None = None

    def replica(self, name: str) -> MuseProcess:
        port = self.replicas[name].port if name in self.replicas else free_port()
        args = [
            "--store",
            self.store.url,
            "--lake",
            str(self.lake),
            "--cache",
            str(self.root / "cache"),
            "--poll",
            "0.1",
            "--workers",
            str(REPLICAS[name]),
        ]
        if REPLICAS[name] == 1:
            args += ["--replica", name]
        log = self.root / f"{name}.log"
        return MuseProcess(None, log, args, port=port)

    def start(self, name: str) -> None:
        self.replicas[name] = self.replica(name).start()

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def load(self, prefix: str) -> ScoreLoad:
        return ScoreLoad(
            self.url, SAMPLE_EVENT, threads=3, pause_s=0.004, max_seconds=120, prefix=prefix
        )

    def versions(self) -> set[str]:
        """The version every live replica's heartbeat names."""
        return {str(d["version"]) for d in live_replicas(self.store, 2.0).values()}

    def wait_converged(self, version: str, timeout: float = 15.0) -> None:
        wait_until(
            lambda: len(live_replicas(self.store, 2.0)) == WORKERS and self.versions() == {version},
            timeout,
            f"all {WORKERS} replicas on {version}",
        )

    def lake_rows(self) -> pa.Table:
        files = sorted(self.lake.rglob("*.parquet"))
        if not files:
            return pa.table({"event_id": [], "role": [], "config_version": []})
        columns = ["event_id", "tenant", "role", "predictor", "config_version"]
        return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)

    def live_rows(self, ids: set[str]) -> dict[str, list[tuple[str, str]]]:
        """Event id → its live rows' (predictor, config_version), for ``ids``."""
        table = self.lake_rows().to_pydict()
        out: dict[str, list[tuple[str, str]]] = {}
        for eid, role, pred, ver in zip(
            table["event_id"],
            table["role"],
            table["predictor"],
            table["config_version"],
            strict=True,
        ):
            if role == "live" and eid in ids:
                out.setdefault(eid, []).append((pred, ver))
        return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    quickstart = Quickstart.copy_quickstart(root / "deploy")
    store = DeploymentStore(root / "store")
    f = Fleet(root, quickstart, store, root / "lake")
    try:
        first = publish_renamed(quickstart, store, "quickstart-1")
        promote(store, first, switch_delay_s=0)
        for name in REPLICAS:
            f.start(name)
        f.balancer = start_haproxy(
            root / "haproxy",
            free_port(),
            [(name, p.port) for name, p in f.replicas.items()],
            check_interval_ms=100,
        )
        f.wait_converged(first)
        yield f
    finally:
        errors = []
        for server in f.replicas.values():
            try:
                server.stop()
            except AssertionError as e:
                errors.append(str(e))
        if f.balancer is not None:
            f.balancer.stop()
        assert not errors, "\n".join(errors)


def _failures(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if not a.ok]


def _acknowledged(answers: list[Answer]) -> dict[str, str]:
    """Event id → the version that scored it, for every event answered 200."""
    return {e: a.version or "" for a in answers if a.ok for e in a.event_ids}


def _wait_in_lake(fleet: Fleet, ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    rows: dict[str, list[tuple[str, str]]] = {}

    def complete() -> bool:
        nonlocal rows
        rows = fleet.live_rows(ids)
        return len(rows) == len(ids)

    with contextlib.suppress(AssertionError):  # reported by the callers, with the ids
        wait_until(complete, 4 * FLUSH_S + 10, "every acknowledged event in the lake", 0.5)
    return rows


def _exactly_once(fleet: Fleet, acked: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    rows = _wait_in_lake(fleet, set(acked))
    missing = sorted(set(acked) - set(rows))
    assert not missing, f"{len(missing)} acknowledged events not in the lake: {missing[:5]}"
    twice = {e: r for e, r in rows.items() if len(r) != 1}
    assert not twice, f"events with several live rows: {list(twice.items())[:5]}"
    wrong = {e: (rows[e][0][1], v) for e, v in acked.items() if rows[e][0][1] != v}
    assert not wrong, f"lake version != response version: {list(wrong.items())[:5]}"
    return rows


def test_1_a_promotion_switches_every_worker_within_a_second_with_no_failure(
    fleet: Fleet,
) -> None:
    old = fleet.versions().pop()
    with fleet.load("p1") as load:
        load.wait_for(150)
        new = publish_reweighted(fleet.quickstart, fleet.store)
        result = promote(fleet.store, new, timeout_s=60, liveness_s=2.0)
        assert result.activated, result
        assert len(result.prepared) == WORKERS
        fleet.wait_converged(new)
        load.wait_for(150)
    answers = load.snapshot()
    assert _failures(answers) == []
    versions = Counter(a.version for a in answers)
    assert set(versions) == {old, new}, versions
    window = mixed_window(answers, old, new)
    print(f"\npromotion: {len(answers)} requests, mixed-version window {window * 1e3:.0f} ms")
    assert window < 1.0
    _exactly_once(fleet, _acknowledged(answers))


def test_2_a_broken_version_is_refused_everywhere_and_nothing_fails(fleet: Fleet) -> None:
    current = fleet.versions().pop()
    with fleet.load("p2") as load:
        load.wait_for(100)
        broken = publish_broken(fleet.quickstart, fleet.store, fleet.root)
        result = promote(fleet.store, broken, timeout_s=60, liveness_s=2.0)
        load.wait_for(100)
    assert result.state == "refused"
    # The first refusal decides: the promoter stops waiting for the others.
    assert result.refused
    assert all("models.m2: cannot be loaded" in d for d in result.refused.values())
    answers = load.snapshot()
    assert _failures(answers) == []
    assert {a.version for a in answers} == {current}
    assert fleet.versions() == {current}
    active = fleet.store.active()
    assert active is not None
    assert active["version"] == current


def test_3_a_shadow_predictor_goes_live_for_bank1_and_the_lake_shows_the_cut_over(
    fleet: Fleet,
) -> None:
    q, store = fleet.quickstart, fleet.store
    shadowed = publish_routing(
        q, store, "fig3-shadow", bank1_live="ensemble-v1", bank1_shadow="single-v1"
    )
    assert promote(store, shadowed, timeout_s=60, liveness_s=2.0).activated
    fleet.wait_converged(shadowed)
    with fleet.load("p3") as load:
        load.wait_for(150)
        live = publish_routing(q, store, "fig3-live", bank1_live="single-v1", bank1_shadow=None)
        assert promote(store, live, timeout_s=60, liveness_s=2.0).activated
        fleet.wait_converged(live)
        load.wait_for(150)
    answers = load.snapshot()
    assert _failures(answers) == []
    acked = _acknowledged(answers)
    rows = _exactly_once(fleet, acked)
    bank1 = {
        e for a in answers if a.ok for e in a.event_ids if a.event_ids and _tenant(a) == "bank1"
    }
    before = {rows[e][0][0] for e in bank1 if acked[e] == shadowed}
    after = {rows[e][0][0] for e in bank1 if acked[e] == live}
    assert before == {"ensemble-v1"}
    assert after == {"single-v1"}
    table = fleet.lake_rows().to_pydict()
    shadow_versions = {
        v
        for t, role, p, v in zip(
            table["tenant"], table["role"], table["predictor"], table["config_version"], strict=True
        )
        if t == "bank1" and role == "shadow" and p == "single-v1"
    }
    assert shadow_versions == {shadowed}  # shadowed before the cut-over, live after


def _tenant(answer: Answer) -> str:
    # ScoreLoad cycles tenants by request number: bank1, bank2, fintech3.
    n = int(answer.event_ids[0].split("-")[1])
    return ("bank1", "bank2", "fintech3")[n % 3]


def test_4_a_replica_killed_under_load_fails_only_its_requests_in_flight(fleet: Fleet) -> None:
    victim = fleet.replicas["r0"]
    with fleet.load("p4") as load:
        load.wait_for(150)
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.proc is not None
        victim.proc.wait(10)
        load.wait_for(300)
    answers = load.snapshot()
    failed = _failures(answers)
    print(f"\nSIGKILL: {len(answers)} requests, {len(failed)} failed: {[a.status for a in failed]}")
    assert len(failed) <= load.threads  # at most what was in flight
    assert all(abs(a.sent - killed_at) < 2.0 for a in failed)
    # Events acknowledged after the kill, or well before it (flushed), are all in the lake.
    acked = {
        e: v
        for e, v in _acknowledged(answers).items()
        if _answered(answers, e) > killed_at + 0.5
        or _answered(answers, e) < killed_at - FLUSH_S - 1.0
    }
    rows = _wait_in_lake(fleet, set(acked))
    assert set(acked) <= set(rows)
    fleet.start("r0")
    wait_until(lambda: len(live_replicas(fleet.store, 2.0)) == WORKERS, 20, "r0 back in the fleet")


def _answered(answers: list[Answer], event: str) -> float:
    for a in answers:
        if event in a.event_ids:
            return a.answered
    raise KeyError(event)


def test_5_a_rolling_restart_fails_no_request(fleet: Fleet) -> None:
    current = fleet.versions().pop()
    with fleet.load("p5") as load:
        load.wait_for(100)
        for name in REPLICAS:
            server = fleet.replicas[name]
            assert server.stop() in (0, -signal.SIGTERM)
            fleet.start(name)  # returns once /health/ready answers 200
            # haproxy's health check (every 100 ms) brings it back before the next one stops.
            time.sleep(0.5)
        load.wait_for(100)
    answers = load.snapshot()
    assert _failures(answers) == [], Counter((a.status, a.error[:80]) for a in _failures(answers))
    assert {a.version for a in answers} == {current}
    _exactly_once(fleet, _acknowledged(answers))
