"""Benchmark: the cost of reason codes for the quickstart ensemble (issue: reason codes).

``ScoringService.explain`` (route, run the live models, each expert's TreeSHAP
contributions — m1 LightGBM ``pred_contrib``; m2 and m3, ONNX exports, through the LightGBM
and XGBoost models they came from — then through T^C, A and T^Q) against
``ScoringService.score`` of the same event without shadows, on bank1 (the 3-model
ensemble): the difference is what asking for reasons costs. Single events (the request
path) and a batch of 1,000 (per event). Medians of interleaved repeats, one CPU, every
model at one thread. Budget (issue): < 150 µs per event.

Run: ``.venv/bin/python benchmarks/reasons.py [--repeats 9]`` (about 20 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from muse.datasets import generate_events, make_tenants
from muse.features.table import FeatureTable
from muse.reasons import explain_batch
from muse.scoring import score_batch
from muse.service import ScoringService

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "quickstart" / "muse.yaml"
BUDGET_US = 150.0
SINGLES = 200
BATCH = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cpu", type=int, default=0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    print(f"muse reason codes benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"platform: {platform.platform()} | cpus: {os.cpu_count()} | pinned to CPU {args.cpu}")
    print(f"python: {sys.version.split()[0]} | numpy {np.__version__}")
    service = ScoringService.from_config(CONFIG)
    snap = service.snapshot
    tenants = make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3"))
    frame = generate_events(tenants, 20_000, seed=5, days=7.0, drift=0.0)
    bank1 = frame.select(frame.tenant == "bank1")
    known = snap.known_features
    rows = [
        {f: float(v[i]) for f, v in bank1.features.items() if f in known} for i in range(SINGLES)
    ]
    intent = {"tenant": "bank1"}
    batch = {f: v[:BATCH] for f, v in bank1.features.items() if f in known}
    intents = [intent] * BATCH

    def singles_score() -> float:
        started = time.perf_counter()
        for row in rows:
            service.score(intent, row, shadows=False)
        return (time.perf_counter() - started) / SINGLES * 1e6

    def singles_explain() -> float:
        started = time.perf_counter()
        for row in rows:
            service.explain(intent, row, top=3)
        return (time.perf_counter() - started) / SINGLES * 1e6

    table = FeatureTable(batch)

    def batch_score() -> float:
        started = time.perf_counter()
        score_batch(snap, intents, table, shadows=False)
        return (time.perf_counter() - started) / BATCH * 1e6

    def batch_explain() -> float:
        started = time.perf_counter()
        explain_batch(snap, intents, table, top=3)
        return (time.perf_counter() - started) / BATCH * 1e6

    cases = {
        "single: score": singles_score,
        "single: explain": singles_explain,
        f"batch {BATCH:,}: score": batch_score,
        f"batch {BATCH:,}: explain": batch_explain,
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            samples[name].append(case())
    service.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    print()
    print(f"{'case (bank1: ensemble-v1, 3 models)':<38} {'µs/event (median)':>18}")
    for name in cases:
        print(f"{name:<38} {med[name]:>18.1f}")
    single = med["single: explain"] - med["single: score"]
    per_batch = med[f"batch {BATCH:,}: explain"] - med[f"batch {BATCH:,}: score"]
    print()
    print(
        f"reasons cost, single event: {single:.1f} µs ({med['single: explain'] / med['single: score']:.2f}x the score)"
    )
    print(f"reasons cost, in a batch of {BATCH:,}: {per_batch:.1f} µs per event")
    worst = max(single, per_batch)
    print(
        f"budget < {BUDGET_US:.0f} µs per event: {'PASS' if worst < BUDGET_US else 'MISS'} (worst {worst:.1f} µs)"
    )


if __name__ == "__main__":
    main()
