"""Which events to refit a tenant's map on: a refit policy that adapts per tenant.

Walk-forward on real data shows no fixed window wins everywhere: the last period alone is
best under strong drift, pooled history where periods are small and the base rate swings,
long windows (a little) where nothing drifts. So the policy does not pick a window;
it lets the tenant's own history pick one. Each *candidate* — the last ``k`` periods, all of
them, or all of them with weights decaying by age — is backtested on the tenant's recent
past: for each of the last ``backtest`` periods, fit on what came before it with the
candidate's rule, map that period's raw aggregates, and measure the relative alert-rate
error at the alert levels (``|observed / a − 1|`` at ``t_a = F_R⁻¹(1 − a)``; a level counts
only once the period holds enough events to expect ``min_alerts`` alerts at it). Recent
backtest periods weigh more (``recency_half_life``): after a regime change the older ones
mislead. Then:

- the candidates that do as well as the best one within ``within_se`` standard errors of
  their paired difference (the periods' own noise is common to both) form a pool;
- if the widest candidate (the most effective events: all history) is in the pool, no drift
  is proven and the pool's widest wins — small periods make the backtest itself noisy, and
  noise must not buy a narrow window;
- otherwise drift is proven and the best candidate wins.

The winner is fitted on all periods to serve the next one.

A candidate is never fitted on fewer events than its alert levels need (Eq. 5 at
``alert_rate``, ``rel_error``, ``z``, on the weights' effective sample size); when no
candidate can be, :func:`refresh_map` raises :class:`InsufficientSamplesError` (or returns
``fallback``): the map in service — the cold-start default for a new tenant — stays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.fitting.quantiles import InsufficientSamplesError
from muse.fitting.sample_size import required_samples
from muse.transforms._checks import as_finite
from muse.transforms.quantile import QuantileMap
from muse.transforms.reference import Reference
from muse.types import ScoreArray

__all__ = [
    "CANDIDATES",
    "Candidate",
    "RefreshChoice",
    "alert_rate_error",
    "choose_refresh",
    "effective_size",
    "refresh_map",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule for what to fit on: the last ``periods`` periods (``None``: all), each
    event weighted ``0.5 ** (age / half_life)`` by its period's age (``None``: equally)."""

    name: str
    periods: int | None = None
    half_life: float | None = None

    def sample(self, windows: Sequence[ScoreArray]) -> tuple[ScoreArray, ScoreArray | None]:
        """The scores this rule fits on out of ``windows`` (oldest first), and their weights."""
        used = list(windows if self.periods is None else windows[-self.periods :])
        scores = np.concatenate(used) if used else np.empty(0)
        if self.half_life is None:
            return scores, None
        ages = np.concatenate(
            [np.full(w.size, len(used) - 1 - i, dtype=np.float64) for i, w in enumerate(used)]
        )
        return scores, 0.5 ** (ages / self.half_life)


#: The rules the policy chooses among (``candidates=`` replaces them).
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("last-1", periods=1),
    Candidate("last-2", periods=2),
    Candidate("last-4", periods=4),
    Candidate("all"),
    Candidate("decay-1", half_life=1.0),
    Candidate("decay-3", half_life=3.0),
)


@dataclass(frozen=True, slots=True)
class RefreshChoice:
    """What the policy decided for one tenant, and why."""

    quantile_map: QuantileMap
    candidate: Candidate
    #: Mean backtest error of each candidate that could be fitted (name → error; NaN: the
    #: candidate never had enough events in the backtest).
    backtest: dict[str, float]
    n_events: int
    effective_events: float
    required: int


