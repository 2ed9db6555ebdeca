"""Dependencies broken under load, with the score lake on: what fails, how fast it recovers,
and whether every acknowledged event reaches the lake exactly once.

``muse serve`` on the quickstart with a real Redis feature store (``tests/redis_server.py``)
and a Parquet lake; four client threads send single events for ``--seconds`` seconds,
half naming a card whose features the store provides (they need Redis), half carrying
every feature (they do not). Cases, one per run:

- ``redis``: Redis is killed (SIGKILL, by PID) a third of the way in and restarted on the
  same port a third later;
- ``sighup``: the config is reloaded by ``SIGHUP`` every 100 ms for the whole run.

Reported per case: requests sent, answered 200, failed by status and code (and whether
only the events that need the broken part failed), the time from Redis' restart to the
first store-backed success, and lake rows: events acknowledged vs distinct live rows
written, duplicates.

``python benchmarks/chaos.py [--case redis|sighup|all] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.e2e.support import SAMPLE, Deployment, MuseProcess, event  # noqa: E402
from tests.e2e.test_feature_store import LEAN, PREFIX, STORE_FEATURES, use_redis  # noqa: E402
from tests.redis_server import RedisServer, hset_rows  # noqa: E402

CARDS = [f"card-{i:05d}" for i in range(200)]


def load(
    url: str, stop: threading.Event, worker: int, acked: set[str], tally: Counter[str]
) -> None:
    """Single events until ``stop``: even ones need the store (lean, a card), odd ones not."""
    with httpx.Client(base_url=url, timeout=5.0) as client:
        i = 0
        while not stop.is_set():
            eid = f"w{worker}-{i}"
            needs = i % 2 == 0
            body = (
                event(eid, "bank1", LEAN, card_id=CARDS[i % len(CARDS)])
                if needs
                else event(eid, "bank1")
            )
            kind = "store" if needs else "full"
            try:
                r = client.post("/v1/score", json=body)
                if r.status_code == 200:
                    acked.add(eid)
                    tally[f"{kind} 200"] += 1
                else:
                    tally[f"{kind} {r.status_code} {r.json()['error']['code']}"] += 1
            except httpx.HTTPError as e:
                tally[f"{kind} {type(e).__name__}"] += 1
            i += 1
            time.sleep(0.002)


def run_case(case: str, seconds: float, root: Path) -> None:
    redis = RedisServer(root / "redis").start()
    d = Deployment.copy_quickstart(root / "deploy")
    use_redis(d, redis)
    lake = root / "lake"
    d.set_lake(str(lake), flush_interval_s=1)
    hset_rows(redis, PREFIX, {c: {f: SAMPLE[f] for f in STORE_FEATURES} for c in CARDS})
    server = MuseProcess(d.config, root / "serve.log").start()
    stop = threading.Event()
    acked: set[str] = set()
    tally: Counter[str] = Counter()
    threads = [
        threading.Thread(target=load, args=(server.url, stop, w, acked, tally)) for w in range(4)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    recovery = None
    hups = 0
    try:
        if case == "redis":
            time.sleep(seconds / 3)
            redis.kill()
            time.sleep(seconds / 3)
            redis.start()
            hset_rows(redis, PREFIX, {c: {f: SAMPLE[f] for f in STORE_FEATURES} for c in CARDS})
            restarted = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=5.0) as probe:
                n = 0
                while time.monotonic() - restarted < seconds:
                    n += 1
                    body = event(f"probe-{n}", "bank1", LEAN, card_id=CARDS[0])
                    if probe.post("/v1/score", json=body).status_code == 200:
                        recovery = time.monotonic() - restarted
                        acked.add(f"probe-{n}")
                        break
                    time.sleep(0.01)
            time.sleep(max(0.0, started + seconds - time.monotonic()))
        else:
            while time.monotonic() - started < seconds:
                os.kill(server.pid, signal.SIGHUP)
                hups += 1
                time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        server.stop_gracefully()
        redis.stop()
    table = ds.dataset(str(lake), format="parquet", partitioning="hive").to_table(
        columns=["event_id", "role"]
    )
    live = [
        e
        for e, r in zip(table["event_id"].to_pylist(), table["role"].to_pylist(), strict=True)
        if r == "live"
    ]
    written = Counter(live)
    acked_written = sum(1 for e in acked if e in written)
    sent = sum(tally.values())
    print(f"\n{case}: {sent:,} requests in {seconds:.0f} s")
    for key, n in sorted(tally.items()):
        print(f"  {key:<45} {n:>7,}")
    if case == "redis":
        print(
            f"  first store-backed 200 after Redis restarted: {recovery:.3f} s"
            if recovery
            else "  no recovery"
        )
    else:
        print(f"  SIGHUP reloads sent: {hups}")
    failed_full = sum(
        n for k, n in tally.items() if k.startswith("full ") and not k.endswith(" 200")
    )
    print(f"  events not needing the broken part that failed: {failed_full}")
    print(
        f"  lake: {len(acked):,} acknowledged, {acked_written:,} of them written, "
        f"{sum(1 for n in written.values() if n > 1)} written twice, "
        f"{len(written) - acked_written} written but not acknowledged"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("redis", "sighup", "all"), default="all")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={len(os.sched_getaffinity(0))} "
        f"python {platform.python_version()}"
    )
    for case in ("redis", "sighup") if args.case == "all" else (args.case,):
        with tempfile.TemporaryDirectory(prefix=f"muse-chaos-{case}-") as tmp:
            run_case(case, args.seconds, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
