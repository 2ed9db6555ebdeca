"""Benchmark: ``muse score-file`` on the quickstart, on one core (issue: backfill scoring).

A Parquet file of generated quickstart traffic (three tenants: bank1 served by the
3-model ensemble, bank2 and fintech3 by the LightGBM model with the ensemble in shadow —
so every event runs all three models once) is scored through the serving path into a
Parquet file of lake rows, the process pinned to one CPU (``sched_setaffinity``) and every
model runtime at one thread, as configured. Reported, as medians of interleaved repeats:

* ``score-file``: events per second of :func:`muse.backfill.score_file` end to end (read,
  check, route, models, transforms, rows, Parquet written and merged);
* ``score-file lz4``: the same, written with LZ4 instead of zstd (the service's codec);
* ``score-file no shadows``: live rows only (bank2's and fintech3's events then run one
  model, not three);
* ``models only``: the three models' ``predict`` on the same events (the floor no scoring
  path that runs every model on every event — the quickstart's, with its shadows — can
  beat on this core);
* ``replay (baseline)``: the previous way to fill a lake offline —
  ``ScoringService.score_batch`` + the service's row conversion + Arrow — on a slice of
  the same events, the ratio against ``score-file`` measured in the same run.

Target (issue): ≥ 200,000 events/s on one core for the quickstart.

Run: ``.venv/bin/python benchmarks/score_file.py [--events 1000000] [--repeats 3]``
(about a minute at a million events).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from muse.backfill import score_file
from muse.datasets import generate_events, make_tenants
from muse.features.table import FeatureTable
from muse.scorelog import rows_to_table
from muse.scorelog.results import result_rows
from muse.service import ScoringService

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "quickstart" / "muse.yaml"
TENANTS = ("bank1", "bank2", "fintech3")
TARGET = 200_000
REPLAY_EVENTS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})

    print(f"muse score-file benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"platform: {platform.platform()} | cpus: {os.cpu_count()} | pinned to CPU {args.cpu}")
    print(f"python: {sys.version.split()[0]} | numpy {np.__version__} | pyarrow {pa.__version__}")
    service = ScoringService.from_config(CONFIG)
    snap = service.snapshot
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tenants = make_tenants(len(TENANTS), seed=11, names=TENANTS)
        frame = generate_events(tenants, args.events, seed=3, days=7.0, drift=0.0)
        events = folder / "events.parquet"
        table = frame.to_arrow()
        pq.write_table(table, events)
        print(
            f"data: {args.events:,} events, {len(TENANTS)} tenants, {events.stat().st_size / 2**20:.0f} MiB Parquet; batch {args.batch_size:,}"
        )

        features = {
            f: table.column(f).to_numpy() for f in table.column_names if f in snap.known_features
        }
        matrices = {
            m: FeatureTable(features).matrix(b.feature_names) for m, b in snap.backends.items()
        }

        def backfill(k: int, *, shadows: bool = True, compression: str = "zstd") -> float:
            out = folder / f"out-{k}.parquet"
            started = time.perf_counter()
            report = score_file(
                snap, events, out=out, batch_size=args.batch_size, restart=True,
                shadows=shadows, compression=compression,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            assert report.scored == args.events
            assert report.rejected == 0
            rows.append(report.rows_written)
            out.unlink()
            return float(args.events / seconds)

        rows: list[int] = []

        def models(_: int) -> float:
            started = time.perf_counter()
            for m, b in snap.backends.items():
                b.predict(matrices[m])
            return float(args.events / (time.perf_counter() - started))

        replay_table = table.slice(0, REPLAY_EVENTS)
        intent_cols = [
            replay_table.column(a).to_pylist() for a in ("tenant", "geography", "channel", "schema")
        ]
        intents = [
            {"tenant": t, "geography": g, "channel": c, "schema": s}
            for t, g, c, s in zip(*intent_cols, strict=True)
        ]
        replay_features = {f: v[:REPLAY_EVENTS] for f, v in features.items()}
        ids = replay_table.column("event_id").to_pylist()
        stamps = replay_table.column("timestamp").to_pylist()

        def replay(_: int) -> float:
            started = time.perf_counter()
            results = service.score_batch(intents, replay_features, event_ids=ids)
            rows = [r for x, t in zip(results, stamps, strict=True) for r in result_rows(x, t)]
            rows_to_table(rows)
            return REPLAY_EVENTS / (time.perf_counter() - started)

        cases: dict[str, Callable[[int], float]] = {
            "score-file": backfill,
            "score-file lz4": partial(backfill, compression="lz4"),
            "score-file no shadows": partial(backfill, shadows=False),
            "models only": models,
            "replay (baseline)": replay,
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for k in range(args.repeats):
            for name, case in cases.items():
                samples[name].append(case(k))
    service.close()
    print()
    print(f"{'case':<22} {'events/s (median)':>18}   samples")
    med = {name: statistics.median(v) for name, v in samples.items()}
    for name, values in samples.items():
        print(f"{name:<22} {med[name]:>18,.0f}   {', '.join(f'{v:,.0f}' for v in values)}")
    print()
    ratio = med["score-file"] / med["replay (baseline)"]
    share = med["score-file"] / med["models only"]
    verdict = "PASS" if med["score-file"] >= TARGET else "MISS"
    print(
        f"score-file vs replay (baseline): {ratio:.1f}x; score-file runs at {share:.0%} of the models' own speed"
    )
    print(
        f"target >= {TARGET:,} events/s on one core: {verdict} ({med['score-file'] / TARGET:.2f}x)"
    )


if __name__ == "__main__":
    main()
