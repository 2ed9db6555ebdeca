"""Benchmark: the score transforms T^C + A + T^Q, on a 1M-event batch and per single event.

Every event muse scores goes through these transforms (paper §2.3, Eq. 2), once for the
live predictor and once per shadow, so ARCHITECTURE budgets them: on a batch >= 10 M
events/s on one core, and < 5 µs for a single event. This script measures:

* batch, 1,000,000 events, 3 experts (β = 0.18, 0.18, 0.02, equal weights), Beta-distributed
  raw scores and a :class:`QuantileMap` fitted with the default 1,000-level grid onto
  ``Reference.beta(0.8, 9)``:
  - each public, checked step alone (``posterior_correction`` per expert, ``weighted_mean``,
    ``QuantileMap.__call__``) and the three chained;
  - the predictor's unchecked path, ``Predictor.aggregate`` + ``QuantileMap.map_unchecked``
    (a Predictor built on fake backends: only the transforms run), and ``score_outputs``
    (which adds ``np.column_stack`` and the result object) for context;
  - the numpy primitives that dominate those paths, to show what bounds them.
* single event: ``Predictor.score_outputs`` on 1-element arrays (the service's call),
  the scalar arithmetic ``Predictor._score_one`` alone, ``QuantileMap.map_one`` alone, and
  the vectorised ``QuantileMap`` paths on a 1-element array for comparison.

numpy is pinned to one BLAS thread with threadpoolctl when installed (elementwise ufuncs
and ``searchsorted`` are single-threaded anyway). Timings are medians of interleaved
repeats, so background load on a shared machine hits every case alike.

Run: ``.venv/bin/python benchmarks/bench_transforms.py`` (about 15-30 s).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from muse.predictor import Expert, Predictor, TenantMap
from muse.transforms import QuantileMap, Reference, posterior_correction, weighted_mean
from muse.types import FeatureMatrix, ScoreArray

N_EVENTS = 1_000_000
BETAS = (0.18, 0.18, 0.02)
WEIGHTS = (1.0, 1.0, 1.0)
# Raw (undersampled, so inflated) expert scores: dense near 0 with a long tail, one
# distribution per expert so the experts disagree as real ones do.
RAW_BETA = ((0.7, 4.0), (0.9, 5.0), (0.5, 2.5))
SEED = 20261122
TENANT = "bank1"

REPEATS = 9  # interleaved repeats per case (fewer if the time budget runs out)
MIN_REPEATS = 3
SINGLE_LOOPS = 20_000  # calls per repeat for single-event cases
MAX_SECONDS = 45.0  # stop repeating (after MIN_REPEATS) once the run has taken this long

BATCH_BUDGET = 10e6  # events/s/core, T^C + A + T^Q on a batch
SINGLE_BUDGET_US = 5.0  # µs per single event


class FakeBackend:
    """Just enough of a ModelBackend for a Predictor: the benchmark never calls ``predict``."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def kind(self) -> str:
        return "fake"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ("x",)

    @property
    def digest(self) -> str:
        return "sha256:" + self._name.encode().hex().ljust(64, "0")

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        return np.full(features.shape[0], 0.5)


@dataclass(frozen=True)
class Case:
    """One timed call. ``n`` events per call; ``budget`` is "events/s" (batch) or "us" (single)."""

    group: str
    name: str
    call: Callable[[], object]
    n: int
    loops: int
    budget: str | None = None  # "batch" / "single" / None (informational row)


def machine_info() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"platform: {platform.platform()} | machine: {platform.machine()} | "
        f"cpus: {os.cpu_count()} | cpu: {cpu}",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()}) | "
        f"numpy: {np.__version__}",
    ]


@contextlib.contextmanager
def single_threaded() -> Iterator[str]:
    """Pin numpy's BLAS/OpenMP pools to one thread if threadpoolctl is installed."""
    try:
        from threadpoolctl import (  # type: ignore[import-untyped]
            threadpool_info,
            threadpool_limits,
        )
    except ImportError:
        yield "threadpoolctl not installed: thread pools NOT pinned (ufuncs are 1-thread anyway)"
        return
    with threadpool_limits(limits=1):
        pools = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info())
        yield f"thread pools pinned to 1 via threadpoolctl ({pools or 'none loaded'})"


def mean_s(call: Callable[[], object], loops: int) -> float:
    """Mean seconds per call over ``loops`` calls (includes ~30 ns of loop/lambda cost)."""
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return (time.perf_counter() - start) / loops


