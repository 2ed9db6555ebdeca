"""Not ready → 503: once a stop begins, probes and scoring say so, and nothing more is logged.

uvicorn binds its socket only after the app's startup completed, so "before ready" cannot
be observed over HTTP, and the window between SIGTERM and the listener closing is too short
to hit reliably. The app object's ``begin_shutdown`` (what SIGTERM calls first) is driven
directly here instead, on an in-thread server answering over real HTTP.
"""

from __future__ import annotations

import pyarrow.dataset as ds

from tests.e2e.conftest import StartThreadServer
from tests.e2e.support import Deployment, event, metric_value


def test_begin_shutdown_turns_readiness_and_scoring_into_503(
    deployment: Deployment, start_thread_server: StartThreadServer
) -> None:
    server = start_thread_server(deployment)
    with server.client() as client:
        assert client.get("/health/ready").status_code == 200
        assert client.post("/v1/score", json=event("before", "bank1")).status_code == 200

        server.app.begin_shutdown()

        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "not ready"})
        for body in (event("after", "bank1"), {"events": [event("after-b", "bank2")]}):
            r = client.post("/v1/score", json=body)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "not_ready"
        # Liveness is not readiness: the process is fine, it only takes no new work.
        assert client.get("/health/live").status_code == 200
        assert metric_value(client.get("/metrics").text, "muse_ready") == 0

    server.stop()
    rows = ds.dataset(deployment.lake, format="parquet", partitioning="hive").to_table()
    assert rows.column("event_id").to_pylist() == ["before"]
