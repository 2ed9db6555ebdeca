"""Is a tenant still on its reference? The drift monitor's verdict on one window of final
scores (paper §5: "closed-loop distribution drift monitoring").

The score contract says a threshold ``t`` alerts on ``1 − F_R(t)`` of a tenant's traffic.
The monitor checks exactly that at the tenant's alert levels ``a`` (its configured
thresholds, else :data:`DEFAULT_LEVELS`): at the reference threshold ``t_a = F_R⁻¹(1 − a)``
it counts the alerts ``k`` among the window's ``n`` events. A level is *judged* only when
``n`` reaches Eq. 5 for (``a``, ``rel_error``, ``z``) — below that the observed rate is
mostly sampling noise (appendix A) — and it *drifts* when the observed rate is off by more
than ``rel_error`` of ``a`` **and** its Wilson interval excludes ``a`` (the deviation is
both large enough to matter and not noise). The verdict per tenant:

- ``drifting``: at least one judged level drifts;
- ``aligned``: levels were judged and none drifts;
- ``too_few_events``: no level has enough events to be judged.

One distribution distance rides along for the whole curve: the Kolmogorov–Smirnov statistic
of the final scores against R (``sup |F_n − F_R|``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from muse.evaluation.metrics import wilson_interval
from muse.fitting.sample_size import required_samples
from muse.transforms._checks import as_finite
from muse.transforms.reference import Reference

__all__ = [
    "DEFAULT_LEVELS",
    "DriftVerdict",
    "LevelCheck",
    "Verdict",
    "drift_verdict",
    "judge_alert_counts",
    "level_threshold",
]

#: Alert levels judged for a tenant without thresholds of its own.
DEFAULT_LEVELS: tuple[float, ...] = (0.05, 0.01, 0.005, 0.001)

Verdict = Literal["aligned", "drifting", "too_few_events"]


@dataclass(frozen=True, slots=True)
class LevelCheck:
    """One alert level: what R promises, what the window shows, and whether it was judged."""

    level: float
    threshold: float
    n: int
    alerts: int
    observed: float
    low: float
    high: float
    required: int
    judged: bool
    drifting: bool

    @property
    def relative_error(self) -> float:
        """``observed / level − 1``: +0.2 means 20 % more alerts than promised."""
        return self.observed / self.level - 1.0


@dataclass(frozen=True, slots=True)
class DriftVerdict:
    """The monitor's verdict on one window, with every figure that led to it."""

    verdict: Verdict
    n: int
    levels: tuple[LevelCheck, ...]
    ks: float

    @property
    def reason(self) -> str:
        """One line an operator reads: which levels moved, or why nothing was judged."""
        if self.verdict == "too_few_events":
            need = min(c.required for c in self.levels)
            return f"{self.n:,} events: no alert level judged (the least demanding needs {need:,})"
        parts = [
            f"{c.level:.2%}: {c.observed:.3%} [{c.low:.3%}, {c.high:.3%}]"
            for c in self.levels
            if c.drifting or (self.verdict == "aligned" and c.judged)
        ]
        head = "drifting at" if self.verdict == "drifting" else "aligned at"
        return f"{head} " + "; ".join(parts) + f" (KS {self.ks:.3f}, {self.n:,} events)"


def drift_verdict(
    final_scores: npt.ArrayLike,
    reference: Reference,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    rel_error: float = 0.2,
    z: float = 1.96,
) -> DriftVerdict:
    """The verdict on one tenant's window of *final* (mapped) scores against ``reference``.

    ``levels`` are alert rates in (0, 1), e.g. ``1 − F_R(t)`` of each of the tenant's
    thresholds ``t``; ``rel_error`` the relative deviation that matters; ``z`` the
    confidence of both the Eq. 5 sample-size gate and the Wilson interval.
    """
    s = as_finite(final_scores, "final_scores").ravel()
    _check_levels(levels)
    ordered = np.sort(s)
    n = int(ordered.size)
    alerts = {
        a: int(n - np.searchsorted(ordered, level_threshold(reference, a), side="right"))
        for a in set(levels)
    }
    return judge_alert_counts(
        n, alerts, reference, ks=_ks(ordered, reference), rel_error=rel_error, z=z
    )


def level_threshold(reference: Reference, level: float) -> float:
    """The reference threshold ``t_a = F_R⁻¹(1 − a)`` at which R alerts on ``a`` of traffic."""
    return float(reference.ppf([1.0 - level])[0])


def judge_alert_counts(
    n: int,
    alerts: Mapping[float, int],
    reference: Reference,
    *,
    ks: float,
    rel_error: float = 0.2,
    z: float = 1.96,
    thresholds: Mapping[float, float] | None = None,
) -> DriftVerdict:
    """The verdict from counts alone: ``alerts[a]`` of ``n`` final scores lie above
    :func:`level_threshold` of each level ``a``; ``ks`` the distance to R, however computed.

    :func:`drift_verdict` counts them in a sample; the console counts them in histograms
    of the score lake whose edges include those thresholds, and judges both the same way.
    ``thresholds`` may give :func:`level_threshold` of each level, computed once for many
    tenants (it is R's quantile function: the costly part of judging a thousand tenants).
    """
    _check_levels(tuple(alerts))
    if n < 0 or any(not 0 <= k <= n for k in alerts.values()):
        raise ValueError(f"alert counts must lie in [0, n={n}], got {dict(alerts)!r}")
    checks = []
    for a in sorted(alerts, reverse=True):
        threshold = thresholds[a] if thresholds is not None else level_threshold(reference, a)
        required = required_samples(a, rel_error, z)
        k = alerts[a]
        if n:
            observed = k / n
            low, high = wilson_interval(k, n, z)
        else:
            observed, low, high = 0.0, 0.0, 1.0
        judged = n >= required
        off = abs(observed / a - 1.0) > rel_error
        drifting = judged and off and not (low <= a <= high)
        checks.append(
            LevelCheck(a, threshold, n, k, observed, low, high, required, judged, drifting)
        )
    judged_any = any(c.judged for c in checks)
    verdict: Verdict = (
        "too_few_events"
        if not judged_any
        else ("drifting" if any(c.drifting for c in checks) else "aligned")
    )
    return DriftVerdict(verdict=verdict, n=n, levels=tuple(checks), ks=ks)


def _check_levels(levels: Sequence[float]) -> None:
    if not levels:
        raise ValueError("levels is empty: give at least one alert rate in (0, 1)")
    for a in levels:
        if not 0.0 < a < 1.0:
            raise ValueError(f"alert levels must lie in (0, 1), got {a!r}")


def _ks(ordered: npt.NDArray[np.float64], reference: Reference) -> float:
    """Kolmogorov–Smirnov statistic of a sorted sample against R's CDF (0 for no sample)."""
    n = ordered.size
    if n == 0:
        return 0.0
    cdf = reference.cdf(ordered)
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(0, n) / n
    return float(max(above.max(), below.max()))
