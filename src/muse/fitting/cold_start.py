"""Cold start: a default T^Q_v0 from a Beta-mixture fit of training scores (paper §2.4, Eqs. 6–8).

A new tenant has no traffic from which to estimate source quantiles, and Eq. 5 asks for
tens of thousands of events before a tenant's own T^Q can be trusted. Until then its
predictor serves through a *default* map built from the predictor's scores on its training
data. Those scores are too sparse in the fraud tail to be used as quantiles directly, so
they are replaced by a smooth density (Eq. 6)::

    f_S(y) = (1 − w) Beta(y; a0, b0) + w Beta(y; a1, b1)

with ``w`` the fraud prior of the training data (fixed, not fitted), component 0 standing
for legitimate events and component 1 for fraud. The shapes minimise the moment loss of
Eq. 7 by differential evolution, the search is repeated over several seeds, and the trial
whose mixture is closest to the empirical distribution in Jensen–Shannon divergence wins
(Eq. 8). :func:`cold_start_map` then maps mixture quantiles onto reference quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.optimize import differential_evolution, least_squares
from scipy.spatial.distance import jensenshannon
from scipy.special import betainc, betaln, xlog1py, xlogy

from muse.transforms._checks import as_finite, as_scores
from muse.transforms.quantile import QuantileMap, _check_levels, default_levels
from muse.transforms.reference import Reference
from muse.types import ScoreArray

__all__ = [
    "FORMAT",
    "BetaMixture",
    "BetaMixtureParams",
    "cold_start_map",
    "fit_beta_mixture",
    "mixture_jsd",
]

FORMAT = "muse/beta-mixture@1"

#: Fewest training scores accepted: below this the third and fourth moments are noise.
MIN_SAMPLES = 100

#: Histogram bins on [0, 1] for the JSD of Eq. 8 (uniform, so the sparse fraud tail keeps
#: as many bins as the dense legitimate bulk: the tail is where tenants set thresholds).
DEFAULT_BINS = 100

#: Search box for each Beta shape. The search runs on log-shapes, so every order of
#: magnitude gets equal attention: 1e-2 allows a component piled up at 0 (or 1), 1e4 a
#: legitimate component with mean ~1e-4 (posterior-corrected scores of rare fraud).
DEFAULT_SHAPE_BOUNDS = (1e-2, 1e4)

_N_MOMENTS = 4
# Bit pattern of 1.0: non-negative float64 order like their int64 bit patterns, which is
# what lets ppf bisect on bits.
_ONE_BITS = int(np.float64(1.0).view(np.int64))


class BetaMixtureParams(NamedTuple):
    """Parameters of Eq. 6: legitimate component Beta(a0, b0), fraud component Beta(a1, b1)
    with weight ``w`` (the fraud prior)."""

    a0: float
    b0: float
    a1: float
    b1: float
    w: float


@dataclass(frozen=True, slots=True)
class BetaMixture:
    """A fitted f_S (Eq. 6) with the two figures that chose it.

    ``jsd`` is the Jensen–Shannon *divergence* (the square of SciPy's distance, base 2, so
    in [0, 1]) between the training scores' histogram and the mixture's mass per bin — the
    Eq. 8 criterion the fit was selected by. ``loss`` is the moment loss L of Eq. 7.
    ``n_samples`` is the number of training scores, carried into the default map.
    """

    params: BetaMixtureParams
    jsd: float
    loss: float
    n_samples: int

    def __post_init__(self) -> None:
        p = self.params
        if not isinstance(p, BetaMixtureParams):
            raise ValueError(
                f"BetaMixture.params must be a BetaMixtureParams, got {type(p).__name__}"
            )
        for name, v in zip(p._fields, p, strict=True):
            if not (_is_real(v) and math.isfinite(v) and v > 0.0):
                raise ValueError(f"BetaMixture parameter {name} must be finite and > 0, got {v!r}")
        if not p.w < 1.0:
            raise ValueError(f"BetaMixture parameter w must be < 1, got {p.w!r}")
        if not (_is_real(self.jsd) and 0.0 <= self.jsd <= 1.0):
            raise ValueError(f"BetaMixture.jsd must be in [0, 1], got {self.jsd!r}")
        if not (_is_real(self.loss) and math.isfinite(self.loss) and self.loss >= 0.0):
            raise ValueError(f"BetaMixture.loss must be finite and >= 0, got {self.loss!r}")
        if not (
            isinstance(self.n_samples, int)
            and not isinstance(self.n_samples, bool)
            and self.n_samples >= 1
        ):
            raise ValueError(
                f"BetaMixture.n_samples must be a positive int, got {self.n_samples!r}"
            )

    # -- distribution -------------------------------------------------------------------

    def pdf(self, x: npt.ArrayLike) -> ScoreArray:
        """Density of Eq. 6; 0 outside [0, 1], +inf at an end where a shape is below 1."""
        s = as_finite(x, "x")
        return _mixture_pdf(self.params, s)

    def cdf(self, x: npt.ArrayLike) -> ScoreArray:
        """CDF of Eq. 6; 0 below 0 and 1 above 1."""
        s = as_finite(x, "x")
        return _mixture_cdf(self.params, s)

    def ppf(self, q: npt.ArrayLike) -> ScoreArray:
        """Quantile function: the smallest score ``x`` with ``cdf(x) >= q``, to one ulp.

        The mixture CDF has no closed-form inverse. Bisecting on the float64 bit patterns
        of [0, 1] (which order like the floats) takes 62 vectorised steps for every level
        and is exact to one ulp even for quantiles like 1e-200 of a component piled up at
        0. Because all levels walk the same bisection tree and compare against the same CDF
        values, ``q1 <= q2`` implies ``ppf(q1) <= ppf(q2)`` exactly, whatever the rounding
        of the CDF — the default map needs strictly ordered knots. ``ppf(0) = 0`` and
        ``ppf(1) = 1``.
        """
        p = as_finite(q, "q")
        if p.size and (p.min() < 0.0 or p.max() > 1.0):
            raise ValueError(f"ppf levels must lie in [0, 1]; got range [{p.min()!r}, {p.max()!r}]")
        flat = p.ravel()
        lo = np.zeros(flat.shape, dtype=np.int64)
        hi = np.full(flat.shape, _ONE_BITS, dtype=np.int64)
        # Invariant: cdf(hi) >= q, and cdf(lo) < q unless lo is still 0.
        active = hi - lo > 1
        while active.any():
            mid = lo + (hi - lo) // 2
            below = _mixture_cdf(self.params, mid.view(np.float64)) < flat
            lo = np.where(active & below, mid, lo)
            hi = np.where(active & ~below, mid, hi)
            active = hi - lo > 1
        out = hi.view(np.float64)
        out[flat <= 0.0] = 0.0
        out[flat >= 1.0] = 1.0
        return out.reshape(p.shape)

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; ``from_dict(json.loads(json.dumps(d)))`` rebuilds it exactly."""
        return {
            "format": FORMAT,
            "params": self.params._asdict(),
            "jsd": self.jsd,
            "loss": self.loss,
            "n_samples": self.n_samples,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BetaMixture:
        """Rebuild a mixture written by :meth:`to_dict`, re-checking every invariant."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a Beta mixture is a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise ValueError(
                f"expected a Beta mixture of format {FORMAT!r}, got {d.get('format')!r}"
            )
        try:
            raw = d["params"]
            if not isinstance(raw, Mapping) or set(raw) != set(BetaMixtureParams._fields):
                raise ValueError(
                    f"Beta mixture params must have exactly the keys {list(BetaMixtureParams._fields)!r}, "
                    f"got {raw!r}"
                )
            values = [raw[k] for k in BetaMixtureParams._fields]
            for k, v in zip(BetaMixtureParams._fields, values, strict=True):
                if not _is_real(v):
                    raise ValueError(f"Beta mixture parameter {k} must be a number, got {v!r}")
            return cls(
                params=BetaMixtureParams(*(float(v) for v in values)),
                jsd=_as_float(d["jsd"], "jsd"),
                loss=_as_float(d["loss"], "loss"),
                n_samples=d["n_samples"],
            )
        except KeyError as e:
            raise ValueError(f"Beta mixture is missing key {e.args[0]!r}") from None

    def __repr__(self) -> str:
        a0, b0, a1, b1, w = self.params
        return (
            f"BetaMixture((1 - {w:.4g}) Beta({a0:.4g}, {b0:.4g}) + {w:.4g} Beta({a1:.4g}, {b1:.4g}), "
            f"jsd={self.jsd:.3g}, loss={self.loss:.3g}, n_samples={self.n_samples})"
        )


# -- fitting (Eqs. 7–8) -------------------------------------------------------------------


def fit_beta_mixture(
    scores: npt.ArrayLike,
    prior: float,
    n_trials: int = 5,
    seed: int | None = 0,
    *,
    bins: int = DEFAULT_BINS,
    shape_bounds: tuple[float, float] = DEFAULT_SHAPE_BOUNDS,
    maxiter: int = 300,
) -> BetaMixture:
    """Fit f_S (Eq. 6) to a predictor's training scores (§2.4).

    ``scores`` are the predictor's *raw aggregates* on its training data — expert outputs
    after posterior correction T^C and aggregation A, i.e. exactly what T^Q receives in
    serving. ``prior`` is ``w = P(y = 1)`` in that same data; it is held fixed so the fraud
    component keeps the weight the labels say it has.

    Each of the ``n_trials`` trials minimises the moment loss L of Eq. 7 (first four raw
    moments, r-th roots) with :func:`scipy.optimize.differential_evolution` over log-shapes
    in ``shape_bounds``. L is zero exactly where the four moment residuals vanish, and its
    r-th roots make that zero a cusp that DE only approaches; so, in place of DE's gradient
    polish, each trial ends with a least-squares root solve of the (relative) residuals from
    the DE optimum, kept only if it lowers L. (Measured on 50,000 scores of a 2 % mixture:
    DE alone stopped at JSDs of 0.005–0.5 per trial, no better than a single Beta; with the
    root solve every trial reaches the histogram's noise floor, ~3e-4.) The fraud
    component's mean is constrained to be at least the legitimate one's (§2.4 assigns
    component 1 to fraud); solutions that swap the roles are penalised above any feasible L.

    Trial seeds are spawned from ``seed`` (``numpy.random.SeedSequence``), so a seed fixes
    the result; ``None`` draws fresh entropy. Of the trials, the one with the smallest JSD
    (:func:`mixture_jsd` with ``bins`` uniform bins) is returned — the first on ties.

    Raises ValueError for fewer than ``MIN_SAMPLES`` scores, non-1-D, non-finite or
    out-of-[0, 1] scores, constant scores, a prior outside (0, 1), or ``n_trials < 1``.
    """
    x = _check_scores(scores)
    w = _check_prior(prior)
    if not (_is_int(n_trials) and n_trials >= 1):
        raise ValueError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    if not (_is_int(bins) and bins >= 2):
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    lo, hi = shape_bounds
    if not (_is_real(lo) and _is_real(hi) and 0.0 < lo < hi and math.isfinite(hi)):
        raise ValueError(
            f"shape_bounds must be (low, high) with 0 < low < high, got {shape_bounds!r}"
        )
    if not (_is_int(maxiter) and maxiter >= 1):
        raise ValueError(f"maxiter must be an int >= 1, got {maxiter!r}")

    problem = _Problem(
        moments=_raw_moments(x),
        histogram=_histogram(x, int(bins)),
        w=w,
        log_bounds=(math.log(lo), math.log(hi)),
        n_samples=int(x.size),
    )
    children = np.random.SeedSequence(None if seed is None else int(seed)).spawn(int(n_trials))
    fits = [_fit_trial(problem, np.random.default_rng(c), int(maxiter)) for c in children]
    # min() keeps the first of equal JSDs, so ties resolve by trial order, deterministically.
    return min(fits, key=lambda m: m.jsd)


def mixture_jsd(
    params: BetaMixtureParams, scores: npt.ArrayLike, *, bins: int = DEFAULT_BINS
) -> float:
    """The Eq. 8 criterion for any parameters: JSD (base 2, squared distance) between the
    histogram of ``scores`` over ``bins`` uniform bins on [0, 1] and the mixture's mass
    per bin (CDF differences). Lets a caller compare a fit with other candidates — a known
    mixture, or a single Beta (``a1 = a0, b1 = b0``) — on the very scale the fit used."""
    x = _check_scores(scores)
    if not (_is_int(bins) and bins >= 2):
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    return _jsd(params, _histogram(x, int(bins)))


# -- default map --------------------------------------------------------------------------


def cold_start_map(
    mixture: BetaMixture, reference: Reference, levels: npt.ArrayLike | None = None
) -> QuantileMap:
    """The default T^Q_v0 (§2.4): knots ``(mixture.ppf(p), reference.ppf(p))`` at ``levels``.

    T^Q maps the raw aggregate ``a`` (after T^C and A); the mixture was fitted on raw
    aggregates of the training data, so its quantiles stand in for a tenant's source
    quantiles ``q^S`` until the tenant has enough traffic for its own map. ``levels``
    defaults to :func:`default_levels`. Where neighbouring levels give the same mixture
    quantile (the CDF saturates in float64 near a piled-up end), the knots are merged as
    :meth:`QuantileMap.fit` merges ties: one knot at the middle of the tied levels.
    ``n_samples`` of the map is the number of training scores behind the mixture.
    """
    grid = default_levels() if levels is None else _check_levels(levels)
    # ppf is exactly monotone (see BetaMixture.ppf), so np.unique only has runs to merge.
    q = mixture.ppf(grid)
    source, first, counts = np.unique(q, return_index=True, return_counts=True)
    p = 0.5 * (grid[first] + grid[first + counts - 1])
    target = np.maximum.accumulate(np.clip(reference.ppf(p), 0.0, 1.0))
    return QuantileMap(source=source, target=target, levels=p, n_samples=mixture.n_samples)


# -- internals ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    """What every trial shares: computed once, so each objective call is a few flops."""

    moments: ScoreArray  # ȳ_1..ȳ_4, shape (4,)
    histogram: ScoreArray  # empirical mass per bin
    w: float
    log_bounds: tuple[float, float]
    n_samples: int


def _fit_trial(problem: _Problem, rng: np.random.Generator, maxiter: int) -> BetaMixture:
    """One search of Eq. 7: differential evolution, then a root-solve polish."""
    w, ybar = problem.w, problem.moments
    bounds = [problem.log_bounds] * 4

    def objective(theta: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return _loss(np.exp(theta), w, ybar)

    result = differential_evolution(
        objective,
        bounds,
        # DE only has to find the root's basin (the least-squares step below solves it), so
        # a loose tolerance keeps a trial near 0.1 s whatever the sample size.
        maxiter=maxiter,
        popsize=15,
        tol=1e-3,
        # High crossover: the loss valleys follow the moment surfaces, which are not aligned
        # with the axes; CR = 0.7 (the default) stalls on them more often.
        recombination=0.9,
        seed=rng,  # ``rng=`` needs scipy >= 1.15; the project supports 1.11
        polish=False,
        vectorized=True,
        updating="deferred",
    )
    theta = np.asarray(result.x, dtype=np.float64)
    best = float(_loss(np.exp(theta)[:, None], w, ybar)[0])

    def residuals(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return _moments(np.exp(t)[:, None], w)[:, 0] / ybar - 1.0

    lo, hi = problem.log_bounds
    polished = least_squares(
        residuals, np.clip(theta, lo, hi), bounds=(lo, hi), xtol=1e-12, ftol=1e-12, gtol=1e-12
    )
    polished_theta = np.asarray(polished.x, dtype=np.float64)
    polished_loss = float(_loss(np.exp(polished_theta)[:, None], w, ybar)[0])
    if polished_loss < best:
        theta, best = polished_theta, polished_loss

    a0, b0, a1, b1 = (float(v) for v in np.exp(theta))
    params = BetaMixtureParams(a0, b0, a1, b1, w)
    # Report Eq. 7 itself, never the penalty that kept the components in order.
    loss = float(_eq7(_moments(np.exp(theta)[:, None], w), ybar)[0])
    return BetaMixture(
        params=params,
        jsd=_jsd(params, problem.histogram),
        loss=loss,
        n_samples=problem.n_samples,
    )


def _moments(shapes: npt.NDArray[np.float64], w: float) -> npt.NDArray[np.float64]:
    """Raw moments μ_1..μ_4 of the mixture for shapes of shape (4, S): result (4, S).

    E[X^r] of Beta(a, b) is Π_{i<r} (a + i) / (a + b + i), built up one factor per order.
    """
    a0, b0, a1, b1 = shapes
    m0 = np.ones_like(a0)
    m1 = np.ones_like(a1)
    out = np.empty((_N_MOMENTS, *a0.shape), dtype=np.float64)
    for i in range(_N_MOMENTS):
        m0 = m0 * (a0 + i) / (a0 + b0 + i)
        m1 = m1 * (a1 + i) / (a1 + b1 + i)
        out[i] = (1.0 - w) * m0 + w * m1
    return out


def _eq7(mu: npt.NDArray[np.float64], ybar: ScoreArray) -> npt.NDArray[np.float64]:
    # ((μ_r − ȳ_r)²)^{1/r} = |μ_r − ȳ_r|^{2/r}
    d = np.abs(mu - ybar[:, None])
    r = np.arange(1, _N_MOMENTS + 1, dtype=np.float64)[:, None]
    total: npt.NDArray[np.float64] = (d ** (2.0 / r)).sum(axis=0)
    return total


def _loss(shapes: npt.NDArray[np.float64], w: float, ybar: ScoreArray) -> npt.NDArray[np.float64]:
    """Eq. 7 for shapes of shape (4, S), penalised when the fraud mean is below the legit one.

    Moments and their differences lie in [0, 1], so a feasible L is at most 4; a swapped
    pair scores 4 plus how far it is swapped, which also points the search back.
    """
    a0, b0, a1, b1 = shapes
    mean0, mean1 = a0 / (a0 + b0), a1 / (a1 + b1)
    eq7 = _eq7(_moments(shapes, w), ybar)
    penalised: npt.NDArray[np.float64] = np.where(mean1 >= mean0, eq7, _N_MOMENTS + (mean0 - mean1))
    return penalised


def _mixture_cdf(params: BetaMixtureParams, x: ScoreArray) -> ScoreArray:
    a0, b0, a1, b1, w = params
    s = np.clip(x, 0.0, 1.0)
    f0 = betainc(a0, b0, s)
    # F0 + w (F1 − F0) is exactly 0 at 0 and 1 at 1, unlike (1 − w) F0 + w F1.
    out = np.asarray(f0 + w * (betainc(a1, b1, s) - f0), dtype=np.float64)
    clipped: ScoreArray = np.clip(out, 0.0, 1.0)
    return clipped


def _mixture_pdf(params: BetaMixtureParams, x: ScoreArray) -> ScoreArray:
    a0, b0, a1, b1, w = params
    inside = (x >= 0.0) & (x <= 1.0)
    s = np.where(inside, x, 0.5)
    with np.errstate(divide="ignore", over="ignore"):
        f0 = np.exp(xlogy(a0 - 1.0, s) + xlog1py(b0 - 1.0, -s) - betaln(a0, b0))
        f1 = np.exp(xlogy(a1 - 1.0, s) + xlog1py(b1 - 1.0, -s) - betaln(a1, b1))
    out: ScoreArray = np.where(inside, (1.0 - w) * f0 + w * f1, 0.0)
    return out


def _jsd(params: BetaMixtureParams, histogram: ScoreArray) -> float:
    edges = np.linspace(0.0, 1.0, histogram.size + 1)
    mass = np.diff(_mixture_cdf(params, edges))
    # SciPy returns the distance, the square root of the divergence.
    distance = float(jensenshannon(histogram, mass, base=2.0))
    return min(max(distance * distance, 0.0), 1.0)


def _raw_moments(x: ScoreArray) -> ScoreArray:
    # One running power instead of an (r, n) table: training sets can be large.
    moments = np.empty(_N_MOMENTS, dtype=np.float64)
    power = x.copy()
    for i in range(_N_MOMENTS):
        moments[i] = power.mean()
        power *= x
    return moments


def _histogram(x: ScoreArray, bins: int) -> ScoreArray:
    counts, _ = np.histogram(x, bins=bins, range=(0.0, 1.0))
    mass: ScoreArray = counts / x.size
    return mass


def _check_scores(scores: npt.ArrayLike) -> ScoreArray:
    x = as_scores(scores, "training scores")
    if x.ndim != 1:
        raise ValueError(f"training scores must be a 1-D array, got shape {x.shape!r}")
    if x.size < MIN_SAMPLES:
        raise ValueError(
            f"a Beta mixture needs at least {MIN_SAMPLES} training scores, got {x.size}; "
            "pass the predictor's scores on its whole training set"
        )
    if x.min() == x.max():
        raise ValueError(
            f"training scores are all equal to {float(x[0])!r}; a Beta mixture cannot fit a "
            "point mass (is the predictor constant?)"
        )
    return x


def _check_prior(prior: float) -> float:
    if not (_is_real(prior) and 0.0 < prior < 1.0):
        raise ValueError(
            f"prior (the fraud rate w of the training data) must be in (0, 1), got {prior!r}"
        )
    return float(prior)


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, int | float | np.floating) and not isinstance(v, bool)


def _as_float(v: object, name: str) -> float:
    if not _is_real(v):
        raise ValueError(f"Beta mixture {name} must be a number, got {v!r}")
    assert isinstance(v, int | float | np.floating)
    return float(v)
