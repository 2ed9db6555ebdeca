"""The reference distribution R of the score contract (paper §2.3.3).

Tenants set thresholds against R: threshold ``t`` means "alert on ``1 − F_R(t)`` of my
traffic". R is fixed per deployment — typically dense near 0 with a long tail to 1 — and
every quantile map targets it. It can be a Beta distribution, an empirical sample, or the
quantile table of a legacy system whose thresholds tenants already use (§2.3.3, migration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.transforms._checks import as_finite
from muse.types import ScoreArray

__all__ = ["Reference"]


class Reference:
    """A distribution on [0, 1] with a vectorised quantile function ``ppf`` and CDF ``cdf``.

    Build one with :meth:`beta`, :meth:`from_samples` or :meth:`from_quantiles`; the
    constructor is private. Empirical and tabulated references are piecewise linear between
    their knots (the same interpolation ``numpy.quantile`` uses); ``cdf`` is the
    right-continuous inverse of ``ppf`` (equal to it except across point masses).
    """

    __slots__ = ("_a", "_b", "_kind", "_levels", "_values")

    def __init__(
        self,
        kind: str,
        *,
        a: float = 0.0,
        b: float = 0.0,
        levels: ScoreArray | None = None,
        values: ScoreArray | None = None,
    ) -> None:
        self._kind = kind
        self._a = a
        self._b = b
        self._levels = levels
        self._values = values

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def beta(cls, a: float, b: float) -> Reference:
        """Beta(a, b); e.g. ``Reference.beta(0.8, 9.0)`` puts ~1 % of mass above 0.35."""
        for name, v in (("a", a), ("b", b)):
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(
                    f"Beta reference parameter {name} must be finite and > 0, got {v!r}"
                )
        return cls("beta", a=float(a), b=float(b))

    @classmethod
    def from_samples(cls, samples: npt.ArrayLike) -> Reference:
        """The empirical distribution of ``samples`` (scores in [0, 1]), linearly interpolated."""
        x = np.sort(as_finite(samples, "reference samples").ravel())
        if x.size < 2:
            raise ValueError(f"a sample reference needs at least 2 samples, got {x.size}")
        if x[0] < 0.0 or x[-1] > 1.0:
            raise ValueError(
                f"reference samples must lie in [0, 1]; got range [{x[0]!r}, {x[-1]!r}]"
            )
        levels = np.linspace(0.0, 1.0, x.size)
        return cls("quantiles", levels=levels, values=x)

    @classmethod
    def from_quantiles(cls, levels: npt.ArrayLike, values: npt.ArrayLike) -> Reference:
        """A tabulated quantile function, e.g. a legacy system's score distribution.

        ``levels`` strictly increasing in [0, 1], ``values`` non-decreasing in [0, 1]. If the
        table does not reach level 0 (or 1), it is extended linearly to score 0 at level 0
        (and score 1 at level 1): scores live in [0, 1], so that is the least-informed tail.
        """
        p = as_finite(levels, "reference levels").ravel()
        v = as_finite(values, "reference values").ravel()
        if p.size != v.size or p.size < 1:
            raise ValueError(
                f"levels and values must be non-empty and of equal length, got {p.size} and {v.size}"
            )
        if p[0] < 0.0 or p[-1] > 1.0 or (p.size > 1 and (np.diff(p) <= 0).any()):
            raise ValueError("reference levels must be strictly increasing within [0, 1]")
        if v[0] < 0.0 or v[-1] > 1.0 or (v.size > 1 and (np.diff(v) < 0).any()):
            raise ValueError("reference values must be non-decreasing within [0, 1]")
        if p[0] > 0.0:
            p, v = np.concatenate(([0.0], p)), np.concatenate(([0.0], v))
        if p[-1] < 1.0:
            p, v = np.concatenate((p, [1.0])), np.concatenate((v, [1.0]))
        return cls("quantiles", levels=p, values=v)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reference:
        """Inverse of :meth:`to_dict`."""
        if set(d) == {"beta"}:
            return cls.beta(d["beta"]["a"], d["beta"]["b"])
        if set(d) == {"quantiles"}:
            q = d["quantiles"]
            return cls.from_quantiles(q["levels"], q["values"])
        raise ValueError(
            "a reference is {'beta': {'a': …, 'b': …}} or {'quantiles': {'levels': …, 'values': …}}, "
            f"got keys {sorted(d)!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description from which :meth:`from_dict` rebuilds the same distribution."""
        if self._kind == "beta":
            return {"beta": {"a": self._a, "b": self._b}}
        assert self._levels is not None
        assert self._values is not None
        return {"quantiles": {"levels": self._levels.tolist(), "values": self._values.tolist()}}

    # -- distribution -------------------------------------------------------------------

    def ppf(self, levels: npt.ArrayLike) -> ScoreArray:
        """Quantile function: the score below which a fraction ``levels`` of R lies."""
        p = as_finite(levels, "levels")
        if p.size and (p.min() < 0.0 or p.max() > 1.0):
            raise ValueError("levels must lie in [0, 1]")
        if self._kind == "beta":
            from scipy.special import betaincinv  # fit-time only; keeps scipy off the request path

            return np.asarray(betaincinv(self._a, self._b, p), dtype=np.float64)
        assert self._levels is not None
        assert self._values is not None
        return np.interp(p, self._levels, self._values)

    def cdf(self, x: npt.ArrayLike) -> ScoreArray:
        """Right-continuous CDF F_R(x); a point mass in a table jumps at its value."""
        s = as_finite(x, "x")
        if self._kind == "beta":
            from scipy.special import betainc

            return np.asarray(betainc(self._a, self._b, np.clip(s, 0.0, 1.0)), dtype=np.float64)
        assert self._levels is not None
        assert self._values is not None
        return _table_cdf(self._levels, self._values, s)

    def __repr__(self) -> str:
        if self._kind == "beta":
            return f"Reference.beta({self._a!r}, {self._b!r})"
        assert self._levels is not None
        return f"<Reference quantile table with {self._levels.size} knots>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def _table_cdf(levels: ScoreArray, values: ScoreArray, x: ScoreArray) -> ScoreArray:
    # The table's quantile function is piecewise linear with flat runs where values tie
    # (point masses). Its inverse rises linearly from each distinct value's *last* level to
    # the next distinct value's *first* level, and jumps across a run at the tied value.
    uniq, first = np.unique(values, return_index=True)
    last = np.append(first[1:] - 1, values.size - 1)
    lo_p, hi_p = levels[first], levels[last]
    k = np.searchsorted(uniq, x, side="right") - 1
    out = np.empty_like(x)
    below, above = k < 0, k >= uniq.size - 1
    out[below] = 0.0
    out[above] = 1.0  # every table ends at level 1 (from_quantiles extends it there)
    mid = ~(below | above)
    km = k[mid]
    frac = (x[mid] - uniq[km]) / (uniq[km + 1] - uniq[km])
    out[mid] = hi_p[km] + frac * (lo_p[km + 1] - hi_p[km])
    return out
