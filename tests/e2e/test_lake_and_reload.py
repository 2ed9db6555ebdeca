"""The score lake after a graceful stop, and config reloads under concurrent load.

Expected scores always come from the scoring core in this process, loaded from a copy of
the very YAML the server runs (``muse-v1.yaml`` / ``muse-v2.yaml`` beside ``muse.yaml``,
so relative paths resolve alike).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds

from muse.backends import ModelPool
from tests.e2e.conftest import StartMuse
from tests.e2e.support import (
    SAMPLE,
    TENANTS,
    Deployment,
    MuseProcess,
    event,
    features,
    metric_value,
    wait_until,
)

V1, V2, V3 = "quickstart-1", "quickstart-2", "quickstart-3"


def read_lake(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pylist()
    )
    return rows


def events_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body.get("events", [body])
    return events


def scores_of(answer: Any) -> list[tuple[str, float]]:
    items = answer if isinstance(answer, list) else [answer]
    return [(x["event_id"], x["score"]) for x in items]


# -- the score lake --------------------------------------------------------------------


def test_the_lake_holds_exactly_the_acknowledged_events_after_a_graceful_stop(
    deployment: Deployment, start_muse: StartMuse
) -> None:
    singles = [event(f"s{i}", TENANTS[i % 3], features(i)) for i in range(150)]
    batches = [
        {
            "events": [
                event(f"b{j}-{k}", TENANTS[(j + k) % 3], features(500 + 3 * j + k))
                for k in range(3)
            ]
        }
        for j in range(50)
    ]
    no_amount = {k: v for k, v in SAMPLE.items() if k != "amount"}
    rejected = [
        {"events": [event("x0", "bank1"), event("x1", "bank2"), event("x2", "bank1", no_amount)]},
        event("x3", "bank2", {**SAMPLE, "amount": "12"}),
        event("x4", "bank1", tennant="bank1"),
    ]
    # Interleaved, so rejected requests fall between acknowledged ones on every thread.
    requests: list[dict[str, Any]] = [*singles, *batches]
    for n, bad in enumerate(rejected):
        requests.insert(60 * n + 7, bad)

    with deployment.editing() as doc:
        # A shadow that only re-maps a model the live ensemble ran: scored on the event
        # loop rather than the shadow thread; its rows must be in the lake all the same.
        doc["routing"]["shadowRules"].append(
            {"condition": {"tenants": ["bank1"]}, "targetPredictorNames": ["single-v1"]}
        )
    server = start_muse(deployment)
    acknowledged: dict[str, tuple[str, float]] = {}  # event id → (tenant, score)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def send(share: Sequence[dict[str, Any]]) -> None:
        with server.client() as client:
            for body in share:
                r = client.post("/v1/score", json=body)
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        tenants = {e["event_id"]: e["intent"]["tenant"] for e in events_of(body)}
                        for event_id, score in scores_of(r.json()):
                            acknowledged[event_id] = (tenants[event_id], score)

    started = datetime.now(UTC)
    threads = [threading.Thread(target=send, args=(requests[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert statuses == {200: len(singles) + len(batches), 422: len(rejected)}
    out = server.stop_gracefully()
    assert "0 dropped, 0 lost" in out, out

    # What the core scores for the same events, live and shadow (in one batch: per-event
    # results do not depend on batching).
    good = [e for body in [*singles, *batches] for e in events_of(body)]
    core = deployment.service().score_batch(
        [e["intent"] for e in good],
        [e["features"] for e in good],
        event_ids=[e["event_id"] for e in good],
    )
    expected = {r.event_id: r for r in core}
    assert set(expected) == set(acknowledged)

    rows = read_lake(deployment.lake)
    live = [r for r in rows if r["role"] == "live"]
    shadow = [r for r in rows if r["role"] == "shadow"]
    assert len(live) + len(shadow) == len(rows)

    # Exactly one live row per acknowledged event, nothing for rejected ones.
    assert Counter(r["event_id"] for r in live) == Counter(set(acknowledged))
    for r in live:
        tenant, score = acknowledged[r["event_id"]]
        want = expected[r["event_id"]].live
        assert (r["tenant"], r["score"], r["config_version"]) == (tenant, score, V1)
        assert (r["predictor"], r["fingerprint"], r["tq_version"]) == (
            want.predictor,
            want.fingerprint,
            want.tq_version,
        )
        assert r["raw"] == want.raw
        assert r["score"] == want.score
        assert dict(r["intent"]) == {"tenant": tenant}
        assert r["predictor"] == ("ensemble-v1" if tenant == "bank1" else "single-v1")
        assert started <= r["timestamp"] <= datetime.now(UTC)
        assert r["date"] == r["timestamp"].date().isoformat()

    # One shadow row per (event, shadow predictor): ensemble-v1 for bank2 and fintech3,
    # single-v1 for bank1.
    want_shadows = {(i, s.predictor): s for i, res in expected.items() for s in res.shadows}
    assert {(i, p) for (i, p) in want_shadows} == {
        (i, "ensemble-v1" if t in ("bank2", "fintech3") else "single-v1")
        for i, (t, _) in acknowledged.items()
    }
    assert Counter((r["event_id"], r["predictor"]) for r in shadow) == Counter(set(want_shadows))
    for r in shadow:
        want = want_shadows[(r["event_id"], r["predictor"])]
        assert (r["score"], r["raw"], r["fingerprint"]) == (want.score, want.raw, want.fingerprint)
        assert r["tenant"] == acknowledged[r["event_id"]][0]


# -- reload under load -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() before the request was sent
    status: int
    version: str | None
    request: dict[str, Any]
    body: Any


@dataclass
class Load:
    """``threads`` clients scoring the event ``pool`` (singles and batches) until stopped."""

    server: MuseProcess
    pool: list[dict[str, Any]]
    threads: int = 4
    max_requests: int = 300  # per thread: the load is bounded whatever happens
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(i,)) for i in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def _run(self, worker: int) -> None:
        with self.server.client() as client:
            for i in range(self.max_requests):
                if self._stop.is_set():
                    return
                k = worker * 7 + i
                if i % 4 == 3:
                    body: dict[str, Any] = {
                        "events": [self.pool[(k + j) % len(self.pool)] for j in range(3)]
                    }
                else:
                    body = self.pool[k % len(self.pool)]
                sent = time.monotonic()
                try:
                    r = client.post("/v1/score", json=body)
                except httpx.HTTPError as e:
                    self.failures.append(f"{type(e).__name__}: {e}")
                    continue
                answer = r.json() if r.status_code == 200 else r.text
                version = r.headers.get("x-muse-config-version")
                self.answers.append(Answer(sent, r.status_code, version, body, answer))

    def count(self, after: float = 0.0) -> int:
        return sum(a.sent > after for a in list(self.answers))

    @property
    def finished(self) -> bool:
        return not any(w.is_alive() for w in self._workers)

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(30)
        assert self.finished, "load threads did not stop"


def versions_of(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Three versions of the config, each with a route change the next one undoes or adds:
    v2 moves fintech3 to the ensemble, v3 moves it back and moves bank2 there instead."""
    v1 = deployment.doc()
    assert v1["version"] == V1
    v2 = deployment.doc()
    v2["version"] = V2
    v2["routing"]["scoringRules"].insert(
        1,
        {
            "description": "fintech3 moves to the ensemble",
            "condition": {"tenants": ["fintech3"]},
            "targetPredictorName": "ensemble-v1",
        },
    )
    v3 = deployment.doc()
    v3["version"] = V3
    v3["routing"]["scoringRules"][0]["condition"]["tenants"] = ["bank1", "bank2"]
    return {V1: v1, V2: v2, V3: v3}


