"""Resident memory of tenant quantile maps (ARCHITECTURE budget: 10,000 maps < 100 MB).

Loads ``N`` copies of a realistic 1,000-knot map through ``QuantileMap.from_dict`` (as a
deployment does from its artifacts) and reports the growth of the process's resident set,
per map and extrapolated to 10,000 maps: whole, and thinned as served
(``QuantileMap.compact(0.002)``, ``server.map_tolerance``). The maps alone; what a served
tenant costs with its artifact's provenance: ``bench_maps.py``.
"""

from __future__ import annotations

import gc
import platform
import subprocess
import sys

import numpy as np

from muse.transforms import QuantileMap, Reference

BUDGET_MB = 100.0
N_MAPS = 2_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure(label: str) -> None:
    """In this fresh process: RSS growth of ``N_MAPS`` maps, whole or thinned."""
    rng = np.random.default_rng(0)
    doc = QuantileMap.fit(rng.beta(2.0, 30.0, 200_000), Reference.beta(0.8, 9.0)).to_dict()
    knots = len(doc["source"])
    tolerance = 0.002 if label == "thinned" else 0.0
    gc.collect()
    before = rss_bytes()
    maps = [QuantileMap.from_dict(doc).compact(tolerance) for _ in range(N_MAPS)]
    gc.collect()
    per_map = (rss_bytes() - before) / len(maps)
    projected = per_map * 10_000 / 2**20
    verdict = "PASS" if projected < BUDGET_MB else "MISS"
    print(
        f"{label:>8}: {N_MAPS:,} maps of {maps[0].source.size} knots (fitted: {knots}) | "
        f"per map: {per_map / 1024:.1f} KiB | 10,000 maps: {projected:.0f} MiB "
        f"(budget < {BUDGET_MB:.0f} MB) -> {verdict}"
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        measure(sys.argv[2])
        return
    print("muse quantile-map memory benchmark")
    print(f"platform: {platform.platform()} | python: {platform.python_version()}")
    for label in ("whole", "thinned"):  # each in a fresh process: freed memory is reused
        subprocess.run([sys.executable, __file__, "--case", label], check=True, timeout=300)


if __name__ == "__main__":
    main()