def median_s(cases: list[Case], deadline: float) -> dict[str, tuple[float, int]]:
    """Median seconds per call of every case, repeats interleaved across cases.

    Stops early (after MIN_REPEATS) once ``deadline`` (a perf_counter value) has passed.
    Returns case name -> (median seconds, repeats taken).
    """
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    for case in cases:  # warm-up: first-call allocations, lazy imports, caches
        case.call()
    for r in range(REPEATS):
        for case in cases:
            samples[case.name].append(mean_s(case.call, case.loops))
        if r + 1 >= MIN_REPEATS and time.perf_counter() > deadline:
            break
    return {k: (statistics.median(v), len(v)) for k, v in samples.items()}


def make_predictor(qm: QuantileMap) -> Predictor:
    experts = tuple(
        Expert(model=f"m{k + 1}", backend=FakeBackend(f"m{k + 1}"), beta=b, weight=w)
        for k, (b, w) in enumerate(zip(BETAS, WEIGHTS, strict=True))
    )
    tmap = TenantMap(qm, "v1")
    return Predictor(name="bench", experts=experts, default_map=tmap, tenant_maps={TENANT: tmap})


def checked_chain(columns: list[ScoreArray], qm: QuantileMap) -> ScoreArray:
    """T^C, A, T^Q through the public, input-checking functions."""
    corrected = np.column_stack(
        [posterior_correction(c, b) for c, b in zip(columns, BETAS, strict=True)]
    )
    return qm(weighted_mean(corrected, WEIGHTS))


def verdict(case: Case, seconds: float) -> tuple[str, str, str]:
    """(rate column, budget column, verdict) for one case."""
    if case.n == 1:
        us = seconds * 1e6
        rate = f"{us:8.3f} us/evt"
        if case.budget == "single":
            return rate, f"< {SINGLE_BUDGET_US:g} us", "PASS" if us < SINGLE_BUDGET_US else "MISS"
        return rate, "-", "info"
    eps = case.n / seconds
    rate = f"{eps / 1e6:8.2f} M evt/s"
    if case.budget == "batch":
        return rate, f">= {BATCH_BUDGET / 1e6:g} M/s", "PASS" if eps >= BATCH_BUDGET else "MISS"
    return rate, "-", "info"


def print_table(cases: list[Case], timings: Mapping[str, tuple[float, int]]) -> None:
    header = f"{'case':<52} {'n':>9} {'median':>11} {'rate':>17} {'budget':>12} {'verdict':>7}"
    group = None
    print(header)
    print("-" * len(header))
    for case in cases:
        if case.group != group:
            group = case.group
            print(f"[{group}]")
        seconds, _ = timings[case.name]
        shown = f"{seconds * 1e3:8.2f} ms" if case.n > 1 else f"{seconds * 1e6:8.3f} us"
        rate, budget, mark = verdict(case, seconds)
        print(f"  {case.name:<50} {case.n:>9,} {shown:>11} {rate:>17} {budget:>12} {mark:>7}")


