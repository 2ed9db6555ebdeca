"""How fast the operator console answers with 1,000 tenants and a lake of 10 M rows.

Set-up: the quickstart published and active in a local store; a score lake of ``--rows``
rows (default 10 M) over ``--tenants`` tenants (default 1,000) and 14 days, written as
Parquet with the lake's own schema and layout (100,000 rows per file): live rows of
``single-v1`` (most tenants) and ``ensemble-v1`` (every tenth), scores drawn from the
reference R so the tenants are aligned, and shadow rows of ``ensemble-v1`` for 50 tenants.
``muse console``'s app is served by uvicorn in this process and asked over real HTTP.

Measured: the first read of the lake (summarising every file once: the console's start-up
cost, paid in the background), a refresh with no new file (what every ``--refresh`` costs),
the memory of the summaries, and for each page the median and p95 of ``--repeat`` requests
(server-rendered HTML, after one warm-up request). The issue's budget: every page < 300 ms.

``python benchmarks/console_pages.py [--rows 10000000] [--tenants 1000] [--repeat 20]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from muse.config import load_config  # noqa: E402
from muse.console.app import create_app  # noqa: E402
from muse.console.state import ConsoleState  # noqa: E402
from muse.fleet import DeploymentStore, publish  # noqa: E402
from muse.fleet.promotion import promote  # noqa: E402
from muse.scorelog.layout import partition_dir  # noqa: E402
from muse.scorelog.record import LAKE_SCHEMA  # noqa: E402

QUICKSTART = ROOT / "examples" / "quickstart" / "muse.yaml"
ROWS_PER_FILE = 100_000
DAYS = 14
START = datetime(2026, 11, 1, tzinfo=UTC)


def write_lake(lake: Path, rows: int, tenants: int, seed: int = 1) -> None:
    """``rows`` lake rows in files of ``ROWS_PER_FILE``, one (day, predictor) per file."""
    config = load_config(QUICKSTART)
    reference = config.references[config.spec.predictors["single-v1"].reference]
    rng = np.random.default_rng(seed)
    names = np.array([f"tenant-{i:04d}" for i in range(tenants)])
    epoch_day = (START - datetime(1970, 1, 1, tzinfo=UTC)).days
    written = 0
    n_file = 0
    while written < rows:
        n = min(ROWS_PER_FILE, rows - written)
        day = n_file % DAYS
        if n_file % 10 == 9:  # a tenth of the files: ensemble-v1 in shadow for 50 tenants
            predictor, role = "ensemble-v1", "shadow"
            tenant = names[rng.integers(0, min(50, tenants), n)]
        else:  # the routes send every one of these tenants to single-v1
            predictor, role = "single-v1", "live"
            tenant = names[rng.integers(0, tenants, n)]
        scores = reference.ppf(rng.random(n))
        micros = np.int64((START + timedelta(days=day)).timestamp() * 1e6) + rng.integers(
            0, 86_400_000_000, n
        )
        one_each = pa.array(np.arange(n + 1, dtype=np.int32))
        table = pa.table(
            {
                "event_id": pa.array(np.char.add(f"f{n_file}-", np.arange(n).astype(str))),
                "timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
                "tenant": pa.array(tenant, pa.string()),
                "intent": pa.MapArray.from_arrays(
                    one_each, pa.array(np.full(n, "tenant")), pa.array(tenant, pa.string())
                ),
                "predictor": pa.array(np.full(n, predictor)),
                "role": pa.array(np.full(n, role)),
                "fingerprint": pa.array(np.full(n, config.fingerprints[predictor])),
                "tq_version": pa.array(np.full(n, "default-v0")),
                "raw": pa.array(scores, pa.float64()),
                "score": pa.array(scores, pa.float64()),
                "experts": pa.MapArray.from_arrays(
                    one_each, pa.array(np.full(n, "m1")), pa.array(scores, pa.float64())
                ),
                "latency_ms": pa.array(np.full(n, 0.5), pa.float64()),
                "config_version": pa.array(np.full(n, "quickstart-1")),
            }
        ).cast(LAKE_SCHEMA)
        folder = Path(partition_dir(str(lake), epoch_day + day, predictor))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{n_file:05d}.parquet", compression="zstd")
        written += n
        n_file += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={len(os.sched_getaffinity(0))} "
        f"python {platform.python_version()}; {args.rows:,} rows, {args.tenants:,} tenants",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="muse-console-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_lake(root / "lake", args.rows, args.tenants)
        print(f"lake written in {time.perf_counter() - t:.1f} s", flush=True)
        store = DeploymentStore(root / "store")
        version = publish(QUICKSTART, store, by="bench").version.id
        promote(store, version, timeout_s=5, by="bench")
        state = ConsoleState(
            store, root / "cache", lake=str(root / "lake"), refresh_s=3600, max_candidate_tenants=50
        )
        state._candidates_due = float("inf")  # the lake first, the candidates apart
        t = time.perf_counter()
        snap = state.refresh()
        first = time.perf_counter() - t
        assert snap.summary is not None
        held = snap.summary._counts
        summary_mb = sum(c.nbytes for c in held.values()) / 2**20
        state._candidates_due = 0.0
        t = time.perf_counter()
        snap = state.refresh()
        candidates = time.perf_counter() - t
        assert snap.summary is not None
        state._candidates_due = float("inf")
        t = time.perf_counter()
        state.refresh()
        again = time.perf_counter() - t
        print(
            f"first read of the lake: {snap.summary.rows_read:,} rows in "
            f"{snap.summary.files_read} files summarised in {first:.1f} s "
            f"({snap.summary.rows_read / first / 1e6:.2f} M rows/s), {len(held):,} histograms "
            f"of {next(iter(held.values())).size} bins = {summary_mb:.1f} MiB; candidates "
            f"({len(snap.candidates)} tenants, DuckDB): {candidates:.1f} s; a refresh with no "
            f"new file (the tenants table included): {again * 1e3:.0f} ms",
            flush=True,
        )
        app = create_app(state, secret="x" * 32, start_state=False)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        pages = [
            "/fleet",
            "/routing?tenant=tenant-0007",
            "/tenants",
            "/tenants?days=14",
            "/tenants/tenant-0010?days=14",
            "/candidates",
            "/refresh",
        ]
        worst = 0.0
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                for path in pages:
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code)
                    times = []
                    for _ in range(args.repeat):
                        t = time.perf_counter()
                        r = client.get(path)
                        times.append(time.perf_counter() - t)
                    times.sort()
                    median = statistics.median(times) * 1e3
                    p95 = times[int(0.95 * (len(times) - 1))] * 1e3
                    worst = max(worst, p95)
                    print(
                        f"  {path:<32} median {median:7.1f} ms  p95 {p95:7.1f} ms  "
                        f"{len(r.content) / 1024:6.0f} KiB",
                        flush=True,
                    )
        finally:
            server.should_exit = True
            thread.join(10)
        verdict = "PASS" if worst < 300 else "MISS"
        print(f"worst p95 {worst:.0f} ms: {verdict} (budget 300 ms per page)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
