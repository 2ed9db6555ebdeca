"""Benchmark: ``Router.route`` cost does not grow with the number of tenant rules.

The router is on the request path of every event (paper §2.5.1: routing must add
"negligible overhead"), and tenants are the dimension that grows (§2.5.1 (4)). This
script builds routers with 10, 1,000 and 10,000 per-tenant scoring rules, plus a few
geography/schema rules, a catch-all and shadow rules for some tenants, and times
``route`` for a tenant early in the list, one near the end, and an unknown tenant that
falls through to the catch-all. A naive linear first-match scan is timed for contrast.

Run: ``.venv/bin/python benchmarks/bench_routing.py`` (about 5-10 s).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from muse.routing import Route, Router

SIZES = (10, 1_000, 10_000)
REPEATS = 7
LOOPS = 20_000
LINEAR_LOOPS = 30
Key = TypeVar("Key")
SINGULAR = {
    "tenants": "tenant",
    "geographies": "geography",
    "schemas": "schema",
    "channels": "channel",
}


def routing_block(n_tenants: int) -> dict[str, Any]:
    """Figure 2-shaped block: one rule per tenant, then region rules, then a catch-all."""
    scoring: list[dict[str, Any]] = [
        {
            "description": f"Custom DAG for tenant-{i}",
            "condition": {"tenants": [f"tenant-{i}"]},
            "targetPredictorName": f"tenant-{i}-predictor-v1",
        }
        for i in range(n_tenants)
    ]
    scoring += [
        {
            "description": "Americas, schema v1",
            "condition": {"geographies": ["NAMER", "LATAM"], "schemas": ["fraud_v1"]},
            "targetPredictorName": "america-predictor-v1",
        },
        {
            "description": "Europe, schema v2",
            "condition": {"geographies": ["EMEA"], "schemas": ["fraud_v2"]},
            "targetPredictorName": "europe-predictor-v2",
        },
        {
            "description": "Card-present traffic in APAC",
            "condition": {"geographies": ["APAC"], "channels": ["pos"]},
            "targetPredictorName": "apac-pos-predictor-v1",
        },
        {
            "description": "Default DAG for cold start clients",
            "condition": {},
            "targetPredictorName": "global-predictor-v3",
        },
    ]
    # Shadow rules for every 100th tenant and for the first and last one.
    shadowed = sorted({0, n_tenants - 1, *range(0, n_tenants, 100)})
    shadow = [
        {
            "description": f"Evaluate v2 in shadow mode for tenant-{i}",
            "condition": {"tenants": [f"tenant-{i}"]},
            "targetPredictorNames": [f"tenant-{i}-predictor-v2"],
        }
        for i in shadowed
    ]
    return {"scoringRules": scoring, "shadowRules": shadow}


def cases(n_tenants: int) -> dict[str, dict[str, str]]:
    """Intents to time; every one carries all four default attributes, like real traffic."""
    base = {"geography": "EMEA", "schema": "fraud_v1", "channel": "ecom"}
    return {
        "early tenant": {"tenant": "tenant-0", **base},  # has a shadow rule
        "late tenant": {"tenant": f"tenant-{n_tenants - 2}", **base},
        "unknown tenant": {"tenant": "tenant-unknown", **base},
    }


def linear_route(block: Mapping[str, Any], intent: Mapping[str, str]) -> str:
    """The naive alternative: scan every scoring rule in order (what the index avoids)."""
    for rule in block["scoringRules"]:
        condition = rule["condition"]
        if all(intent.get(SINGULAR[k]) in v for k, v in condition.items()):
            target: str = rule["targetPredictorName"]
            return target
    raise LookupError(intent)


def mean_ns(call: Callable[[], object], loops: int) -> float:
    """Mean time of one call over ``loops`` calls (includes ~20-40 ns of loop/lambda cost)."""
    start = time.perf_counter_ns()
    for _ in range(loops):
        call()
    return (time.perf_counter_ns() - start) / loops


def median_ns(calls: Mapping[Key, Callable[[], object]], loops: int) -> dict[Key, float]:
    """Median over REPEATS of :func:`mean_ns` per call.

    Repeats are interleaved across all calls, so background load on a shared machine hits
    every size alike instead of skewing whichever size happened to run during it.
    """
    samples: dict[Key, list[float]] = {key: [] for key in calls}
    for _ in range(REPEATS):
        for key, call in calls.items():
            samples[key].append(mean_ns(call, loops))
    return {key: statistics.median(values) for key, values in samples.items()}


def bind(router: Router, intent: Mapping[str, str]) -> Callable[[], Route]:
    """A zero-argument call of ``router.route(intent)`` (a bound method: no extra frame)."""
    return lambda: router.route(intent)


def build_time_ms(block: Mapping[str, Any], repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        Router.from_config(block)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def main() -> None:
    began = time.perf_counter()
    print(f"muse.routing benchmark: Router.route ns/call, median of {REPEATS} interleaved repeats")
    print(
        f"platform: {platform.platform()} | machine: {platform.machine()} | cpus: {os.cpu_count()}"
    )
    print(f"python: {sys.version.split()[0]} ({platform.python_implementation()})")
    print()

    routers: dict[int, Router] = {}
    blocks: dict[int, dict[str, Any]] = {}
    for n in SIZES:
        blocks[n] = routing_block(n)
        routers[n] = Router.from_config(blocks[n])

    calls = {
        (n, case): bind(routers[n], intent) for n in SIZES for case, intent in cases(n).items()
    }
    timings = median_ns(calls, LOOPS)
    print(f"{'tenants':>7} {'n_rules':>8}  {'case':<15} {'ns/route':>9}  {'vs 10':>6}  route")
    for (n, case), ns in timings.items():
        route = routers[n].route(cases(n)[case])
        shadows = f" +shadow {','.join(route.shadows)}" if route.shadows else ""
        print(
            f"{n:>7} {len(routers[n].scoring_rules):>8}  {case:<15} {ns:>9.0f}  "
            f"{ns / timings[SIZES[0], case]:>5.2f}x  {route.live}{shadows}"
        )
    print()

    n = SIZES[-1]
    intent = cases(n)["late tenant"]
    linear = statistics.median(
        mean_ns(lambda: linear_route(blocks[n], intent), LINEAR_LOOPS) for _ in range(REPEATS)
    )
    indexed = timings[n, "late tenant"]
    print(
        f"naive linear scan, {len(routers[n].scoring_rules)} rules, late tenant: "
        f"{linear / 1000:,.0f} us/route ({linear / indexed:,.0f}x the indexed router)"
    )
    print(
        f"construction, {len(routers[n].scoring_rules)} scoring + "
        f"{len(routers[n].shadow_rules)} shadow rules (from_config, median of 3): "
        f"{build_time_ms(blocks[n]):.0f} ms"
    )
    print(f"total benchmark time: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
