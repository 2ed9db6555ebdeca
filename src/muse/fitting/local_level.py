"""How fast a tenant's score distribution moves, from its own history: a local-level model.

Whether to pool a tenant's history or follow its latest period depends on how its alert
rate moves: *for good* (drift that lasts), *and back* (swings that fade to its long-run
mean), or only by the binomial noise of a finite period. The local-level model of
time-series analysis (Harvey, 1989, §2.3; Durbin & Koopman, 2012, ch. 2), with a
persistence φ, tells these apart; its best forecast is a weighted mean of the periods whose
weights follow from the fitted variances. Here it is fitted per tenant on the relative
exceedance of each period at the pooled history's alert thresholds:

    y_t = (share of period t above the pooled (1 − a)-quantile) / a − 1
    y_t = μ_t + ε_t,   ε_t ~ N(0, (1 − a) / (a n_t) + σ²_ε)    (sampling, Eq. 5, + swings)
    μ_t = φ μ_{t−1} + η_t,   η_t ~ N(0, σ²_η)                    (drift; φ = 1: it lasts)

The binomial variance of each period is known from its size; σ²_η, φ and σ²_ε are estimated
by maximum likelihood (Kalman filter prediction errors) on a grid, penalised by Akaike's
criterion (each freed parameter must buy one unit of log likelihood), one model for all
the tenant's informative alert levels. The weight the model's forecast of the next period
gives each period is the weight its events get in the refit: no drift gives the pooled
history (every event alike), lasting drift mostly the latest periods, fading swings mostly
the long-run mean — the pooled history again. On ties the least drift wins: pooling is the
default that must be disproved.

On the real-data walk-forward (``benchmarks/refresh_real_data.py``) this matched the best
fixed window on each data set — pooling on insurance claims and card payments, the last
few months on bank marketing — where backtesting the windows against each other did not.

Written by hand because the libraries' state-space models (statsmodels'
``UnobservedComponents``) estimate one constant observation variance, while here each
period's sampling variance is known and differs with its size; the model is a dozen lines
of vectorised recursions over the grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from muse.types import ScoreArray

__all__ = ["LocalLevel", "fit_local_level", "local_levels"]

#: Variances tried for σ²_η and σ²_ε, in squared relative alert-rate units (0: none; 10: an
#: alert rate that moves by ±300 % a period).
GRID: npt.NDArray[np.float64] = np.concatenate([[0.0], np.logspace(-4.0, 1.0, 26)])
#: Persistences φ tried: 1 is a random walk (drift lasts), below 1 the level reverts to the
#: history's mean (swings fade by 1 − φ a period).
PERSISTENCE: npt.NDArray[np.float64] = np.array([0.0, 0.25, 0.5, 0.75, 0.9, 1.0])


@dataclass(frozen=True, slots=True)
class LocalLevel:
    """A tenant's fitted local-level model and the weight it gives each period."""

    #: σ²_η: lasting drift of the relative alert rate per period (0: none found).
    drift: float
    #: φ: how much of a move lasts to the next period (1: all of it).
    persistence: float
    #: σ²_ε: swings beyond sampling noise that do not last.
    swing: float
    #: Each period's weight in the next period's estimate (oldest first, sums to 1).
    period_weights: npt.NDArray[np.float64]
    #: The alert levels the model was fitted on.
    levels: tuple[float, ...]
    log_likelihood: float


def fit_local_level(
    periods: Sequence[ScoreArray], levels: Sequence[float], *, min_alerts: float = 10.0
) -> LocalLevel:
    """Fit the model to ``periods`` (raw aggregates, oldest first) at the alert ``levels``
    at which an average period expects at least ``min_alerts`` alerts (the most frequent
    level when none does: its noise is still known, only larger)."""
    return next(local_levels(periods, levels, min_alerts=min_alerts))


