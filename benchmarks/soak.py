"""Soak: ``muse serve`` under a steady load for minutes, to show what only time shows —
memory that grows, file descriptors or threads that leak, a lake that loses rows, a tail
latency that creeps up.

Set-up: the quickstart (score lake on, shadows as shipped: ``bank2`` events are also scored
by ``ensemble-v1`` in shadow), one ``muse serve`` process pinned to CPU 0; this process pins
itself to CPU 1 and drives an open-loop load with ``loadgen.py``: single events for
``bank1`` and ``bank2`` alternating, every ``--batch-every``-th request a batch of
``--batch-size`` events instead, every event with its own id.

1. Calibration: 10 s at a low rate after a warm-up give the server's CPU seconds per request
   of this mix; the soak rate is ``--load`` (default 0.7) of one core divided by it.
2. Soak: ``--minutes`` windows of one minute each; before every window but the first the
   config is reloaded (``SIGHUP``). Every 5 s the server's resident memory, open file
   descriptors, threads and CPU time are read from ``/proc``.
3. The server is stopped gracefully and the lake read back: every acknowledged event must
   have exactly one live row, and no unacknowledged event any.

Reported: per minute the requests, errors, p50/p99/p99.9 and the server's CPU share; the
memory growth after warm-up (the first two minutes) as a least-squares slope in MiB per
hour; descriptors and threads first vs last; the lake check; p99 of the last minute over
the first. Figures go to ``benchmarks/RESULTS.md``.

``python benchmarks/soak.py [--minutes 10] [--load 0.7]`` (``--minutes 2`` for a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tests.e2e.support import SAMPLE, Deployment, MuseProcess, metric_value  # noqa: E402

import loadgen  # noqa: E402

HOST = "127.0.0.1"
PATH = "/v1/score"
HEADERS = (("Content-Type", "application/json"),)
SERVER_CPU, CLIENT_CPU = 0, 1
#: Memory, descriptors and threads are read this often.
SAMPLE_EVERY_S = 5.0
#: Minutes of warm-up excluded from the memory slope.
WARM_UP_MIN = 2


@dataclass(frozen=True)
class Sample:
    t: float
    rss_mib: float
    fds: int
    threads: int
    cpu_s: float


def read_sample(pid: int, t0: float) -> Sample:
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
    return Sample(
        time.monotonic() - t0,
        loadgen.proc_rss_mib([pid]),
        len(os.listdir(f"/proc/{pid}/fd")),
        threads,
        loadgen.proc_cpu_seconds([pid]),
    )


class Requests:
    """Request ``i`` of window ``w``: a single event, or every ``batch_every``-th a batch."""

    def __init__(self, port: int, batch_every: int, batch_size: int) -> None:
        self.port = port
        self.batch_every = batch_every
        self.batch_size = batch_size
        self.window = 0
        self._features = json.dumps(SAMPLE)

    def _event(self, event_id: str, i: int) -> str:
        tenant = "bank1" if i % 2 else "bank2"
        return (
            f'{{"event_id": "{event_id}", "intent": {{"tenant": "{tenant}"}}, '
            f'"features": {self._features}}}'
        )

    def is_batch(self, i: int) -> bool:
        return i % self.batch_every == self.batch_every - 1

    def event_ids(self, window: int, i: int) -> list[str]:
        if self.is_batch(i):
            return [f"m{window:02d}-{i}-{k}" for k in range(self.batch_size)]
        return [f"m{window:02d}-{i}"]

    def __call__(self, i: int) -> bytes:
        ids = self.event_ids(self.window, i)
        if self.is_batch(i):
            body = '{"events": [' + ", ".join(self._event(e, k) for k, e in enumerate(ids)) + "]}"
        else:
            body = self._event(ids[0], i)
        return loadgen.build_request(HOST, self.port, PATH, body.encode(), HEADERS)


def open_loop(
    requests: Requests, rate: float, seconds: float, answered: bytearray | None = None
) -> loadgen.Result:
    return loadgen.run_open(
        HOST,
        requests.port,
        PATH,
        b"",
        HEADERS,
        rate_per_s=rate,
        duration_s=seconds,
        connections=32,
        drain_s=5.0,
        request_for=requests,
        answered=answered,
    )


def slope_per_hour(samples: list[Sample]) -> float:
    """Least-squares slope of resident memory over time, MiB per hour."""
    if len(samples) < 3:
        return float("nan")
    t = np.array([s.t for s in samples])
    rss = np.array([s.rss_mib for s in samples])
    return float(np.polyfit(t, rss, 1)[0] * 3600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--load", type=float, default=0.7, help="share of one core to use")
    parser.add_argument("--batch-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=20)
    args = parser.parse_args()
    if args.minutes < WARM_UP_MIN + 1 or not 0 < args.load <= 1:
        parser.error(f"--minutes must be at least {WARM_UP_MIN + 1} and --load in (0, 1]")
    loadgen.pin_to_cpu(CLIENT_CPU)
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={os.cpu_count()} "
        f"python {platform.python_version()}; server on CPU {SERVER_CPU}, load on CPU "
        f"{CLIENT_CPU}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="muse-soak-") as tmp:
        root = Path(tmp)
        d = Deployment.copy_quickstart(root / "deploy")
        lake = root / "lake"
        d.set_lake(str(lake))
        server = MuseProcess(d.config, root / "serve.log", wrapper=["taskset", "-c", "0"])
        server.start()
        try:
            return soak(server, lake, args)
        finally:
            server.stop()


def soak(server: MuseProcess, lake: Path, args: argparse.Namespace) -> int:
    requests = Requests(server.port, args.batch_every, args.batch_size)
    pid = server.pid

    # 1. Calibration (its events are acknowledged too, in windows numbered from 90). CPU
    # per request falls as the rate rises (fewer idle wake-ups), so the rate found at a low
    # rate is corrected once by a run at that rate.
    def cpu_share(rate: float, seconds: float, window: int) -> tuple[float, float]:
        requests.window = window
        answered[window] = bytearray(int(rate * seconds) + 1)
        cpu0, wall0 = loadgen.proc_cpu_seconds([pid]), time.monotonic()
        r = open_loop(requests, rate, seconds, answered[window])
        share = (loadgen.proc_cpu_seconds([pid]) - cpu0) / (time.monotonic() - wall0)
        return share, share / max(r.throughput_per_s, 1e-9)

    answered: dict[int, bytearray] = {}
    cpu_share(200, 5, 90)  # warm-up
    _, cpu_per_request = cpu_share(200, 10, 91)
    rate = args.load / cpu_per_request
    share, cpu_per_request = cpu_share(rate, 10, 92)
    rate *= args.load / share
    print(
        f"calibration: {cpu_per_request * 1e3:.3f} ms of server CPU per request "
        f"(1 in {args.batch_every} a batch of {args.batch_size}); soak rate {rate:.0f} req/s "
        f"for {args.load:.0%} of one core",
        flush=True,
    )

    # 2. Soak, sampled by a side thread.
    t0 = time.monotonic()
    samples: list[Sample] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_EVERY_S):
            samples.append(read_sample(pid, t0))

    samples.append(read_sample(pid, t0))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results: list[loadgen.Result] = []
    print(
        f"{'min':>3} {'sent':>7} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
        f"{'cpu':>5} {'RSS MiB':>8} {'fds':>4} {'threads':>7}",
        flush=True,
    )
    try:
        for minute in range(args.minutes):
            if minute:
                os.kill(pid, signal.SIGHUP)
            requests.window = minute
            answered[minute] = bytearray(int(rate * 60) + 1)
            cpu_before, wall_before = loadgen.proc_cpu_seconds([pid]), time.monotonic()
            result = open_loop(requests, rate, 60, answered[minute])
            cpu = (loadgen.proc_cpu_seconds([pid]) - cpu_before) / (time.monotonic() - wall_before)
            results.append(result)
            last = read_sample(pid, t0)
            print(
                f"{minute + 1:>3} {result.sent:>7,} {result.errors:>6} {result.p50_ms:>7.2f} "
                f"{result.p99_ms:>7.2f} {result.p999_ms:>8.2f} {cpu:>5.0%} "
                f"{last.rss_mib:>8.1f} {last.fds:>4} {last.threads:>7}",
                flush=True,
            )
    finally:
        stop.set()
        sampler.join(10)
    metrics = loadgen.wait_http_ready(
        HOST, server.port, loadgen.build_request(HOST, server.port, "/metrics", b""), 5
    ).decode()
    output = server.stop_gracefully(timeout=60)

    # 3. What the soak shows.
    steady = [s for s in samples if s.t >= WARM_UP_MIN * 60]
    growth = slope_per_hour(steady)
    first, final = steady[0], steady[-1]
    print(
        f"\nresident memory after {WARM_UP_MIN} min of warm-up: {first.rss_mib:.1f} → "
        f"{final.rss_mib:.1f} MiB (min {min(s.rss_mib for s in steady):.1f}, max "
        f"{max(s.rss_mib for s in steady):.1f}); slope {growth:+.1f} MiB/hour"
    )
    print(
        f"file descriptors {first.fds} → {final.fds} (max {max(s.fds for s in steady)}); "
        f"threads {first.threads} → {final.threads} (max {max(s.threads for s in steady)})"
    )
    print(
        f"p99: first minute {results[0].p99_ms:.2f} ms, last {results[-1].p99_ms:.2f} ms "
        f"(×{results[-1].p99_ms / results[0].p99_ms:.2f}); median over minutes "
        f"{np.median([r.p99_ms for r in results]):.2f} ms; errors {sum(r.errors for r in results)}"
    )
    reloads = metric_value(metrics, "muse_config_reloads_total", outcome="ok")
    print(f"reloads: {args.minutes - 1} sent, {reloads:.0f} counted ok by the server")

    acked: set[str] = set()
    for window, mask in answered.items():
        for i in np.flatnonzero(np.frombuffer(bytes(mask), dtype=np.uint8)):
            acked.update(requests.event_ids(window, int(i)))
    table = ds.dataset(str(lake), format="parquet", partitioning="hive").to_table(
        columns=["event_id", "role"]
    )
    roles = Counter(table["role"].to_pylist())
    live = Counter(
        e
        for e, role in zip(table["event_id"].to_pylist(), table["role"].to_pylist(), strict=True)
        if role == "live"
    )
    missing = sum(1 for e in acked if e not in live)
    print(
        f"lake: {len(acked):,} events acknowledged; {len(acked) - missing:,} of them with a "
        f"live row, {missing} missing, {sum(1 for n in live.values() if n > 1)} twice, "
        f"{sum(1 for e in live if e not in acked)} unacknowledged; rows by role "
        f"{dict(roles)}; shadows shed "
        f"{metric_value(metrics, 'muse_shadow_shed_total'):.0f}"
    )
    closed = [line for line in output.splitlines() if "score lake" in line and "closed" in line]
    print(closed[-1].split("muse.scorelog: ")[-1] if closed else "lake close not logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
