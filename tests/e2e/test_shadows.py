"""Shadow isolation over real HTTP: a shadow that raises and one that sleeps change nothing
the client sees — not the bytes of an answer, not its latency.

A model cannot be told to fail through the config, so these servers run in this process
(uvicorn in a thread, real sockets) with a :class:`ModelPool` whose loader wraps two copies
of the quickstart's ``m2.onnx``: once armed, one raises on every call, the other sleeps
first. They are armed only after warm-up, which scores every predictor. Each is the only
expert of a shadow predictor (``shadow-fail`` for bank2, ``shadow-slow`` for fintech3);
a baseline server of the plain quickstart answers the same requests for comparison.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds

from muse.artifacts import QuantileArtifact, reference_digest, write_artifact
from muse.backends import ModelBackend, ModelPool, ModelSpec, file_digest, load_backend
from muse.fingerprint import predictor_fingerprint
from muse.transforms import QuantileMap, Reference
from muse.types import FeatureMatrix, ScoreArray
from tests.e2e.conftest import StartThreadServer
from tests.e2e.support import Deployment, event, features, metric_value, wait_until

FAIL_MODEL = "m2-fail.onnx"
SLOW_MODEL = "m2-slow.onnx"
SLEEP_S = 0.2
SHADOW_QUEUE = 4
REFERENCE = Reference.beta(0.8, 9.0)  # the quickstart's fraud-v1


class ArmedBackend:
    """A real backend that, once ``armed`` is set, raises (``fail``) or sleeps (``slow``)."""

    def __init__(self, inner: ModelBackend, mode: str, armed: threading.Event) -> None:
        self.inner = inner
        self.mode = mode
        self.armed = armed
        self.calls = 0

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.inner.feature_names

    @property
    def digest(self) -> str:
        return self.inner.digest

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        if self.armed.is_set():
            self.calls += 1
            if self.mode == "fail":
                raise RuntimeError("injected failure of a shadow model")
            time.sleep(SLEEP_S)
        return self.inner.predict(features)


def add_injected_shadows(d: Deployment) -> None:
    """Two shadow predictors over copies of m2, with a T^Q map fitted for their fingerprint."""
    models = d.root / "models"
    for name in (FAIL_MODEL, SLOW_MODEL):
        shutil.copy2(models / "m2.onnx", models / name)
    # Copies have m2's bytes, so m2's digest; a single-model fingerprint depends on it alone.
    m2 = load_backend(ModelSpec(kind="onnx", path=models / "m2.onnx"))
    rows = [features(i) for i in range(400)]
    raw = m2.predict(np.array([[r[f] for f in m2.feature_names] for r in rows]))
    write_artifact(
        d.root / "transforms" / "shadow-m2",
        QuantileArtifact(
            quantile_map=QuantileMap.fit(raw, REFERENCE),
            fingerprint=predictor_fingerprint([(file_digest(models / "m2.onnx"), 1.0, 1.0)]),
            reference="fraud-v1",
            reference_digest=reference_digest(REFERENCE),
            version=0,
            predictor="shadow-m2",
        ),
    )
    with d.editing() as doc:
        for model, file in (("m2fail", FAIL_MODEL), ("m2slow", SLOW_MODEL)):
            doc["models"][model] = {
                "backend": "onnx",
                "uri": f"models/{file}",
                "undersampling": 0.18,
            }
        for predictor, model in (("shadow-fail", "m2fail"), ("shadow-slow", "m2slow")):
            doc["predictors"][predictor] = {
                "experts": [{"model": model}],
                "reference": "fraud-v1",
                "transforms": "transforms/shadow-m2",
            }
        doc["routing"]["shadowRules"] += [
            {
                "description": "a shadow whose model raises",
                "condition": {"tenants": ["bank2"]},
                "targetPredictorNames": ["shadow-fail"],
            },
            {
                "description": "a shadow whose model sleeps",
                "condition": {"tenants": ["fintech3"]},
                "targetPredictorNames": ["shadow-slow"],
            },
        ]
        doc["server"] = {"shadow_queue": SHADOW_QUEUE}


def test_failing_and_slow_shadows_leave_live_answers_identical_and_fast(
    tmp_path: Path, start_thread_server: StartThreadServer
) -> None:
    baseline_d = Deployment.copy_quickstart(tmp_path / "baseline")
    shadowed_d = Deployment.copy_quickstart(tmp_path / "shadowed")
    add_injected_shadows(shadowed_d)
    armed = {"fail": threading.Event(), "slow": threading.Event()}
    injected: dict[str, ArmedBackend] = {}

    def loader(spec: ModelSpec) -> ModelBackend:
        backend = load_backend(spec)
        mode = {FAIL_MODEL: "fail", SLOW_MODEL: "slow"}.get(spec.path.name)
        if mode is None:
            return backend
        injected[mode] = ArmedBackend(backend, mode, armed[mode])
        return injected[mode]

    baseline = start_thread_server(baseline_d)
    shadowed = start_thread_server(shadowed_d, pool=ModelPool(loader))
    assert set(injected) == {"fail", "slow"}

    with baseline.client() as base, shadowed.client() as client:

        def same_answer(body: dict[str, Any]) -> float:
            """POST to both servers; the answers must be byte-identical. Returns latency."""
            expected = base.post("/v1/score", json=body)
            started = time.perf_counter()
            got = client.post("/v1/score", json=body)
            elapsed = time.perf_counter() - started
            assert got.status_code == expected.status_code == 200, got.text
            assert got.content == expected.content
            assert got.headers["x-muse-config-version"] == expected.headers["x-muse-config-version"]
            return elapsed

        # 1. bank2: live single-v1; shadows ensemble-v1 and shadow-fail, which now raises.
        armed["fail"].set()
        singles = [event(f"f{i}", "bank2", features(i)) for i in range(30)]
        batches = [
            {"events": [event(f"fb{j}-{k}", "bank2", features(j * 4 + k)) for k in range(4)]}
            for j in range(5)
        ]
        for body in [*singles, *batches]:
            same_answer(body)
        failing_events = len(singles) + 4 * len(batches)

        def metrics_when(predicate: Any) -> str:
            def poll() -> str | None:
                text = client.get("/metrics").text
                return text if predicate(text) else None

            return wait_until(poll, 10, "the shadow worker to catch up")

        text = metrics_when(
            lambda t: (
                metric_value(t, "muse_shadow_failed_total", predictor="shadow-fail")
                >= failing_events
            )
        )
        assert (
            metric_value(text, "muse_shadow_failed_total", predictor="shadow-fail")
            == failing_events
        )
        assert injected["fail"].calls == len(singles) + len(batches)  # once per shadow job
        # The other shadow of the same events is scored as usual, and nothing was shed.
        assert metric_value(text, "muse_shadow_failed_total", predictor="ensemble-v1") == 0
        assert (
            metric_value(
                text, "muse_score_count", predictor="ensemble-v1", role="shadow", tenant="bank2"
            )
            == failing_events
        )
        assert metric_value(text, "muse_shadow_shed_total") == 0

        # 2. fintech3: shadow-slow sleeps SLEEP_S per call behind a queue of SHADOW_QUEUE jobs.
        armed["slow"].set()
        n_slow = 40
        latencies = [same_answer(event(f"s{i}", "fintech3", features(i))) for i in range(n_slow)]
        # Inline, every answer would wait SLEEP_S for the shadow (8 s in all). Generous
        # bounds, far below that: this tests isolation, not speed, on loaded CI machines.
        assert statistics.median(latencies) < SLEEP_S / 2, latencies
        assert sum(latencies) < n_slow * SLEEP_S / 4, latencies
        text = metrics_when(
            lambda t: metric_value(t, "muse_shadow_shed_total", predictor="shadow-slow") > 0
        )
        shed = metric_value(text, "muse_shadow_shed_total", predictor="shadow-slow")
        assert 0 < shed <= n_slow
        assert metric_value(text, "muse_shadow_failed_total", predictor="shadow-slow") == 0

    # A graceful stop drains the (bounded) queue of slow jobs and closes the lake.
    started = time.monotonic()
    shadowed.stop()
    assert time.monotonic() - started < 10 * SHADOW_QUEUE * SLEEP_S
    assert injected["slow"].calls == n_slow - shed  # every job not shed ran, even the queued ones
    lake = ds.dataset(shadowed_d.lake, format="parquet", partitioning="hive").to_table()
    rows = lake.select(["event_id", "predictor", "role"]).to_pylist()
    live = [r for r in rows if r["role"] == "live"]
    assert len(live) == failing_events + n_slow
    assert len({r["event_id"] for r in live}) == len(live)
    by_predictor = {
        p: sum(r["predictor"] == p for r in rows) for p in ("shadow-fail", "shadow-slow")
    }
    assert by_predictor["shadow-fail"] == 0  # a failed shadow writes no score
    assert by_predictor["shadow-slow"] == n_slow - shed  # every job not shed was run and written