def main() -> None:
    began = time.perf_counter()
    deadline = began + MAX_SECONDS
    print(
        "muse.transforms benchmark: T^C + A + T^Q, 3 experts "
        f"(beta {', '.join(map(str, BETAS))}), median of up to {REPEATS} interleaved repeats"
    )
    for line in machine_info():
        print(line)

    with single_threaded() as threads:
        print(threads)
        rng = np.random.default_rng(SEED)
        columns = [rng.beta(a, b, N_EVENTS) for a, b in RAW_BETA]  # model outputs: 1-D each
        raw = np.column_stack(columns)  # (n, 3), C order: what score_outputs builds
        corrected = np.column_stack(
            [posterior_correction(c, b) for c, b in zip(columns, BETAS, strict=True)]
        )
        agg = weighted_mean(corrected, WEIGHTS)
        qm = QuantileMap.fit(agg, Reference.beta(0.8, 9.0))  # default 1,000-level grid
        predictor = make_predictor(qm)
        outputs = dict(zip(predictor.models, columns, strict=True))
        print(f"quantile map: {qm.source.size} knots fitted on {qm.n_samples:,} aggregates")

        # The timed paths must compute the same scores (else the comparison is moot).
        fast = qm.map_unchecked(predictor.aggregate(raw))
        if not np.array_equal(fast, checked_chain(columns, qm)):
            raise AssertionError("unchecked and checked pipelines disagree")
        i = int(np.argmax(agg > np.quantile(agg, 0.99)))  # a tail event: a real T^Q lookup
        one = [float(c[i]) for c in columns]
        if predictor._score_one(one, qm)[0] != fast[i]:
            raise AssertionError("scalar and vectorised paths disagree")
        print(f"single event: raw {[round(x, 4) for x in one]} -> score {fast[i]:.6f}")
        print()

        # Locals bound for the lambdas (attribute lookups are part of what a caller pays).
        source = qm.source
        x_clipped = np.clip(agg, source[0], source[-1])
        x_sorted = np.sort(x_clipped)
        aggregate, map_unchecked = predictor.aggregate, qm.map_unchecked
        col0 = columns[0]
        n = N_EVENTS
        batch: list[Case] = [
            Case(
                "batch: checked public functions",
                "T^C posterior_correction x 3 experts",
                lambda: [posterior_correction(c, b) for c, b in zip(columns, BETAS, strict=True)],
                n,
                1,
            ),
            Case(
                "batch: checked public functions",
                "A   weighted_mean (n, 3)",
                lambda: weighted_mean(corrected, WEIGHTS),
                n,
                1,
            ),
            Case(
                "batch: checked public functions", "T^Q QuantileMap.__call__", lambda: qm(agg), n, 1
            ),
            Case(
                "batch: checked public functions",
                "T^C + A + T^Q chained (checked)",
                lambda: checked_chain(columns, qm),
                n,
                1,
                "batch",
            ),
            Case(
                "batch: predictor fast path (unchecked)",
                "Predictor.aggregate (T^C + A)",
                lambda: aggregate(raw),
                n,
                1,
            ),
            Case(
                "batch: predictor fast path (unchecked)",
                "QuantileMap.map_unchecked (T^Q)",
                lambda: map_unchecked(agg),
                n,
                1,
            ),
            Case(
                "batch: predictor fast path (unchecked)",
                "aggregate + map_unchecked (T^C + A + T^Q)",
                lambda: map_unchecked(aggregate(raw)),
                n,
                1,
                "batch",
            ),
            Case(
                "batch: predictor fast path (unchecked)",
                "score_outputs (+ column_stack, result)",
                lambda: predictor.score_outputs(outputs, TENANT),
                n,
                1,
            ),
            Case(
                "batch: numpy primitives (what bounds it)",
                "T^C one expert, unchecked arithmetic",
                lambda: np.divide(col0 * 0.18, (1.0 - col0) + col0 * 0.18),
                n,
                1,
            ),
            Case(
                "batch: numpy primitives (what bounds it)",
                "A: raw.min(axis=1) + raw.max(axis=1), (n, 3)",
                lambda: (raw.min(axis=1), raw.max(axis=1)),
                n,
                1,
            ),
            Case(
                "batch: numpy primitives (what bounds it)",
                "A: np.minimum/np.maximum over 3 columns",
                lambda: (
                    np.minimum(np.minimum(columns[0], columns[1]), columns[2]),
                    np.maximum(np.maximum(columns[0], columns[1]), columns[2]),
                ),
                n,
                1,
            ),
            Case(
                "batch: numpy primitives (what bounds it)",
                "T^Q: searchsorted(1000 knots), unsorted keys",
                lambda: np.searchsorted(source, x_clipped, side="right"),
                n,
                1,
            ),
            Case(
                "batch: numpy primitives (what bounds it)",
                "T^Q: searchsorted(1000 knots), sorted keys",
                lambda: np.searchsorted(source, x_sorted, side="right"),
                n,
                1,
            ),
        ]

        one_outputs = {m: np.array([x]) for m, x in zip(predictor.models, one, strict=True)}
        x_agg = float(agg[i])
        x_arr = np.array([x_agg])
        score_one, score_outputs, map_one = (
            predictor._score_one,
            predictor.score_outputs,
            qm.map_one,
        )
        loops = SINGLE_LOOPS
        single: list[Case] = [
            Case(
                "single event (scalar path)",
                "score_outputs incl. result object (info)",
                lambda: score_outputs(one_outputs, TENANT),
                1,
                loops,
                None,
            ),
            Case(
                "single event (scalar path)",
                "_score_one(raws, qm): T^C + A + T^Q floats",
                lambda: score_one(one, qm),
                1,
                loops,
                "single",
            ),
            Case(
                "single event (scalar path)",
                "QuantileMap.map_one(x)",
                lambda: map_one(x_agg),
                1,
                loops,
            ),
            Case(
                "single event (vectorised, for comparison)",
                "QuantileMap.__call__(array([x]))",
                lambda: qm(x_arr),
                1,
                loops,
            ),
            Case(
                "single event (vectorised, for comparison)",
                "QuantileMap.map_unchecked(array([x]))",
                lambda: map_unchecked(x_arr),
                1,
                loops,
            ),
            Case(
                "single event (vectorised, for comparison)",
                "aggregate(1x3) + map_unchecked",
                lambda: map_unchecked(aggregate(raw[i : i + 1])),
                1,
                loops,
            ),
        ]

        cases = batch + single
        timings = median_s(cases, deadline)

    repeats = sorted({r for _, r in timings.values()})
    print_table(cases, timings)
    print()
    print(
        f"repeats per case: {'/'.join(map(str, repeats))} (median reported); single-event rows: "
        f"mean of {SINGLE_LOOPS:,} calls per repeat, loop cost (~30 ns) included"
    )
    print(f"total benchmark time: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
