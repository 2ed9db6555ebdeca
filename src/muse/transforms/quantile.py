"""Quantile Mapping T^Q (paper §2.3.3, Eq. 4).

T^Q maps a predictor's raw aggregate ``a`` for one tenant onto the reference distribution R:
it is the piecewise-linear function through knots ``(q_i^S, q_i^R)`` where ``q_i^S`` are
quantiles of the tenant's raw aggregates and ``q_i^R = F_R^{-1}(p_i)`` the reference
quantiles at the same probability levels ``p_i``. Thresholds on the mapped score then mean
the same alert rate whatever model produced ``a``.

The probability grid (:func:`default_levels`) matters: fraud thresholds sit at alert rates of
0.05 %–2 %, i.e. levels 0.98–0.9995, where a uniform grid of 1,000 levels has only one to
twenty knots — the map would interpolate linearly across most of the tail.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.transforms._checks import as_finite
from muse.transforms.reference import Reference
from muse.types import ScoreArray

__all__ = ["FORMAT", "QuantileMap", "default_levels"]

FORMAT = "muse/quantile-map@1"

#: Smallest alert rate the default grid resolves (one event in 100,000).
MIN_ALERT_RATE = 1e-5


def default_levels(n_quantiles: int = 1000) -> ScoreArray:
    """The default probability grid: half uniform, half log-spaced in the alert-rate tail.

    ``n_quantiles // 2`` levels are uniform on [0, 1] (the bulk, where most scores live);
    the rest are ``1 − r`` for alert rates ``r`` log-spaced from 10^-5 to 0.5. With the
    default 1,000 levels, consecutive tail knots differ by ~2.2 % in alert rate, so between
    0.05 % and 2 % the map has ~170 knots instead of the ~20 a uniform grid would give
    (and none at all between 0.1 % and 0 except the maximum). Levels are sorted, unique and
    include 0 and 1.
    """
    if n_quantiles < 10:
        raise ValueError(f"n_quantiles must be at least 10, got {n_quantiles!r}")
    n_uniform = n_quantiles // 2
    n_tail = n_quantiles - n_uniform
    uniform = np.linspace(0.0, 1.0, n_uniform)
    tail = 1.0 - np.geomspace(0.5, MIN_ALERT_RATE, n_tail)
    return np.unique(np.concatenate((uniform, tail)))


def _repeated_quantile(
    values: ScoreArray, ends: ScoreArray, total: float, levels: ScoreArray
) -> ScoreArray:
    """``numpy.quantile(repeated, levels)`` (linear) of the sorted sample in which
    ``values[i]`` fills positions ``[ends[i-1], ends[i])``, without building it.

    The same steps, in the same floating-point order, as numpy's linear method: virtual
    index ``(n - 1) · level``, its floor and the next position (both the last one at or past
    the end), ``gamma`` = index − floor, and numpy's ``_lerp`` (from the upper value when
    gamma >= 0.5), so integer weights give numpy's very bits.
    """
    virtual = (total - 1.0) * levels
    previous = np.floor(virtual)
    above = virtual >= total - 1.0
    below = virtual < 0.0
    next_ = previous + 1.0
    previous = np.where(above, total - 1.0, np.where(below, 0.0, previous))
    next_ = np.where(above, total - 1.0, np.where(below, 0.0, next_))
    # numpy's gamma uses the floor it indexes with; past the end that index is -1 (the last
    # element), which only matters through lerp(a, a, ·) = a.
    floor_index = np.where(above, -1.0, np.where(below, 0.0, np.floor(virtual)))
    gamma = virtual - floor_index
    a = values[np.searchsorted(ends, previous, side="right")]
    b = values[np.searchsorted(ends, next_, side="right")]
    diff = b - a
    out = a + diff * gamma
    upper = gamma >= 0.5
    out[upper] = (b - diff * (1.0 - gamma))[upper]
    return out


@dataclass(frozen=True, eq=False, slots=True)
class QuantileMap:
    """A fitted T^Q: strictly increasing ``source`` knots → non-decreasing ``target`` knots.

    Outside the knots it clamps: below ``source[0]`` to ``target[0]``, above ``source[-1]``
    to ``target[-1]``. ``levels[i]`` is the probability level of knot ``i`` (after ties were
    merged) and ``n_samples`` the size of the sample it was fitted on.
    """

    source: ScoreArray
    target: ScoreArray
    levels: ScoreArray
    n_samples: int
    # The tables, stored once (see __post_init__): ``_buf`` holds source knots, a +inf
    # sentinel, target knots, the last target again, then levels; ``_n`` is the knot count.
    _buf: array[float] = field(init=False, repr=False)
    _n: int = field(init=False, repr=False)
    _s_ext: ScoreArray = field(init=False, repr=False)
    _t_ext: ScoreArray = field(init=False, repr=False)
    _index: object = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        s, t, p = self.source, self.target, self.levels
        for name, arr in (("source", s), ("target", t), ("levels", p)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.ndim != 1:
                raise ValueError(f"QuantileMap.{name} must be a 1-D float64 array")
            if arr.size == 0 or not np.isfinite(arr).all():
                raise ValueError(f"QuantileMap.{name} must be non-empty and finite")
        if not (s.size == t.size == p.size):
            raise ValueError(
                f"source, target and levels must have equal lengths, got {s.size}, {t.size}, {p.size}"
            )
        if (np.diff(s) <= 0).any():
            raise ValueError("QuantileMap.source knots must be strictly increasing")
        if (np.diff(t) < 0).any() or t[0] < 0.0 or t[-1] > 1.0:
            raise ValueError("QuantileMap.target knots must be non-decreasing within [0, 1]")
        if (np.diff(p) <= 0).any() or p[0] < 0.0 or p[-1] > 1.0:
            raise ValueError("QuantileMap.levels must be strictly increasing within [0, 1]")
        if not (
            isinstance(self.n_samples, int)
            and not isinstance(self.n_samples, bool)
            and self.n_samples >= 1
        ):
            raise ValueError(
                f"QuantileMap.n_samples must be a positive int, got {self.n_samples!r}"
            )
        # Thousands of tenant maps stay resident, so the tables live in one ``array``
        # buffer (fast float indexing for the single-event path) that the numpy arrays of
        # the batch path view without copying; slopes are computed where used, not stored.
        # The sentinels make the segment after the last knot flat (slope 0). The inputs
        # are copied, never frozen in place.
        n = int(s.size)
        # Built from one bytes object: exactly sized (appending would over-allocate).
        buf = array("d", np.concatenate((s, [np.inf], t, t[-1:], p)).astype(np.float64).tobytes())
        whole = _view(buf)
        object.__setattr__(self, "_buf", buf)
        object.__setattr__(self, "_n", n)
        object.__setattr__(self, "source", whole[:n])
        object.__setattr__(self, "target", whole[n + 1 : 2 * n + 1])
        object.__setattr__(self, "levels", whole[2 * n + 2 :])
        object.__setattr__(self, "_s_ext", whole[: n + 1])
        object.__setattr__(self, "_t_ext", whole[n + 1 : 2 * n + 2])

    # -- fitting ------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        raw_scores: npt.ArrayLike,
        reference: Reference,
        n_quantiles: int = 1000,
        *,
        levels: npt.ArrayLike | None = None,
        weights: npt.ArrayLike | None = None,
    ) -> QuantileMap:
        """Fit T^Q on one tenant's raw aggregates so its mapped scores follow ``reference``.

        Source quantiles are ``numpy.quantile`` (linear) at ``levels`` (default
        :func:`default_levels` of ``n_quantiles``). Tree ensembles emit repeated scores, so
        several levels can share one source quantile; those knots are merged into one, placed
        at the middle of the tied value's probability span in the sample, so T^Q stays a
        function and a tied score gets the reference quantile of its median rank.

        ``weights`` (one per score, finite, >= 0, not all 0) weigh events, e.g. by age, so a
        refit can favour recent traffic without dropping older events. A weight of 2 counts
        the event twice: with integer weights the map is *exactly* the map of the sample with
        each event repeated that many times (same knots, bit for bit), and real weights
        interpolate between those. ``n_samples`` is then the total weight, rounded (at least
        1); a refit policy that needs the sample's statistical size uses the effective size
        of its weights (Kish) instead.
        """
        grid = default_levels(n_quantiles) if levels is None else _check_levels(levels)
        if weights is not None:
            return cls._fit_weighted(raw_scores, weights, reference, grid)
        x = np.sort(as_finite(raw_scores, "raw_scores").ravel())
        n = x.size
        if n == 0:
            raise ValueError("cannot fit a quantile map on an empty sample")
        q = np.quantile(x, grid)
        # np.quantile can return values one ulp out of order on nearly tied data.
        q = np.maximum.accumulate(q)
        src, first = np.unique(q, return_index=True)
        p = grid[first].copy()
        if n == 1:
            p[:] = 0.5
        else:
            lo = np.searchsorted(x, src, side="left")
            hi = np.searchsorted(x, src, side="right") - 1
            tied = hi > lo
            # With linear interpolation a value tied at sorted positions lo..hi is the
            # quantile at every level in [lo, hi] / (n - 1); its median rank is the middle.
            p[tied] = (lo[tied] + hi[tied]) / (2.0 * (n - 1))
        target = np.clip(reference.ppf(p), 0.0, 1.0)
        target = np.maximum.accumulate(target)
        return cls(source=src, target=target, levels=p, n_samples=int(n))

    @classmethod
    def _fit_weighted(
        cls,
        raw_scores: npt.ArrayLike,
        weights: npt.ArrayLike,
        reference: Reference,
        grid: ScoreArray,
    ) -> QuantileMap:
        """:meth:`fit` with event weights, on the sample "each event repeated w times".

        The repeated sample is never built (weights may be large or fractional): sorted
        position k of it is the event whose cumulative weight first exceeds k. numpy has no
        weighted linear quantile with this repetition semantics, so its linear method is
        mirrored here operation by operation (``_repeated_quantile``); a property test holds
        it to ``numpy.quantile`` of the repeated sample, bit for bit.
        """
        x = as_finite(raw_scores, "raw_scores").ravel()
        w = as_finite(weights, "weights").ravel()
        if w.shape != x.shape:
            raise ValueError(
                f"weights must give one weight per score: {w.size} weights for {x.size} scores"
            )
        if w.size and w.min() < 0.0:
            raise ValueError(f"weights must be >= 0, got {float(w.min())!r}")
        keep = w > 0.0
        x, w = x[keep], w[keep]
        if x.size == 0:
            raise ValueError("cannot fit a quantile map on an empty sample (no positive weight)")
        order = np.argsort(x, kind="stable")
        x, w = x[order], w[order]
        # Merge equal scores: one position span per distinct value.
        values, starts = np.unique(x, return_index=True)
        span = np.add.reduceat(w, starts)
        ends = np.cumsum(span)  # the repeated sample's positions of value i: [ends[i-1], ends[i])
        total = float(ends[-1])
        q = _repeated_quantile(values, ends, total, grid)
        q = np.maximum.accumulate(q)
        src, first = np.unique(q, return_index=True)
        p = grid[first].copy()
        if total <= 1.0:
            p[:] = 0.5
        else:
            # The repeated sample's integer positions holding the value: ceil(start) up to
            # ceil(end) - 1 (for integer weights, exactly the unweighted lo..hi).
            i = np.minimum(np.searchsorted(values, src), values.size - 1)
            lo = np.ceil(np.where(i > 0, ends[i - 1], 0.0))
            hi = np.minimum(np.ceil(ends[i]) - 1.0, np.floor(total - 1.0))
            tied = (values[i] == src) & (hi > lo)
            p[tied] = (lo[tied] + hi[tied]) / (2.0 * (total - 1.0))
        target = np.clip(reference.ppf(p), 0.0, 1.0)
        target = np.maximum.accumulate(target)
        return cls(source=src, target=target, levels=p, n_samples=max(1, round(total)))

    # -- mapping ------------------------------------------------------------------------

    def __call__(self, scores: npt.ArrayLike) -> ScoreArray:
        """Eq. 4 on an array of raw aggregates (non-finite input raises ValueError).

        The result has the shape of ``scores``; a scalar gives a 0-d array.
        """
        arr = as_finite(scores, "scores")
        return self.map_unchecked(np.atleast_1d(arr)).reshape(arr.shape)

    def map_unchecked(self, scores: ScoreArray) -> ScoreArray:
        """Eq. 4 for inputs known to be finite float64 (the predictor checked them)."""
        s = self.source
        x = np.clip(scores, s[0], s[-1])
        index = self._index if x.size >= _INDEX_MIN_BATCH else None
        if index is None and x.size >= _INDEX_MIN_BATCH:
            index = _BucketIndex.build(s)
            object.__setattr__(self, "_index", index if index is not None else _NO_INDEX)
        if isinstance(index, _BucketIndex):
            j = index.locate(x)
        else:
            j = np.searchsorted(s, x, side="right") - 1
        s_ext, t_ext = self._s_ext, self._t_ext
        t_j = t_ext[j]
        t_next = t_ext[j + 1]
        s_j = s_ext[j]
        # Knots can be a few ulps apart (subnormal gaps); an overflowing slope is capped so
        # that 0 · slope stays 0 and the clamp to the next knot bounds the rest.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            slope = (t_next - t_j) / (s_ext[j + 1] - s_j)
            np.minimum(slope, _MAX, out=slope)
            out = x - s_j
            out *= slope
        out += t_j
        # Rounding can push the last ulp past the next knot; clamping keeps T^Q monotone.
        return np.minimum(out, t_next, out=out)

    def map_one(self, score: float) -> float:
        """Eq. 4 for one finite score, with plain floats: the single-event fast path.

        Same arithmetic, in the same order, as the vectorised path, so both agree bit for bit.
        """
        buf = self._buf
        n = self._n
        x = min(max(score, buf[0]), buf[n - 1])
        j = bisect.bisect_right(buf, x, 0, n) - 1
        t_j = buf[n + 1 + j]
        t_next = buf[n + 2 + j]
        slope = min((t_next - t_j) / (buf[j + 1] - buf[j]), _MAX)
        return min((x - buf[j]) * slope + t_j, t_next)

    def compact(self, tolerance: float) -> QuantileMap:
        """The same map with fewer knots: every alert rate it implies moves by at most
        ``tolerance`` of itself (0.002: an alert rate of 1 % stays within 0.998–1.002 %).

        Why: each tenant's map is resident on every replica; 10,000 maps of 1,000 knots are
        ~240 MB. The default grid puts ~500 knots in the tail where sampling noise is far
        larger than the gap between neighbouring knots; a knot whose removal changes no
        alert rate by more than ``tolerance`` carries nothing a threshold can see. Kept
        knots are original knots (exact), and T^Q and the thinned map differ only between
        them. Knots are removed in passes over every other remaining knot, each checked
        against every original knot of the segment it would join (the error of a
        piecewise-linear map peaks at knots), in alert rate through the map's own
        (target, level) pairs. ``tolerance`` 0 returns the map itself.
        """
        if not 0.0 <= tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
        n = self._n
        if tolerance == 0.0 or n <= 2:
            return self
        s, t, p = self.source, self.target, self.levels
        alert = 1.0 - p
        limit = tolerance * alert
        keep = np.ones(n, dtype=bool)
        removed = n
        # Passes until one removes under 5 % of what remains: later passes find a knot or
        # two at the cost of a whole pass (the load time of 10,000 maps is the budget).
        while removed * 20 >= int(keep.sum()):
            removed = 0
            for start in (1, 2):
                kept = np.flatnonzero(keep)
                candidates = kept[start:-1:2]
                if candidates.size == 0:
                    continue
                trial = keep.copy()
                trial[candidates] = False
                k = np.flatnonzero(trial)
                mapped = np.interp(s, s[k], t[k])
                error = np.abs((1.0 - np.interp(mapped, t, p)) - alert)
                # Segment of each original knot (kept knots before it), and whether any
                # knot of a segment is off by more than the limit.
                segment = np.cumsum(trial)
                bad = np.bincount(segment, weights=error > limit, minlength=k.size + 1) > 0
                ok = ~bad[segment[candidates]]
                if ok.any():
                    keep[candidates[ok]] = False
                    removed += int(ok.sum())
        if keep.all():
            return self
        return QuantileMap(
            source=s[keep].copy(),
            target=t[keep].copy(),
            levels=p[keep].copy(),
            n_samples=self.n_samples,
        )

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; ``from_dict(json.loads(json.dumps(d)))`` rebuilds it exactly."""
        return {
            "format": FORMAT,
            "n_samples": self.n_samples,
            "levels": self.levels.tolist(),
            "source": self.source.tolist(),
            "target": self.target.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantileMap:
        """Rebuild a map written by :meth:`to_dict`, re-checking every invariant."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a quantile map is a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise ValueError(
                f"expected a quantile map of format {FORMAT!r}, got {d.get('format')!r}"
            )
        try:
            return cls(
                source=np.array(d["source"], dtype=np.float64),
                target=np.array(d["target"], dtype=np.float64),
                levels=np.array(d["levels"], dtype=np.float64),
                n_samples=d["n_samples"],
            )
        except KeyError as e:
            raise ValueError(f"quantile map is missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, ValueError) and str(e).startswith("QuantileMap"):
                raise
            raise ValueError(f"malformed quantile map: {e}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileMap):
            return NotImplemented
        return (
            self.n_samples == other.n_samples
            and np.array_equal(self.source, other.source)
            and np.array_equal(self.target, other.target)
            and np.array_equal(self.levels, other.levels)
        )

    def __hash__(self) -> int:
        return hash((self.n_samples, self.source.tobytes(), self.target.tobytes()))

    def __repr__(self) -> str:
        return f"QuantileMap(knots={self.source.size}, n_samples={self.n_samples})"


_MAX = float(np.finfo(np.float64).max)


def _view(buffer: array[float]) -> ScoreArray:
    view: ScoreArray = np.frombuffer(buffer, dtype=np.float64)
    view.flags.writeable = False
    return view


#: Batches at least this large locate knots through a bucket index (built on first use).
_INDEX_MIN_BATCH = 512
_NO_INDEX = object()


class _BucketIndex:
    """Locates each score's knot interval in O(1) instead of a binary search.

    ``np.searchsorted`` over ~1,000 knots costs ~60 ns per unsorted score (its branches
    mispredict), more than the rest of the pipeline together. Here the knot range is cut
    into equal buckets, each remembering the last knot at or below its start; a score then
    needs its bucket and at most ``steps`` forward moves. The bucket count is the smallest
    power of 4 (up to 65,536) that keeps ``steps`` at 2 or less; maps whose knots crowd
    beyond that keep the binary search. A final check sends any score whose interval came
    out wrong (float rounding at bucket edges) back to the binary search, so the result is
    always exactly ``searchsorted``'s.
    """

    __slots__ = ("_first", "_lo", "_scale", "_source", "_source_ext", "_steps", "_top")

    def __init__(
        self,
        source: ScoreArray,
        first: npt.NDArray[np.integer],
        lo: float,
        scale: float,
        steps: int,
    ) -> None:
        self._source = source
        self._source_ext = np.append(source, np.inf)
        self._first = first
        self._lo = lo
        self._scale = scale
        self._steps = steps
        self._top = first.size - 1

    @classmethod
    def build(cls, source: ScoreArray) -> _BucketIndex | None:
        k = source.size
        span = float(source[-1] - source[0])
        if k < 8 or not span > 0:
            return None
        lo = float(source[0])
        for buckets in (256, 1024, 4096, 16384, 65536):
            scale = buckets / span
            edges = lo + np.arange(buckets + 1) / scale
            first = np.searchsorted(source, edges[:-1], side="right") - 1
            last = np.searchsorted(source, edges[1:], side="right") - 1
            steps = int((last - first).max())
            if steps <= 2:
                dtype = np.int16 if k < np.iinfo(np.int16).max else np.int32
                return cls(source, np.maximum(first, 0).astype(dtype), lo, scale, steps)
        return None

    def locate(self, x: ScoreArray) -> npt.NDArray[np.intp]:
        """Index ``j`` of the last knot ``<= x`` for each (clipped) score ``x``."""
        b = ((x - self._lo) * self._scale).astype(np.intp)
        np.clip(b, 0, self._top, out=b)
        j = self._first[b].astype(np.intp)
        ext = self._source_ext
        for _ in range(self._steps):
            j += ext[j + 1] <= x
        bad = (self._source[j] > x) | (ext[j + 1] <= x)
        if bad.any():
            j[bad] = np.searchsorted(self._source, x[bad], side="right") - 1
        return j


def _check_levels(levels: npt.ArrayLike) -> ScoreArray:
    p = as_finite(levels, "levels").ravel()
    if p.size < 2 or p[0] < 0.0 or p[-1] > 1.0 or (np.diff(p) <= 0).any():
        raise ValueError("levels must be at least 2 strictly increasing values within [0, 1]")
    return p
