"""Tenant maps at fleet scale: resident memory, load time and the precision kept.

Builds a copy of the quickstart with ``--tenants`` tenants, each with its own ``single-v1``
map (the quickstart's bank1 map refitted on that tenant's own generated traffic scores,
so knots differ per tenant), in a temporary folder, then measures:

1. **precision**: for ``--accuracy`` tenants, the relative alert-rate error at 1 % and
   0.1 % on held-out events of the tenant, with the full map and with the map thinned as
   served (``server.map_tolerance``, default 0.002) — the same maps before and after;
2. **footprint**: resident-set growth per map, full (``map_tolerance: 0``) and thinned,
   extrapolated to 10,000 maps (budget < 100 MB);
3. **start**: ``Deployment.start`` (load, build, check; warm-up off) of the whole config;
4. **promotion prepare**: with that version live, ``Deployment.prepare`` of a version in
   which 1,000 tenants got a new map (budget < 1 s), hard-linked like a store's unpacked
   version, so unchanged files are recognised.

``python benchmarks/bench_maps.py [--tenants 10000]`` (~1–2 min at 10,000 tenants).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.config_fixtures import Deployment as Quickstart  # noqa: E402

from muse.config import load_config  # noqa: E402
from muse.datasets import generate_events, make_tenants  # noqa: E402
from muse.deployment import Deployment  # noqa: E402
from muse.transforms import QuantileMap  # noqa: E402

BUDGET_MB = 100.0
PREPARE_BUDGET_S = 1.0


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tenant_scores(n_tenants: int, events: int, seed: int) -> list[np.ndarray]:
    """Raw aggregates of the quickstart's single-v1 predictor for tenants of different
    profiles (generated traffic), one array per profile."""
    from muse.service import ScoringService

    service = ScoringService.from_config(ROOT / "examples" / "quickstart" / "muse.yaml")
    predictor = service.snapshot.predictors["single-v1"]
    profiles = make_tenants(n_tenants, seed=seed)
    frame = generate_events(profiles, events * n_tenants, seed=seed, drift=0.0)
    # Raw aggregates (what a tenant's map is fitted on), scored as the service does.
    raw = predictor.score(dict(frame.features), "any-tenant").raw
    out = []
    tenant_of = np.asarray(frame.tenant)
    for name in np.unique(tenant_of):
        out.append(np.asarray(raw)[tenant_of == name])
    return out


def build(root: Path, n: int, maps: list[dict[str, object]], tolerance: float) -> Path:
    quickstart = Quickstart.copy_quickstart(root)
    doc = quickstart.doc()
    doc.setdefault("server", {})["warmup_events"] = 0
    doc["server"]["map_tolerance"] = tolerance
    quickstart.write(doc)
    base = json.loads(quickstart.artifact("single-v1", "bank1").read_text())
    for i in range(n):
        art = dict(base)
        art["tenant"] = f"t{i:05d}"
        art["map"] = maps[i % len(maps)]
        path = quickstart.artifact("single-v1", f"t{i:05d}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(art))
    return quickstart.config


def relink(src: Path, dest: Path, changed: int, maps: list[dict[str, object]]) -> Path:
    """``dest``: ``src`` hard-linked file by file (a store's unpacked version), with
    ``changed`` tenants given a v2 map."""
    for path in src.rglob("*"):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    for i in range(changed):
        v1 = dest / "transforms" / "single-v1" / "tenants" / f"t{i:05d}" / "v1.json"
        art = json.loads(v1.read_text())
        art["version"] = 2
        art["map"] = maps[(i + 1) % len(maps)]
        (v1.parent / "v2.json").write_text(json.dumps(art))
    return dest / "muse.yaml"


def child(config: Path) -> None:
    """Start ``config`` in this fresh process; print its start time and RSS growth."""
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    deployment = Deployment(config)
    deployment.start()
    seconds = time.perf_counter() - t0
    gc.collect()
    n_maps = sum(len(p.tenant_maps) + 1 for p in deployment.snapshot.predictors.values())
    print(json.dumps({"seconds": seconds, "grown": rss() - before, "maps": n_maps}))


def child_store(url: str, cache: Path) -> None:
    """A replica's cold start from a store, in this fresh process: unpack the active
    version (served maps included), then start it."""
    from muse.fleet import DeploymentStore

    store = DeploymentStore(url)
    t0 = time.perf_counter()
    active = store.active()
    assert active is not None
    config = store.materialize(str(active["version"]), cache)
    unpacked = time.perf_counter() - t0
    deployment = Deployment(config)
    deployment.start()
    seconds = time.perf_counter() - t0
    print(json.dumps({"unpack": unpacked, "seconds": seconds}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--child-store":
        child_store(sys.argv[2], Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--changed", type=int, default=1_000)
    ap.add_argument("--tolerance", type=float, default=0.002)
    ap.add_argument("--profiles", type=int, default=50, help="distinct fitted maps")
    args = ap.parse_args()
    print("muse tenant maps at fleet scale")
    print(f"platform: {platform.platform()} | python: {platform.python_version()}")
    print(f"tenants: {args.tenants:,} | changed in the promotion: {args.changed:,}")

    # 1. Precision: fit each profile's map on 50k events, judge on the rest.
    from muse.transforms import Reference

    reference = Reference.beta(0.8, 9.0)
    scores = tenant_scores(args.profiles, 120_000, seed=5)
    maps: list[dict[str, object]] = []
    errors: dict[float, tuple[list[float], list[float]]] = {0.01: ([], []), 0.001: ([], [])}
    knots = []
    for s in scores:
        fit, held = s[:50_000], s[50_000:]
        full = QuantileMap.fit(fit, reference)
        thin = full.compact(args.tolerance)
        knots.append((full.source.size, thin.source.size))
        maps.append(full.to_dict())
        for a, (e_full, e_thin) in errors.items():
            thr = float(reference.ppf(np.array([1 - a]))[0])
            e_full.append(float(np.mean(full(held) > thr)) / a - 1)
            e_thin.append(float(np.mean(thin(held) > thr)) / a - 1)
    print(
        f"\n1. precision ({len(scores)} tenants, fit on 50,000 events, judged on "
        f"{len(scores[0]) - 50_000:,}+; knots full → served: median "
        f"{statistics.median(k[0] for k in knots):.0f} → {statistics.median(k[1] for k in knots):.0f})"
    )
    print("   alert rate   median |rel. error| full   served   max |difference|")
    for a, (e_full, e_thin) in errors.items():
        diff = max(abs(x - y) for x, y in zip(e_full, e_thin, strict=True))
        print(
            f"   {a:>9.1%}   {statistics.median(map(abs, e_full)):>21.2%}   "
            f"{statistics.median(map(abs, e_thin)):>6.2%}   {diff:>16.3%}"
        )

    with tempfile.TemporaryDirectory(prefix="muse-maps-") as tmp:
        work = Path(tmp)
        # 2 + 3. Footprint and start, thinned and full.
        print("\n2-3. start and footprint (Deployment.start, warm-up off)")
        print("   maps served   start s   MiB for these maps   per map KiB   10,000 maps MiB")
        per_map = 0.0

        def start(config: Path) -> dict[str, float]:
            # A fresh process per case: RSS growth in this one would reuse freed memory.
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(config)],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            )
            got: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
            return got

        # The quickstart alone (models, runtimes): what the maps' growth is measured over.
        base = start(build(work / "base", 0, maps, args.tolerance))
        for label, tol in (("full", 0.0), ("thinned", args.tolerance)):
            config = build(work / label, args.tenants, maps, tol)
            got = start(config)
            grown = got["grown"] - base["grown"]
            per_map = grown / (got["maps"] - base["maps"])
            print(
                f"   {label:<11}   {got['seconds']:>7.2f}   {grown / 2**20:>18.0f}   "
                f"{per_map / 1024:>11.1f}   {per_map * 10_000 / 2**20:>15.0f}"
            )
        print(f"   (the quickstart alone: {base['seconds']:.2f} s; maps above are its tenants')")
        verdict = "PASS" if per_map * 10_000 / 2**20 < BUDGET_MB else "MISS"
        print(f"   10,000 thinned maps < {BUDGET_MB:.0f} MB -> {verdict}")
        # 3b. A replica's cold start from a deployment store (maps thinned at publish).
        from muse.fleet import DeploymentStore, publish
        from muse.fleet.promotion import promote

        t0 = time.perf_counter()
        store = DeploymentStore(work / "store")
        promote(store, publish(config, store).version.id, switch_delay_s=0)
        published = time.perf_counter() - t0
        done = subprocess.run(
            [sys.executable, __file__, "--child-store", store.url, str(work / "cache")],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        got = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"   from a store: unpack {got['unpack']:.2f} s + start "
            f"{got['seconds'] - got['unpack']:.2f} s = {got['seconds']:.2f} s "
            f"(muse publish of it: {published:.1f} s)"
        )
        deployment = Deployment(config)
        deployment.start()

        # 4. A promotion that changes `changed` maps, prepared beside the live version.
        new = relink(config.parent, work / "v2", args.changed, maps)
        t0 = time.perf_counter()
        prepared = deployment.prepare(new)
        seconds = time.perf_counter() - t0
        changed = sum(
            1
            for t, m in prepared.snapshot.predictors["single-v1"].tenant_maps.items()
            if m.version == "v2"
        )
        verdict = "PASS" if seconds < PREPARE_BUDGET_S else "MISS"
        print(
            f"\n4. prepare a version changing {changed:,} of {args.tenants:,} maps: "
            f"{seconds:.2f} s (budget < {PREPARE_BUDGET_S:.0f} s) -> {verdict}"
        )
        t0 = time.perf_counter()
        load_config(new)
        print(f"   (load_config of it alone, cache warm: {time.perf_counter() - t0:.2f} s)")
        deployment.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
