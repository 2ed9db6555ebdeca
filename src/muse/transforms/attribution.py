"""Reason codes: each feature's share of an event's final score, through T^C, A and T^Q.

Tree models explain one output in their own *margin* (log-odds) space: TreeSHAP
contributions φ_ij of expert i's features j and a bias b_i (the expected margin) with
logit(p_i) = b_i + Σ_j φ_ij exactly (LightGBM ``pred_contrib``, XGBoost ``pred_contribs``).
What an analyst asks is why the *final* score s is high, and s is three steps away from
those margins (paper §2.3). Each step is carried exactly:

1. **T^C** (Eq. 3, undersampling β_i) is a shift in margin space:
   logit(T^C(p)) = logit(p) + log β_i. So the corrected expert's contributions are φ_ij
   unchanged and only its bias moves: base_i = σ(b_i + log β_i), q_i = T^C(p_i). (A
   predictor of one expert serves its raw output: no T^C, base_i = σ(b_i).)
2. **Into probability space**: A averages *probabilities*, so each expert's move from its
   base, q_i − base_i, is shared among its features in proportion to their margin
   contributions — the "rescale" rule: ψ_ij = φ_ij (q_i − base_i) / Σ_j φ_ij. σ is
   increasing, so the factor is never negative: a feature that pushed the margin up pushes
   the probability up, and Σ_j ψ_ij = q_i − base_i.
3. **A** (weighted mean, weights w_i summing to 1) is linear: Ψ_j = Σ_i w_i ψ_ij, and the
   aggregate a = a_0 + Σ_j Ψ_j with a_0 = Σ_i w_i base_i — the contributions of an
   ensemble sum to its aggregate in probability space.
4. **T^Q** is monotone: the move from T^Q(a_0) to s = T^Q(a) is shared in proportion to Ψ:
   Φ_j = Ψ_j (s − T^Q(a_0)) / Σ_j Ψ_j, again with a factor never negative.

So s = T^Q(a_0) + Σ_j Φ_j (to floating-point rounding), a feature's contribution keeps the
sign it has in every expert that agrees, and features of different experts are merged by
name (an expert that does not use a feature contributes 0 to it). The proportional rule is
an attribution *choice* (as SHAP itself is one): exact in sum, faithful in sign, not a
claim that the non-linear steps are additive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from muse.transforms.quantile import QuantileMap

__all__ = ["Attribution", "ExpertContributions", "attribute"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ExpertContributions:
    """One expert's explanation of n events in its margin (log-odds) space.

    ``values`` has shape (n, len(features)); ``bias`` (n,) is the expected margin, so that
    logit(expert output) = bias + values.sum(axis=1). ``output`` is what the served model
    answered (n,), when known: the expert's move is then measured from it, so the reasons
    sum to the served score exactly even where the explaining model is a float64 copy of a
    float32 ONNX export.
    """

    features: tuple[str, ...]
    values: Array
    bias: Array
    output: Array | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        bias = np.asarray(self.bias, dtype=np.float64).ravel()
        if values.ndim != 2 or values.shape != (bias.size, len(self.features)):
            raise ValueError(
                f"contributions must have shape (n events, {len(self.features)} features) "
                f"with one bias per event, got {values.shape} and {bias.shape}"
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "bias", bias)
        if self.output is not None:
            output = np.asarray(self.output, dtype=np.float64).ravel()
            if output.shape != bias.shape:
                raise ValueError(f"output must have one value per event, got {output.shape}")
            object.__setattr__(self, "output", output)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Each feature's contribution to each event's final score: ``base + contributions
    .sum(axis=1)`` is the final score. ``base`` is T^Q of the experts' expected aggregate."""

    features: tuple[str, ...]
    contributions: Array
    base: Array

    def top(self, i: int, k: int) -> list[tuple[str, float]]:
        """Event ``i``'s ``k`` largest contributions by magnitude, largest first (zeros
        left out)."""
        row = self.contributions[i]
        order = np.argsort(-np.abs(row), kind="stable")[:k]
        return [(self.features[j], float(row[j])) for j in order if row[j] != 0.0]


def attribute(
    experts: Sequence[ExpertContributions],
    betas: Sequence[float],
    weights: Sequence[float],
    quantile_map: QuantileMap,
    *,
    final: npt.ArrayLike | None = None,
) -> Attribution:
    """The final-score contributions of a predictor's experts (see the module).

    An expert's features share the move of its *own* explanation, σ(b + Σφ) − σ(b) (after
    T^C), so a feature keeps its sign; where the served output differs from what the
    explanation adds up to (a float32 ONNX export of the tree model, a remote copy), the
    difference is part of the event's ``base``, not of any feature. ``final`` (the served
    scores) makes the contributions end exactly there.
    """
    if not experts or not (len(experts) == len(betas) == len(weights)):
        raise ValueError("give one contribution set, beta and weight per expert (at least one)")
    n = experts[0].bias.size
    if any(e.bias.size != n for e in experts):
        raise ValueError("every expert must explain the same events")
    features = tuple(dict.fromkeys(f for e in experts for f in e.features))
    column = {f: j for j, f in enumerate(features)}
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.max()  # first: two weights of 1e308 must not sum to inf
    w = w / w.sum()
    single = len(experts) == 1
    psi = np.zeros((n, len(features)))
    a0 = np.zeros(n)
    for e, beta, weight in zip(experts, betas, w, strict=True):
        shift = 0.0 if single else float(np.log(beta))
        total = e.values.sum(axis=1)
        base = _sigmoid(e.bias + shift)
        own = _sigmoid(e.bias + total + shift)  # where the explanation itself ends
        # σ is increasing: own − base has the sign of total, so the factor is never negative.
        factor = np.divide(own - base, total, out=np.zeros(n), where=total != 0.0)
        cols = [column[f] for f in e.features]
        psi[:, cols] += weight * e.values * factor[:, None]
        served = own if e.output is None else _corrected(e.output, beta, single)
        a0 += weight * (base + (served - own))
    moved = psi.sum(axis=1)
    s0 = quantile_map.map_unchecked(np.clip(a0, 0.0, 1.0))
    if final is None:
        s = quantile_map.map_unchecked(np.clip(a0 + moved, 0.0, 1.0))
    else:
        s = np.asarray(final, dtype=np.float64).ravel()
        if s.shape != (n,):
            raise ValueError(f"final must have one score per event, got shape {s.shape}")
    # T^Q is monotone: s − s0 has the sign of the move (rounding aside, then no share).
    factor = np.divide(s - s0, moved, out=np.zeros(n), where=moved != 0.0)
    factor = np.where(factor >= 0.0, factor, 0.0)
    contributions = psi * factor[:, None]
    # What rounding (or a served score not on T^Q of a) leaves over is the base's.
    base_score = s - contributions.sum(axis=1)
    return Attribution(features, contributions, base_score)


def _corrected(output: Array, beta: float, single: bool) -> Array:
    """The served output after T^C (Eq. 3), as the predictor computes it."""
    if single:
        return output
    num = output * beta
    out: Array = num / ((1.0 - output) + num)
    return out


def _sigmoid(x: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|
    return out
