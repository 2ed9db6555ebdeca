"""Benchmark: a predictor with a remote expert (Triton gRPC / HTTP, MLServer) vs in process.

The quickstart's ``m1`` (LightGBM) served four ways — in process, Triton over gRPC, Triton
over HTTP (binary tensors), MLServer over HTTP (JSON) — each as the single expert of a
predictor (``Predictor.score``: model call + T^C + A + T^Q), for batches of 1 and 100
events. Per case: latency percentiles of sequential calls (p50/p99, µs) and throughput
(events/s) with 4 client threads sharing the backend, as the service's worker threads do.

The model servers run on this machine, so a remote call pays loopback networking and the
server's own CPU on the same 2 cores: the figures bound the protocol's cost, they are not
a claim about a dedicated GPU server. ``OMP_NUM_THREADS=1`` everywhere.

Run: ``.venv/bin/python benchmarks/bench_remote.py`` (about 1-2 minutes the first time:
the servers' venvs are installed and cached under ``.cache/model-servers``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from muse.backends import ModelPool, ModelSpec
from muse.backends.base import ModelBackend
from muse.backends.kserve_v2 import KServeV2Backend
from muse.datasets import generate_events, make_tenants
from muse.features import FeatureTable
from muse.predictor import Expert, Predictor, TenantMap
from muse.testing import mlserver_settings, start_mlserver, start_triton, triton_repository
from muse.transforms import QuantileMap, Reference

REPO = Path(__file__).resolve().parents[1]
M1 = REPO / "examples" / "quickstart" / "models" / "m1.txt"
SEQUENTIAL_CALLS = 400
THREADS = 4
THROUGHPUT_S = 2.0


def remote(url: str, protocol: str, output: str, features: tuple[str, ...]) -> KServeV2Backend:
    options = {
        "url": url,
        "protocol": protocol,
        "model": "m1",
        "version": "1",
        "input_name": "features",
        "output_name": output,
        "datatype": "FP64",
        "timeout_ms": "1000",
    }
    backend = KServeV2Backend.load(
        ModelSpec(kind="kserve-v2", path=M1, features=features, options=tuple(options.items()))
    )
    deadline = time.monotonic() + 30
    while not backend.ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{protocol} server at {url} is not ready")
        time.sleep(0.2)
    return backend


def predictor(backend: ModelBackend) -> Predictor:
    reference = Reference.beta(0.8, 9.0)
    qmap = QuantileMap.fit(np.linspace(0.0, 1.0, 1001), reference)
    return Predictor("p", (Expert("m1", backend, 0.18),), TenantMap(qmap, "v0"))


def latencies_us(call: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(20):
        call()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def throughput(call: Callable[[], object], events_per_call: int) -> float:
    stop = time.monotonic() + THROUGHPUT_S
    counts = [0] * THREADS

    def worker(k: int) -> None:
        while time.monotonic() < stop:
            call()
            counts[k] += events_per_call

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    local = ModelPool().get(ModelSpec(kind="lightgbm", path=M1))
    features = tuple(local.feature_names)
    frame = generate_events(make_tenants(3, seed=11), 2_000, seed=3)
    columns = {f: frame.features[f] for f in features}
    tables = {n: FeatureTable({f: c[:n] for f, c in columns.items()}) for n in (1, 100)}
    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    triton = start_triton(triton_repository({"m1": M1}, root / "triton", datatype="FP64"))
    mlserver = start_mlserver(mlserver_settings({"m1": M1}, root / "mlserver"))
    try:
        cases: dict[str, ModelBackend] = {
            "in process (LightGBM)": local,
            "Triton, gRPC": remote(triton.grpc_target, "grpc", "probability", features),
            "Triton, HTTP (binary)": remote(triton.http_url, "http", "probability", features),
            "MLServer, HTTP (JSON)": remote(mlserver.http_url, "http", "predict", features),
        }
        print(
            f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"Python {platform.python_version()}, {sys.argv[0]}"
        )
        print(
            f"{'case':28s} {'batch':>5s} {'p50 µs':>9s} {'p99 µs':>9s} {'events/s (4 thr)':>17s} {'vs in-process':>13s}"
        )
        base: dict[int, float] = {}
        for name, backend in cases.items():
            p = predictor(backend)
            for n, table in tables.items():
                call = lambda p=p, table=table: p.score(table, "bank1")  # noqa: E731
                p50, p99 = latencies_us(call, SEQUENTIAL_CALLS)
                rate = throughput(call, n)
                base.setdefault(n, p50)
                print(
                    f"{name:28s} {n:5d} {p50:9.0f} {p99:9.0f} {rate:17,.0f} {p50 / base[n]:12.1f}x"
                )
    finally:
        triton.stop()
        mlserver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