def local_levels(
    periods: Sequence[ScoreArray], levels: Sequence[float], *, min_alerts: float = 10.0
) -> Iterator[LocalLevel]:
    """The best model (as :func:`fit_local_level`), then the best with less drift than
    the last, down to no drift: for a caller that needs more events in the fit than a
    model's weights give (a longer memory). The likelihoods are computed once."""
    sizes = np.array([p.size for p in periods], dtype=np.float64)
    if sizes.size == 0 or sizes.sum() == 0:
        raise ValueError("periods hold no events")
    informative = tuple(a for a in levels if sizes.mean() * a >= min_alerts) or (max(levels),)
    pooled = np.sort(np.concatenate(periods))
    series = [_exceedance(periods, pooled, a) for a in informative]
    # Every (σ²_η, φ, σ²_ε), smallest drift first so that ties go to pooling.
    eta, phi, eps = (g.ravel() for g in np.meshgrid(GRID, PERSISTENCE, GRID, indexing="ij"))
    # No drift is one model, a level fixed at the long-run mean (the pooled history): not
    # also a random walk that never moves, which would re-estimate the mean per period.
    kept = (eta > 0.0) | (phi < 1.0)
    eta, phi, eps = eta[kept], phi[kept], eps[kept]
    loglik = np.zeros(eta.size)
    for y, v in series:
        loglik += _filter(y, v, eta, phi, eps)[0]
    # Akaike's criterion: each parameter the model frees (a drift, its persistence, a
    # swing) must buy one unit of log likelihood, or noise alone would find drift.
    free = (eta > 0).astype(np.float64) + (eps > 0) + ((eta > 0) & (phi < 1.0))
    score = loglik - free
    while True:
        best = int(np.argmax(score))  # the first maximum: the least drift on ties
        b = slice(best, best + 1)
        weights = np.mean(
            [
                _forecast_weights(_filter(y, v, eta[b], phi[b], eps[b])[1][:, 0], phi[best], sizes)
                for y, v in series
            ],
            axis=0,
        )
        yield LocalLevel(
            drift=float(eta[best]),
            persistence=float(phi[best]),
            swing=float(eps[best]),
            period_weights=weights,
            levels=informative,
            log_likelihood=float(loglik[best]),
        )
        if eta[best] == 0.0:
            return
        score = np.where(eta < eta[best], score, -np.inf)


def _exceedance(
    periods: Sequence[ScoreArray], pooled: ScoreArray, a: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each period's relative exceedance of the pooled (1 − a)-quantile and its binomial
    variance (inf for an empty period: it carries no information). The pooled history's
    own exceedance is ``a``: the series' long-run mean is 0 by construction."""
    cut = float(np.quantile(pooled, 1.0 - a))
    y = np.array([np.mean(p > cut) / a - 1.0 if p.size else 0.0 for p in periods])
    v = np.array([(1.0 - a) / (a * p.size) if p.size else math.inf for p in periods])
    return y, v


def _filter(
    y: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    eta: npt.NDArray[np.float64],
    phi: npt.NDArray[np.float64],
    eps: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Kalman filter for every (σ²_η, φ, σ²_ε) at once: the log likelihood of the
    prediction errors after the first observed period (conditioned on it, so random walks
    and mean-reverting levels compare on the same terms) and the gain at each period
    (shape periods × models). A random walk starts diffuse, a reverting level at its
    stationary law around the long-run mean 0."""
    reverting = phi < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(reverting, eta / (1.0 - phi * phi), 0.0)
    m = np.zeros(eta.size)
    gains = np.zeros((y.size, eta.size))
    loglik = np.zeros(eta.size)
    started = False
    for t in range(y.size):
        m, p = phi * m, phi * phi * p + eta
        if not math.isfinite(v[t]):
            continue
        if not started:
            # The first observed period: a random walk takes its level from it (gain 1).
            started = True
            f = p + v[t] + eps
            k = np.where(reverting, p / f, 1.0)
        else:
            f = p + v[t] + eps
            e = y[t] - m
            loglik -= 0.5 * (np.log(2.0 * math.pi * f) + e * e / f)
            k = p / f
        gains[t] = k
        m = m + k * (y[t] - m)
        p = np.where(k == 1.0, v[t] + eps, p * (1.0 - k))
    return loglik, gains


def _forecast_weights(
    gains: npt.NDArray[np.float64], phi: float, sizes: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each period's weight in the forecast of the next period's level, ``φ m_T``. The
    filtered level is ``m_t = φ (1 − K_t) m_{t−1} + K_t y_t``, so period ``s`` weighs
    ``φ K_s Π_{u>s} φ (1 − K_u)``; what the filter leaves to its prior, the long-run mean
    0, is the pooled history's own exceedance: that share goes to every event alike."""
    weights = np.empty(gains.size)
    kept = phi
    for t in range(gains.size - 1, -1, -1):
        weights[t] = gains[t] * kept
        kept *= phi * (1.0 - gains[t])
    pooled: npt.NDArray[np.float64] = sizes / sizes.sum()
    return weights + (1.0 - float(weights.sum())) * pooled
