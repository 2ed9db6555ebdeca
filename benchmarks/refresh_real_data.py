"""Which events should a tenant's map be refitted on? A walk-forward on real data.

For each public data set (``muse.datasets.public``: insurance claims, bank marketing, card
payments) and each seed: a LightGBM model is trained once on the first third of the
periods, then deployed; for every later period ``t`` a map is fitted on the periods seen
since deployment by each policy, and judged on period ``t`` by the relative alert-rate
error at fixed reference thresholds (``|observed / a − 1|`` at ``t_a = F_R⁻¹(1 − a)``,
averaged over the levels ``a`` at which period ``t`` expects at least 10 alerts):

- fixed policies: the last period, all history, decayed history (half-life 1 and 3
  periods), the last 4 periods;
- **auto**: ``muse.fitting.refresh_map`` with its defaults (method ``"local-level"``: a
  local-level model of the tenant's alert rate weighs its periods; when it has too few
  events for Eq. 5 it keeps serving the all-history map, its fallback);
- **backtest**: the same with method ``"backtest"`` (the candidates above backtested on
  the tenant's recent periods, one picked);
- **floor**: the sampling noise no policy can beat, even with no drift at all —
  the median of ``|N(0, σ)|``, ``0.6745 σ`` with ``σ = √((1 − a)/a · (1/n_fit + 1/n_eval))``
  and ``n_fit`` all history (appendix A), averaged over the judged levels.

Reports per data set the median |error| over seeds × periods of each policy, its ratio to
the best fixed policy and to the floor, and how auto and backtest weighed the periods (backtest: the candidate it chose; auto: all, most (over half the periods' worth of weight) or about k periods).
``python benchmarks/refresh_real_data.py [--seeds 5] [--data PATH]`` (~3 min).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from muse.datasets.public import PublicDataset, load_public  # noqa: E402
from muse.fitting import InsufficientSamplesError, choose_refresh  # noqa: E402
from muse.fitting.refresh import Candidate, RefreshChoice, alert_rate_error  # noqa: E402
from muse.transforms import QuantileMap, Reference  # noqa: E402
from muse.types import ScoreArray  # noqa: E402

R = Reference.beta(0.8, 9.0)
LEVELS = (0.10, 0.05, 0.02)
MIN_ALERTS = 10.0
# The policy's own defaults unless overridden (for exploring its options).
BACKTEST = int(os.environ.get("MUSE_BACKTEST", "8"))
HALF_LIFE = float(os.environ.get("MUSE_RECENCY", "2")) or None
WITHIN_SE = float(os.environ.get("MUSE_WITHIN_SE", "1"))
FIRST_EVALUATED = 2  # periods of deployment history before the first judged period
Policy = Callable[[Sequence[ScoreArray]], QuantileMap]


def fixed(candidate: Candidate) -> Policy:
    def fit(history: Sequence[ScoreArray]) -> QuantileMap:
        scores, weights = candidate.sample(history)
        return QuantileMap.fit(scores, R, weights=weights)

    return fit


FIXED: dict[str, Policy] = {
    "last": fixed(Candidate("last-1", periods=1)),
    "last-4": fixed(Candidate("last-4", periods=4)),
    "all": fixed(Candidate("all")),
    "decay-1": fixed(Candidate("decay-1", half_life=1.0)),
    "decay-3": fixed(Candidate("decay-3", half_life=3.0)),
}


def train(data: PublicDataset, cut: int, seed: int) -> ScoreArray:
    """Raw scores of every row from a model trained on the periods before ``cut``."""
    rows = data.period < cut
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_data_in_leaf": 20,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }
    booster = lgb.train(
        params, lgb.Dataset(data.features[rows], label=data.labels[rows]), num_boost_round=150
    )
    return np.asarray(booster.predict(data.features), dtype=np.float64)


def floor(n_fit: int, n_eval: int) -> float:
    levels = [a for a in LEVELS if n_eval * a >= MIN_ALERTS]
    if not levels:
        return math.nan
    # median |N(0, σ)| = 0.6745 σ: comparable with the policies' medians
    return float(
        np.mean([0.6745 * math.sqrt((1 - a) / a * (1 / n_fit + 1 / n_eval)) for a in levels])
    )


def _label(choice: RefreshChoice) -> str:
    """What a choice fitted on, coarsely: how many periods' worth of weight it used."""
    if choice.candidate is not None:
        return choice.candidate.name
    memory = 1.0 / float(np.sum(np.square(choice.period_weights)))
    share = memory / choice.period_weights.size
    return "all" if share > 0.95 else "most" if share > 0.5 else f"~{min(4, math.ceil(memory))}"


