"""Resident memory of tenant quantile maps (ARCHITECTURE budget: 10,000 maps < 100 MB).

Loads ``N`` copies of a realistic 1,000-knot map through ``QuantileMap.from_dict`` (as a
deployment does from its artifacts) and reports the growth of the process's resident set,
per map and extrapolated to 10,000 maps.
"""

from __future__ import annotations

import gc
import platform

import numpy as np

from muse.transforms import QuantileMap, Reference

BUDGET_MB = 100.0
N_MAPS = 2_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main() -> None:
    print("muse quantile-map memory benchmark")
    print(f"platform: {platform.platform()} | python: {platform.python_version()}")
    rng = np.random.default_rng(0)
    doc = QuantileMap.fit(rng.beta(2.0, 30.0, 200_000), Reference.beta(0.8, 9.0)).to_dict()
    knots = len(doc["source"])
    gc.collect()
    before = rss_bytes()
    maps = [QuantileMap.from_dict(doc) for _ in range(N_MAPS)]
    gc.collect()
    per_map = (rss_bytes() - before) / len(maps)
    projected = per_map * 10_000 / 2**20
    verdict = "PASS" if projected < BUDGET_MB else "MISS"
    print(f"maps: {N_MAPS:,} of {knots} knots | per map: {per_map / 1024:.1f} KiB")
    print(f"10,000 maps: {projected:.0f} MiB (budget < {BUDGET_MB:.0f} MB) -> {verdict}")


if __name__ == "__main__":
    main()
