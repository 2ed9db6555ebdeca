"""The fleet: promotion timings behind a real load balancer, and the idle cost of following.

Starts 3 replicas of the quickstart (``muse serve --store``; 1, 2 and 2 worker processes:
5 replicas in the store's eyes) behind Debian's haproxy, under a bounded load of single
and batch requests, and measures, over ``--rounds`` promotions alternating two versions:

- **promote → last switch**: from calling ``promote`` to the moment the last replica's
  heartbeat names the new version (the prepare phase, the switch delay, the poll);
- **prepare phase**: what ``promote`` waited for every replica to prepare;
- **mixed-version window**: from the version headers of the load — from the first
  request the new version answered to the last one the old version answered;
- failed requests.

Then a promotion that changes **1,000 tenant maps** on the same fleet (``--tenants``:
the quickstart with that many extra tenants' maps, so every replica holds them), and the
**idle cost of following** the store: the CPU one idle ``muse serve --store`` replica uses,
against one idle ``muse serve CONFIG`` (same config), both for ``--idle`` seconds.

``python benchmarks/bench_fleet.py [--layout 1,2,2]`` (~3 min): ``--layout`` gives each
replica's worker processes (``1,1,1``: three single-process replicas, so that on a
2-core machine the replicas compete less for CPU while they prepare). Every process is
stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.config_fixtures import SAMPLE_EVENT  # noqa: E402
from tests.config_fixtures import Deployment as Quickstart  # noqa: E402
from tests.e2e.support import MuseProcess, free_port  # noqa: E402
from tests.fleet.versions import publish_renamed  # noqa: E402

from muse.fleet import DeploymentStore  # noqa: E402
from muse.fleet.promotion import live_replicas, promote  # noqa: E402
from muse.testing.haproxy import start_haproxy  # noqa: E402
from muse.testing.load import ScoreLoad, mixed_window  # noqa: E402

#: Replica → its worker processes (``--layout``).
REPLICAS = {"r0": 1, "r1": 2, "r2": 2}
WORKERS = sum(REPLICAS.values())


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` and their children (by /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    seen = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return total


def add_tenants(q: Quickstart, n: int, version: int) -> None:
    """``n`` extra tenants with their own single-v1 map (version ``version``)."""
    base = json.loads(q.artifact("single-v1", "bank1").read_text())
    for i in range(n):
        art = dict(base, tenant=f"t{i:05d}", version=version)
        art["map"] = dict(base["map"])
        # A different map per version: targets nudged, still within [0, 1] and monotone.
        art["map"]["target"] = [v * (1 - 0.001 * version) for v in base["map"]["target"]]
        path = q.artifact("single-v1", f"t{i:05d}", version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(art))


def wait_all(store: DeploymentStore, version: str, timeout: float) -> float:
    """Seconds until every live replica's heartbeat names ``version`` (or the timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        beats = live_replicas(store, 2.0)
        if len(beats) >= WORKERS and all(b.get("version") == version for b in beats.values()):
            return time.monotonic() - t0
        time.sleep(0.01)
    raise SystemExit(f"replicas did not all reach {version} in {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--tenants", type=int, default=1_000)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--poll", type=float, default=0.25)
    ap.add_argument("--layout", default="1,2,2", help="worker processes of each of the 3 replicas")
    args = ap.parse_args()
    global WORKERS
    for name, n in zip(REPLICAS, args.layout.split(","), strict=True):
        REPLICAS[name] = int(n)
    WORKERS = sum(REPLICAS.values())
    print("muse fleet benchmark")
    print(f"platform: {platform.platform()} | python: {platform.python_version()}")
    print(
        f"replicas: 3 ({WORKERS} worker processes: {args.layout}) behind haproxy | "
        f"poll {args.poll} s | "
        f"switch delay 1 s | rounds {args.rounds}"
    )
    with tempfile.TemporaryDirectory(prefix="muse-fleet-bench-") as tmp:
        root = Path(tmp)
        q = Quickstart.copy_quickstart(root / "deploy")
        store = DeploymentStore(root / "store")
        add_tenants(q, args.tenants, 1)
        versions = [
            publish_renamed(q, store, "bench-a"),
            publish_renamed(q, store, "bench-b"),
        ]
        promote(store, versions[0], switch_delay_s=0)
        servers: list[MuseProcess] = []
        balancer = None
        try:
            for name, workers in REPLICAS.items():
                extra = ["--replica", name] if workers == 1 else []
                server = MuseProcess(
                    None,
                    root / f"{name}.log",
                    [
                        "--store", store.url, "--lake", str(root / "lake"),
                        "--cache", str(root / "cache"), "--poll", str(args.poll),
                        "--workers", str(workers), *extra,
                    ],
                )  # fmt: skip
                servers.append(server.start())
            balancer = start_haproxy(
                root / "haproxy",
                free_port(),
                [(n, s.port) for n, s in zip(REPLICAS, servers, strict=True)],
                check_interval_ms=100,
            )
            wait_all(store, versions[0], 60)
            rows = []
            current = 0
            with ScoreLoad(
                balancer.url, SAMPLE_EVENT, threads=3, pause_s=0.004, max_seconds=600
            ) as load:
                load.wait_for(200)
                for _ in range(args.rounds):
                    old, new = versions[current], versions[1 - current]
                    first = len(load.snapshot())  # this round's answers start here
                    t0 = time.monotonic()
                    result = promote(store, new, timeout_s=60, liveness_s=2.0)
                    assert result.activated, result
                    wait_all(store, new, 30)
                    last = time.monotonic()
                    load.wait_for(200)
                    answers = load.snapshot()[first:]
                    rows.append((result.seconds, last - t0, mixed_window(answers, old, new)))
                    current = 1 - current
            answers = load.snapshot()
            failed = [a for a in answers if not a.ok]
            print(f"\npromotions under load: {len(answers):,} requests, {len(failed)} failed")
            print("   round   prepare s   promote→last switch s   mixed window ms")
            for i, (prep, last, window) in enumerate(rows, 1):
                print(f"   {i:>5}   {prep:>9.2f}   {last:>21.2f}   {window * 1e3:>15.1f}")
            print(
                f"  median   {statistics.median(r[0] for r in rows):>9.2f}   "
                f"{statistics.median(r[1] for r in rows):>21.2f}   "
                f"{statistics.median(r[2] for r in rows) * 1e3:>15.1f}"
            )
            print(f"     max   {'':>9}   {'':>21}   {max(r[2] for r in rows) * 1e3:>15.1f}")

            # A promotion changing every extra tenant's map (1,000 by default).
            add_tenants(q, args.tenants, 2)
            many = publish_renamed(q, store, "bench-many")
            t0 = time.monotonic()
            result = promote(store, many, timeout_s=120, liveness_s=2.0)
            assert result.activated, result
            wait_all(store, many, 60)
            last = time.monotonic() - t0
            own = sorted(
                float(doc["seconds"])
                for name in store.list_json("promotions", result.promotion)
                if (doc := store.read_json("promotions", result.promotion, f"{name}.json"))
                and doc.get("seconds") is not None
            )
            print(
                f"\na promotion changing {args.tenants:,} tenant maps ({WORKERS} replicas, "
                f"{os.cpu_count()} cores): "
                f"prepare {result.seconds:.2f} s, promote→last switch {last:.2f} s "
                f"(budget: prepare < 1 s -> {'PASS' if result.seconds < 1.0 else 'MISS'})"
            )
            print(
                "   each replica's own prepare (unpack, load, build, check, warm), s: "
                + ", ".join(f"{x:.2f}" for x in own)
                + f" — {WORKERS} processes preparing at once on {os.cpu_count()} cores"
            )
        finally:
            for server in servers:
                server.stop()
            if balancer is not None:
                balancer.stop()

        # Idle cost: one follower against one plain server, same config, no traffic.
        follower = MuseProcess(
            None,
            root / "idle-follower.log",
            ["--store", store.url, "--lake", str(root / "lake"), "--cache",
             str(root / "cache"), "--poll", str(args.poll), "--replica", "idle"],
        )  # fmt: skip
        plain = MuseProcess(q.config, root / "idle-plain.log")
        try:
            follower.start()
            plain.start()
            time.sleep(2.0)  # past start-up work
            a0, b0 = cpu_seconds([follower.pid]), cpu_seconds([plain.pid])
            time.sleep(args.idle)
            a1, b1 = cpu_seconds([follower.pid]), cpu_seconds([plain.pid])
        finally:
            follower.stop()
            plain.stop()
        fa, fb = (a1 - a0) / args.idle, (b1 - b0) / args.idle
        print(
            f"\nidle for {args.idle:.0f} s: follower {fa * 100:.2f} % of a core, plain server "
            f"{fb * 100:.2f} % -> following costs {(fa - fb) * 100:.2f} % of a core "
            f"({(fa - fb) * 1e3 / (1 / args.poll):.2f} ms of CPU per poll)"
        )


if __name__ == "__main__":
    main()