def walk(
    data: PublicDataset,
    seed: int,
    errors: dict[str, list[float]],
    chosen: dict[str, Counter[str]],
) -> None:
    cut = data.n_periods // 3
    raw = train(data, cut, seed)
    windows = [raw[data.period == p] for p in range(cut, data.n_periods)]
    for t in range(FIRST_EVALUATED, len(windows)):
        history, target = windows[:t], windows[t]
        labels: dict[str, str] = {}
        row: dict[str, float] = {
            name: alert_rate_error(policy(history), target, R, LEVELS, min_alerts=MIN_ALERTS)
            for name, policy in FIXED.items()
        }
        for method in ("local-level", "backtest"):
            try:
                choice = choose_refresh(
                    history,
                    R,
                    levels=LEVELS,
                    min_alerts=MIN_ALERTS,
                    method=method,
                    backtest=BACKTEST,
                    recency_half_life=HALF_LIFE,
                    within_se=WITHIN_SE,
                )
                qmap, label = choice.quantile_map, _label(choice)
            except InsufficientSamplesError:
                qmap, label = FIXED["all"](history), "fallback"
            key = "auto" if method == "local-level" else "backtest"
            row[key] = alert_rate_error(qmap, target, R, LEVELS, min_alerts=MIN_ALERTS)
            labels[key] = label
        row["floor"] = floor(int(sum(w.size for w in history)), int(target.size))
        if math.isnan(row["auto"]):
            continue  # the period is too small to judge any level
        for key, label in labels.items():
            chosen[key][label] += 1
        row["period"] = float(t)
        for name, value in row.items():
            errors.setdefault(name, []).append(value)


def ratio_interval(
    errors: dict[str, list[float]], name: str, baseline: str, rounds: int = 2000
) -> tuple[float, float]:
    """90 % interval of median(name) / median(baseline), by a bootstrap that resamples
    whole periods (every seed's row of a period together: seeds share the period's data,
    so their errors are not independent)."""
    period = np.array(errors["period"])
    a, b = np.array(errors[name]), np.array(errors[baseline])
    groups = [np.flatnonzero(period == p) for p in np.unique(period)]
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(rounds):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        ratios.append(np.median(a[rows]) / np.median(b[rows]))
    low, high = np.quantile(ratios, [0.05, 0.95])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--datasets", default="insurance,bank,cards")
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d')} {platform.machine()} cores={len(os.sched_getaffinity(0))} "
        f"python {platform.python_version()} numpy {np.__version__} lightgbm {lgb.__version__}"
    )
    print(
        f"levels {LEVELS}, a level judged with >= {MIN_ALERTS:.0f} expected alerts; seeds {args.seeds}"
    )
    verdicts = []
    for name in args.datasets.split(","):
        started = time.perf_counter()
        data = load_public(name, args.data)
        errors: dict[str, list[float]] = {}
        chosen: dict[str, Counter[str]] = {"auto": Counter(), "backtest": Counter()}
        for seed in range(args.seeds):
            walk(data, seed, errors, chosen)
        medians = {k: statistics.median(v) for k, v in errors.items() if k != "period"}
        best_name = min(FIXED, key=lambda k: medians[k])
        best = medians[best_name]
        print(
            f"\n{name}: {data.features.shape[0]:,} rows, {data.n_periods} periods (model on the "
            f"first {data.n_periods // 3}), {len(errors['auto'])} judged period×seed "
            f"({time.perf_counter() - started:.0f} s)"
        )
        print(f"  {'policy':<10}{'median |err|':>14}{'p90':>8}{'/ best fixed':>14}{'/ floor':>9}")
        for k in (*FIXED, "auto", "backtest", "floor"):
            v = errors[k]
            p90 = float(np.quantile(v, 0.9))
            print(
                f"  {k:<10}{medians[k]:>14.3f}{p90:>8.3f}{medians[k] / best:>14.2f}"
                f"{medians[k] / medians['floor']:>9.2f}"
            )
        for key, counts in chosen.items():
            total = sum(counts.values())
            share = ", ".join(f"{k} {n / total:.0%}" for k, n in counts.most_common())
            print(f"  {key} weighed: {share}")
        low, high = ratio_interval(errors, "auto", best_name)
        print(
            f"  auto / {best_name}: {medians['auto'] / best:.2f} "
            f"(90 % interval, periods resampled: {low:.2f}–{high:.2f})"
        )
        ok_best = medians["auto"] <= best
        ok_floor = medians["auto"] <= 1.3 * medians["floor"]
        verdicts.append(
            f"{name}: auto {medians['auto']:.3f} vs best fixed ({best_name}) {best:.3f} -> "
            f"{'PASS' if ok_best else 'MISS'}; vs 1.3 x floor {1.3 * medians['floor']:.3f} -> "
            f"{'PASS' if ok_floor else 'MISS'}"
        )
    print("\ntargets: auto's median no worse than the best fixed policy's, within 1.3x the floor")
    for line in verdicts:
        print("  " + line)


if __name__ == "__main__":
    main()