def test_reloads_under_load_fail_nothing_and_answer_one_version_at_a_time(
    deployment: Deployment, start_muse: StartMuse
) -> None:
    """v1 → v2 by ``POST /admin/reload``, then v2 → v3 by SIGHUP, all under one load."""
    docs = versions_of(deployment)
    pool = ModelPool()  # the three versions share their models, as the server's pool does
    events = [event(f"p{k}", TENANTS[k % 3], features(k)) for k in range(30)]
    expected: dict[str, dict[str, float]] = {}
    for version, doc in docs.items():
        path = deployment.root / f"muse-{version}.yaml"  # beside muse.yaml: same relative paths
        deployment.write(doc, path)
        results = deployment.service(path, pool=pool).score_batch(
            [e["intent"] for e in events],
            [e["features"] for e in events],
            event_ids=[e["event_id"] for e in events],
        )
        expected[version] = {str(r.event_id): r.score for r in results}
    for old, new, tenant in ((V1, V2, "fintech3"), (V2, V3, "bank2"), (V2, V3, "fintech3")):
        moved = [e["event_id"] for e in events if e["intent"]["tenant"] == tenant]
        assert all(expected[old][i] != expected[new][i] for i in moved), "route changes must show"

    server = start_muse(deployment)
    load = Load(server, events, max_requests=1000).start()  # bounded; stopped well before
    try:
        wait_until(lambda: load.count() >= 100 or load.finished, 30, "load before the reloads")
        deployment.write(docs[V2])
        with server.client() as admin:
            r = admin.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "reloaded", "config_version": V2}
        v2_done = time.monotonic()
        wait_until(lambda: load.count(after=v2_done) >= 80 or load.finished, 30, "load on v2")

        deployment.write(docs[V3])
        sighup_sent = time.monotonic()
        server.signal(signal.SIGHUP)

        def on_v3() -> bool:
            ready: dict[str, Any] = httpx.get(f"{server.url}/health/ready").json()
            return ready.get("config_version") == V3

        wait_until(on_v3, 30, "the SIGHUP reload")
        v3_done = time.monotonic()
        wait_until(lambda: load.count(after=v3_done) >= 80 or load.finished, 30, "load on v3")
    finally:
        load.stop()

    assert load.failures == []
    assert Counter(a.status for a in load.answers) == {200: len(load.answers)}
    assert set(Counter(a.version for a in load.answers)) == {V1, V2, V3}
    for a in load.answers:
        # Once a reload is done, no answer comes from an older version.
        allowed = {V1, V2, V3}
        if a.sent > v2_done:
            allowed = {V2, V3}  # a request sent just before SIGHUP may be served on v3
        if a.sent > v3_done:
            allowed = {V3}
        assert a.version in allowed, (a.version, allowed)
        # ... and every answer is scored and routed exactly as its version says.
        want = [(e["event_id"], expected[a.version][e["event_id"]]) for e in events_of(a.request)]
        assert scores_of(a.body) == want, f"an answer of {a.version} scored like another version"
    assert load.count(after=v2_done) - load.count(after=sighup_sent) >= 80
    assert load.count(after=v3_done) >= 80, "the load ended before enough requests followed"
    with server.client() as client:
        text = client.get("/metrics").text
    assert metric_value(text, "muse_config_reloads_total", outcome="ok") == 2


