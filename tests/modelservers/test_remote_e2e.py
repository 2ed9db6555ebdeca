"""``muse serve`` with a remote expert on a real Triton: an ensemble mixing a remote and an
in-process expert scores like the all-in-process one; killing Triton under load fails only
the tenant whose predictor needs it, fast, and scoring recovers without a reload."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.config_fixtures import write_placeholder_map
from tests.e2e.support import SAMPLE, Deployment, MuseProcess, event
from tests.modelservers.support import StartServer
from tests.modelservers.test_kserve_backend import FEATURES

#: After the breaker opens, a 503 must come back within this (HTTP round trip included).
FAST_503_S = 0.05


def remote_deployment(root: Path, triton_http: str, *, remote: bool) -> Deployment:
    """The quickstart + predictor ``mixed-v1`` = m1 (on Triton if ``remote``) + m2 (ONNX,
    in process), live for bank2; bank1 stays on the all-in-process ensemble."""
    d = Deployment.copy_quickstart(root)
    with d.editing() as doc:
        doc["auth"] = "none"
        if remote:
            doc["models"]["r1"] = {
                "backend": "kserve-v2",
                "url": triton_http,
                "model": "m1_fp64",
                "version": "1",
                "input_name": "features",
                "output_name": "probability",
                "datatype": "FP64",
                "features": list(FEATURES),
                "undersampling": 0.18,
                "timeout_ms": 500,
                "breaker_failures": 2,
                "breaker_reset_s": 0.5,
            }
        first = "r1" if remote else "m1"
        doc["predictors"]["mixed-v1"] = {
            "experts": [{"model": first}, {"model": "m2"}],
            "reference": "fraud-v1",
            "transforms": "transforms/mixed-v1",
        }
        doc["routing"]["scoringRules"].insert(
            0,
            {
                "description": "bank2 on the mixed ensemble",
                "condition": {"tenants": ["bank2"]},
                "targetPredictorName": "mixed-v1",
            },
        )
        doc["routing"]["shadowRules"] = []
    write_placeholder_map(d.config, "mixed-v1")
    return d


def score(client: Any, tenant: str, i: int = 0) -> tuple[int, float | None, float]:
    t = time.perf_counter()
    r = client.post("/v1/score", json=event(f"e{i}", tenant))
    elapsed = time.perf_counter() - t
    return r.status_code, (r.json().get("score") if r.status_code == 200 else None), elapsed


def test_remote_expert_end_to_end(start_server: StartServer, tmp_path: Path) -> None:
    triton = start_server("triton")
    d = remote_deployment(tmp_path / "remote", triton.http_url, remote=True)
    local = remote_deployment(tmp_path / "local", triton.http_url, remote=False)
    expected = local.service().score({"tenant": "bank2"}, SAMPLE).score
    muse = MuseProcess(d.config, tmp_path / "muse.log").start()
    try:
        with muse.client() as client:
            status, got, _ = score(client, "bank2")
            assert status == 200
            assert got == pytest.approx(expected, abs=1e-6)
            batch = client.post(
                "/v1/score", json={"events": [event(f"b{i}", "bank2") for i in range(20)]}
            )
            assert batch.status_code == 200
            answers = batch.json()
            assert len(answers) == 20
            assert all(a["score"] == pytest.approx(expected, abs=1e-6) for a in answers)

        # Bounded load on both tenants while Triton dies and comes back.
        results: dict[str, list[tuple[float, int, float]]] = {"bank1": [], "bank2": []}
        stop = threading.Event()

        def load(tenant: str) -> None:
            with muse.client() as c:
                for i in range(3_000):  # bounded in count ...
                    if stop.is_set():
                        break
                    status, _, elapsed = score(c, tenant, i)
                    results[tenant].append((time.monotonic(), status, elapsed))
                    time.sleep(0.005)

        threads = [threading.Thread(target=load, args=(t,)) for t in results]
        for th in threads:
            th.start()
        try:
            time.sleep(0.5)
            killed_at = time.monotonic()
            triton.kill()
            time.sleep(2.0)
            restarted_at = time.monotonic()
            triton.restart()
            deadline = time.monotonic() + 20  # ... and in time
            while time.monotonic() < deadline:
                recent = [s for t, s, _ in results["bank2"] if t > time.monotonic() - 0.3]
                if recent and all(s == 200 for s in recent):
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            for th in threads:
                th.join(timeout=30)
    finally:
        muse.stop()

    bank1 = results["bank1"]
    bank2 = results["bank2"]
    assert bank1
    assert all(s == 200 for _, s, _ in bank1), "bank1 never needs Triton"
    down = [(t, s, e) for t, s, e in bank2 if killed_at + 0.2 < t < restarted_at]
    assert down
    assert all(s == 503 for _, s, _ in down), "bank2 needs Triton: 503 while down"
    fast = sorted(e for _, _, e in down)
    assert fast[len(fast) // 2] < FAST_503_S, f"median 503 took {fast[len(fast) // 2]:.3f} s"
    assert bank2[-1][1] == 200, "scoring recovered after the restart, without a reload"