def effective_size(weights: ScoreArray | None, n: int) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``: what a weighted sample is worth."""
    if weights is None:
        return float(n)
    total = float(weights.sum())
    return total * total / float(np.square(weights).sum()) if total > 0 else 0.0


def alert_rate_error(
    quantile_map: QuantileMap,
    raw: npt.ArrayLike,
    reference: Reference,
    levels: Sequence[float],
    *,
    min_alerts: float = 10.0,
) -> float:
    """Mean ``|observed / a − 1|`` over the ``levels`` at which ``raw`` (one period's raw
    aggregates) expects at least ``min_alerts`` alerts; NaN when none does."""
    x = as_finite(raw, "raw").ravel()
    mapped = np.sort(quantile_map(x))
    errors = []
    for a in levels:
        if x.size * a < min_alerts:
            continue
        threshold = float(reference.ppf([1.0 - a])[0])
        observed = (mapped.size - np.searchsorted(mapped, threshold, side="right")) / mapped.size
        errors.append(abs(observed / a - 1.0))
    return float(np.mean(errors)) if errors else math.nan


def choose_refresh(
    windows: Sequence[npt.ArrayLike],
    reference: Reference,
    *,
    levels: Sequence[float] = (0.05, 0.01, 0.005),
    alert_rate: float | None = None,
    rel_error: float = 0.2,
    z: float = 1.96,
    backtest: int = 8,
    recency_half_life: float | None = 2.0,
    within_se: float = 1.0,
    min_alerts: float = 10.0,
    candidates: Sequence[Candidate] = CANDIDATES,
    n_quantiles: int = 1000,
) -> RefreshChoice:
    """Backtest each candidate on the tenant's recent periods and fit the best on all of
    them (see the module doc). ``alert_rate`` is the level Eq. 5 guards (default: the
    most frequent of ``levels``, the one every tenant acts on); ``backtest`` how many of the
    latest periods to score the candidates on."""
    periods = [as_finite(w, f"windows[{i}]").ravel() for i, w in enumerate(windows)]
    if not periods:
        raise ValueError("windows is empty: give at least one period of raw aggregates")
    if not candidates:
        raise ValueError("candidates is empty")
    if backtest < 0:
        raise ValueError(f"backtest must be >= 0, got {backtest!r}")
    guarded = max(levels) if alert_rate is None else alert_rate
    required = required_samples(guarded, rel_error, z)

    def fit(candidate: Candidate, history: Sequence[ScoreArray]) -> QuantileMap | None:
        scores, weights = candidate.sample(history)
        if effective_size(weights, scores.size) < required:
            return None
        return QuantileMap.fit(scores, reference, n_quantiles, weights=weights)

    targets = range(max(1, len(periods) - backtest), len(periods))
    # Each candidate's error on each backtest period (NaN: not enough events to fit or judge).
    errors: dict[str, npt.NDArray[np.float64]] = {}
    for candidate in candidates:
        row = []
        for t in targets:
            qmap = fit(candidate, periods[:t])
            row.append(
                math.nan
                if qmap is None
                else alert_rate_error(qmap, periods[t], reference, levels, min_alerts=min_alerts)
            )
        errors[candidate.name] = np.array(row, dtype=np.float64)
    # Recent backtest periods count more: after a regime change the older ones mislead.
    ages = np.arange(len(targets) - 1, -1, -1, dtype=np.float64)
    recency = np.ones_like(ages) if recency_half_life is None else 0.5 ** (ages / recency_half_life)
    scores = {name: _weighted_mean(e, recency) for name, e in errors.items()}

    fitted: list[tuple[Candidate, QuantileMap, float]] = []
    for candidate in candidates:
        qmap = fit(candidate, periods)
        if qmap is not None:
            sample, weights = candidate.sample(periods)
            fitted.append((candidate, qmap, effective_size(weights, sample.size)))
    if not fitted:
        n = int(sum(p.size for p in periods))
        raise InsufficientSamplesError(n, required, alert_rate=guarded, rel_error=rel_error)
    scored = [f for f in fitted if not math.isnan(scores[f[0].name])]
    if scored:
        top = min(scored, key=lambda f: scores[f[0].name])[0].name
        pool = [f for f in scored if _as_good(errors[f[0].name], errors[top], recency, within_se)]
        widest = max(scored, key=lambda f: f[2])
        if widest not in pool:
            # Drift is proven (pooling everything does worse than noise explains): follow
            # the best candidate rather than the widest of those near it.
            pool = [f for f in scored if f[0].name == top]
    else:
        pool = fitted  # nothing could be backtested (one period): fit on the most events
    best, qmap, size = max(pool, key=lambda f: f[2])
    return RefreshChoice(
        quantile_map=qmap,
        candidate=best,
        backtest=scores,
        n_events=int(best.sample(periods)[0].size),
        effective_events=size,
        required=required,
    )


def _weighted_mean(errors: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    ok = np.isfinite(errors)
    if not ok.any():
        return math.nan
    return float(np.average(errors[ok], weights=weights[ok]))


def _as_good(
    errors: npt.NDArray[np.float64],
    best: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    within_se: float,
) -> bool:
    """Does a candidate do as well as the best one within the backtest's own noise? Paired
    on the periods both were judged on (the periods' noise is common to both): the weighted
    mean excess error is at most one standard error of it (on the weights' effective
    number of periods)."""
    both = np.isfinite(errors) & np.isfinite(best)
    d, w = errors[both] - best[both], weights[both]
    if d.size == 0:
        return False
    mean = float(np.average(d, weights=w))
    if d.size == 1:
        return mean <= 0.0
    spread = math.sqrt(float(np.average((d - mean) ** 2, weights=w)) * d.size / (d.size - 1))
    return mean <= within_se * spread / math.sqrt(effective_size(w, d.size))


def refresh_map(
    windows: Sequence[npt.ArrayLike], reference: Reference, **options: Any
) -> QuantileMap:
    """The map to serve next period for one tenant, from its raw aggregates (what T^Q
    receives) in consecutive periods, oldest first: :func:`choose_refresh`'s choice.

    Options are :func:`choose_refresh`'s (``levels``, ``alert_rate``, ``rel_error``, ``z``,
    ``backtest``, ``min_alerts``, ``candidates``, ``n_quantiles``) and ``fallback``: a map
    to return when no candidate has the events Eq. 5 asks for (without it,
    :class:`InsufficientSamplesError` is raised and the map in service should stay).
    """
    fallback = options.pop("fallback", None)
    if fallback is not None and not isinstance(fallback, QuantileMap):
        raise TypeError(f"fallback must be a QuantileMap, got {type(fallback).__name__}")
    try:
        return choose_refresh(windows, reference, **options).quantile_map
    except InsufficientSamplesError:
        if fallback is not None:
            return fallback
        raise
