"""A stop begins: not ready at once, scoring goes on while load balancers notice (the
drain), and every event acknowledged until the end is in the lake.

uvicorn binds its socket only after the app's startup completed, so "before ready" cannot
be observed over HTTP. The app object's ``begin_shutdown`` and ``drain`` (what SIGTERM
calls first) are driven directly here, on an in-thread server answering over real HTTP.
"""

from __future__ import annotations

import asyncio
import time

import pyarrow.dataset as ds

from tests.e2e.conftest import StartThreadServer
from tests.e2e.support import Deployment, event, metric_value


def test_begin_shutdown_turns_readiness_503_while_scoring_goes_on(
    deployment: Deployment, start_thread_server: StartThreadServer
) -> None:
    server = start_thread_server(deployment)
    with server.client() as client:
        assert client.get("/health/ready").status_code == 200
        assert client.post("/v1/score", json=event("before", "bank1")).status_code == 200

        server.app.begin_shutdown()

        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "not ready"})
        # A balancer still sending before its health check noticed: served, not refused.
        for body in (event("during", "bank1"), {"events": [event("during-b", "bank2")]}):
            r = client.post("/v1/score", json=body)
            assert r.status_code == 200, r.text
        # Liveness is not readiness: the process is fine.
        assert client.get("/health/live").status_code == 200
        assert metric_value(client.get("/metrics").text, "muse_ready") == 0

    server.stop()
    rows = ds.dataset(deployment.lake, format="parquet", partitioning="hive").to_table()
    live = [
        e
        for e, r in zip(rows["event_id"].to_pylist(), rows["role"].to_pylist(), strict=True)
        if r == "live"
    ]
    assert sorted(live) == ["before", "during", "during-b"]


def test_a_drain_ends_once_requests_stop_coming(
    deployment: Deployment, start_thread_server: StartThreadServer
) -> None:
    server = start_thread_server(deployment)
    app = server.app
    with server.client() as client:
        assert client.post("/v1/score", json=event("e0", "bank1")).status_code == 200
    # Quiet already: the drain ends after the quiet period, not after server.drain_s (10 s).
    started = time.monotonic()
    seconds = asyncio.run(app.drain(quiet_s=0.3))
    assert 0.25 <= seconds < 2.0
    assert time.monotonic() - started < 2.0
    assert not app.ready


def test_once_stopping_scoring_is_503(
    deployment: Deployment, start_thread_server: StartThreadServer
) -> None:
    server = start_thread_server(deployment)
    with server.client() as client:
        server.app.stopping = True  # what the lifespan shutdown sets first
        r = client.post("/v1/score", json=event("late", "bank1"))
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        server.app.stopping = False
