"""Which events to refit a tenant's map on: a refit policy that adapts per tenant.

Walk-forward on real data shows no fixed window wins everywhere: the last period alone is
best under strong drift, pooled history where periods are small and the base rate swings,
long windows (a little) where nothing drifts. So the policy does not pick a window; it
lets the tenant's own history say how fast its scores move. Two methods:

``"local-level"`` (the default)
    A local-level model of the tenant's alert rate (:mod:`muse.fitting.local_level`):
    lasting drift against sampling noise (known from each period's size, Eq. 5) and
    swings that come back, by maximum likelihood. Each period's weight in the model's
    forecast becomes the weight of its events in the weighted fit: no drift found, every
    event alike (all history); strong drift, mostly the latest periods.

``"backtest"``
    Each *candidate* — the last ``k`` periods, all of them, or all of them with weights
    decaying by age — is backtested on the tenant's recent past: for each of the last
    ``backtest`` periods, fit on what came before it with the candidate's rule, map that
    period's raw aggregates, and measure the relative alert-rate error at the alert levels
    (``|observed / a − 1|`` at ``t_a = F_R⁻¹(1 − a)``; a level counts only once the period
    holds enough events to expect ``min_alerts`` alerts at it). Recent backtest periods
    weigh more (``recency_half_life``). The candidates within ``within_se`` paired
    standard errors of the best form a pool; if the widest candidate (all history) is in
    it, no drift is proven and the pool's widest wins, otherwise the best one does. It
    lost to ``"local-level"`` on the real-data walk-forward (``benchmarks/RESULTS.md``):
    small periods make the backtest itself noisy.

The chosen weights are fitted on all periods to serve the next one. A map is never fitted
on fewer events than its alert levels need (Eq. 5 at ``alert_rate``, ``rel_error``, ``z``,
on the weights' effective sample size): the local-level model is refitted with less drift
(a longer memory) until its weights have enough; backtest candidates short of events are left out. When not
even all history has enough, :func:`refresh_map` raises :class:`InsufficientSamplesError`
(or returns ``fallback``): the map in service — the cold-start default for a new tenant —
stays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.fitting.local_level import LocalLevel, local_levels
from muse.fitting.quantiles import InsufficientSamplesError
from muse.fitting.sample_size import required_samples
from muse.transforms._checks import as_finite
from muse.transforms.quantile import QuantileMap
from muse.transforms.reference import Reference
from muse.types import ScoreArray

__all__ = [
    "CANDIDATES",
    "METHODS",
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


METHODS = ("local-level", "backtest")


@dataclass(frozen=True, slots=True)
class RefreshChoice:
    """What the policy decided for one tenant, and why."""

    quantile_map: QuantileMap
    #: What the map was fitted on, for people: ``local-level m/k`` (the weighted events are
    #: worth ``m`` average periods of the ``k``; ``k/k``: every event alike) or a
    #: candidate's name.
    policy: str
    #: Each period's share of the fit's total weight (oldest first, sums to 1).
    period_weights: npt.NDArray[np.float64]
    n_events: int
    effective_events: float
    required: int
    #: The fitted local-level model (method ``"local-level"``).
    model: LocalLevel | None = None
    #: The candidate chosen (method ``"backtest"``).
    candidate: Candidate | None = None
    #: Mean backtest error of each candidate that could be fitted (name → error; NaN: the
    #: candidate never had enough events in the backtest). Empty for ``"local-level"``.
    backtest: dict[str, float] = field(default_factory=dict)


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
    method: str = "local-level",
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
    """Weigh the tenant's periods by ``method`` (see the module doc) and fit the next
    map on all of them. ``alert_rate`` is the level Eq. 5 guards (default: the most
    frequent of ``levels``, the one every tenant acts on); ``min_alerts`` the alerts a
    period must expect at a level for that level to count; ``backtest``,
    ``recency_half_life``, ``within_se`` and ``candidates`` tune method ``"backtest"``."""
    periods = [as_finite(w, f"windows[{i}]").ravel() for i, w in enumerate(windows)]
    if not periods:
        raise ValueError("windows is empty: give at least one period of raw aggregates")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not levels or not all(0.0 < a < 1.0 for a in levels):
        raise ValueError(f"levels must be alert rates in (0, 1), got {list(levels)!r}")
    if not candidates:
        raise ValueError("candidates is empty")
    if backtest < 0:
        raise ValueError(f"backtest must be >= 0, got {backtest!r}")
    guarded = max(levels) if alert_rate is None else alert_rate
    required = required_samples(guarded, rel_error, z)
    if method == "local-level":
        return _local_level(
            periods, reference, levels, required, guarded, rel_error, n_quantiles, min_alerts
        )

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
        policy=best.name,
        period_weights=_period_shares(best, periods),
        n_events=int(best.sample(periods)[0].size),
        effective_events=size,
        required=required,
        candidate=best,
        backtest=scores,
    )


def _local_level(
    periods: list[ScoreArray],
    reference: Reference,
    levels: Sequence[float],
    required: int,
    guarded: float,
    rel_error: float,
    n_quantiles: int,
    min_alerts: float,
) -> RefreshChoice:
    """Method ``"local-level"``: the model's period weights, with a longer memory only as
    far as Eq. 5 needs."""
    sizes = np.array([p.size for p in periods], dtype=np.float64)
    n = int(sizes.sum())
    if n < required:
        raise InsufficientSamplesError(n, required, alert_rate=guarded, rel_error=rel_error)
    # Per-event weight of each period, scaled so that all events together weigh n (the fit
    # reads total weight as sample size). Too few effective events: the best model with
    # less drift (a longer memory), down to none; all history at last.
    for model in local_levels(periods, levels, min_alerts=min_alerts):
        with np.errstate(divide="ignore", invalid="ignore"):
            per_event = np.where(sizes > 0, model.period_weights / sizes, 0.0) * n
        if _ess(per_event, sizes) >= required:
            break
    else:
        per_event = np.ones_like(sizes)  # not even without drift: every event alike
    scores = np.concatenate(periods)
    if np.allclose(per_event[sizes > 0], 1.0, rtol=0.0, atol=1e-9):
        # Every event alike: the plain pooled fit (weights of 1 ± rounding would shift the
        # weighted fit's integer positions).
        qmap = QuantileMap.fit(scores, reference, n_quantiles)
        n_used = scores.size
    else:
        weights = np.repeat(per_event, sizes.astype(np.int64))
        keep = weights > 0.0
        qmap = QuantileMap.fit(scores[keep], reference, n_quantiles, weights=weights[keep])
        n_used = int(keep.sum())
    shares = per_event * sizes / float(np.sum(per_event * sizes))
    effective = _ess(per_event, sizes)
    # "local-level 3.2/12": the fit is worth the events of 3.2 average periods of the 12
    # (12/12: every event alike, the pooled history).
    memory = effective * len(periods) / n
    policy = f"local-level {memory:.1f}/{len(periods)}"
    return RefreshChoice(
        quantile_map=qmap,
        policy=policy,
        period_weights=shares,
        n_events=int(n_used),
        effective_events=effective,
        required=required,
        model=model,
    )


def _ess(per_event: npt.NDArray[np.float64], sizes: npt.NDArray[np.float64]) -> float:
    """Kish's effective size of events weighted ``per_event[t]`` in period ``t``."""
    total = float(np.sum(per_event * sizes))
    squares = float(np.sum(per_event**2 * sizes))
    return total * total / squares if squares > 0 else 0.0


def _period_shares(candidate: Candidate, periods: Sequence[ScoreArray]) -> npt.NDArray[np.float64]:
    """Each period's share of a candidate's total weight."""
    k = len(periods)
    used = k if candidate.periods is None else min(k, candidate.periods)
    mass = np.zeros(k)
    for i in range(k - used, k):
        age = k - 1 - i
        w = 1.0 if candidate.half_life is None else 0.5 ** (age / candidate.half_life)
        mass[i] = w * periods[i].size
    total = float(mass.sum())
    return mass / total if total > 0 else mass


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

    Options are :func:`choose_refresh`'s (``levels``, ``method``, ``alert_rate``,
    ``rel_error``, ``z``, ``min_alerts``, ``n_quantiles``; ``backtest``,
    ``recency_half_life``, ``within_se``, ``candidates`` for method ``"backtest"``) and
    ``fallback``: a map
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