def test_an_invalid_reload_is_rejected_while_serving_continues(
    deployment: Deployment, start_muse: StartMuse
) -> None:
    server = start_muse(deployment)
    pool = [event(f"p{k}", TENANTS[k % 3], features(k)) for k in range(12)]
    load = Load(server, pool, threads=2).start()
    try:
        wait_until(lambda: load.count() >= 20 or load.finished, 30, "load before the reload")
        with deployment.editing() as doc:
            doc["version"] = "quickstart-broken"
            doc["models"]["m1"]["undersampling"] = 2
            doc["routing"]["scoringRules"][0]["targetPredictorName"] = "ensemble-v9"
        with server.client() as client:
            r = client.post("/admin/reload")
            assert 400 <= r.status_code < 600, r.text
            assert r.status_code != 500, r.text
            message = r.json()["error"]["message"]
            # Every problem, each at its YAML path.
            assert "models.m1.undersampling" in message, message
            assert "ensemble-v9" in message, message
            # ... and the same through SIGHUP, which can only log it.
            server.signal(signal.SIGHUP)
            wait_until(lambda: "SIGHUP: config rejected" in server.output(), 30, "the SIGHUP log")
            ready = client.get("/health/ready")
            assert ready.json() == {"status": "ready", "config_version": V1}
            after = time.monotonic()
            wait_until(lambda: load.count(after=after) >= 20 or load.finished, 30, "load after")
            text = client.get("/metrics").text
    finally:
        load.stop()
    assert load.failures == []
    assert {(a.status, a.version) for a in load.answers} == {(200, V1)}
    assert load.count(after=after) >= 20
    assert metric_value(text, "muse_config_reloads_total", outcome="rejected") == 2
    assert metric_value(text, "muse_config_reloads_total", outcome="ok") == 0
