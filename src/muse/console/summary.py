"""Histograms of the score lake, kept up to date file by file, so no page view scans the lake.

Every question the console asks of the lake — events per day, alert rates at a tenant's
thresholds, the drift verdict, the alignment of a tenant's scores to R bin by bin — is a
question about *how many final scores fall where*. So the console keeps, per (predictor,
day, tenant, role, map version), the count of scores in each bin of a fixed set of score
edges, and answers from those counts:

* the edges of a predictor are its reference's quantiles at every percent, at the model-CI
  gate's tail levels, and at the thresholds of every alert level the drift monitor judges
  (the default levels and each tenant's own, ``F_R⁻¹(1 − a)`` exactly as
  :func:`~muse.fitting.level_threshold` computes it), so alert counts are exact, not
  interpolated;
* bins are right-closed ``(e_i, e_i+1]``: a bin above a threshold holds exactly the scores
  ``> t`` that alert, as the drift monitor counts them;
* lake files are immutable once they have their final name (``muse.scorelog.layout``), so
  each file is read once (five columns, by pyarrow) and :meth:`LakeSummary.refresh` only
  reads the files that appeared since the last call.

Memory: one ``int64`` per bin (~130) per key; 1,000 tenants × 30 days × two predictors is
about 60 MB. Keys age out with ``keep_days``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.evaluation.compare import GATE_LEVELS
from muse.fitting.drift import DEFAULT_LEVELS, level_threshold
from muse.transforms import Reference

__all__ = ["PERCENTS", "BinCounts", "Binning", "LakeSummary", "SummaryKey", "score_edges"]

#: Columns read from each lake file (``predictor`` and ``date`` come from its path).
_COLUMNS = ["tenant", "role", "tq_version", "score", "timestamp"]
Counts = npt.NDArray[np.int64]
#: R's quantile levels at every percent: edges of every histogram (and, every tenth, the
#: deciles of the alignment chart — the same floats, so the cuts are exact).
PERCENTS = np.linspace(0.0, 1.0, 101)


def score_edges(
    reference: Reference, levels: Iterable[float] = (), thresholds: Iterable[float] = ()
) -> npt.NDArray[np.float64]:
    """The score edges of a predictor's histograms: R's quantiles at every percent and at the
    gate's tail levels, the threshold of every alert level in ``levels`` (with
    :data:`~muse.fitting.DEFAULT_LEVELS`) and the tenants' own ``thresholds``."""
    u = np.union1d(PERCENTS, np.asarray(GATE_LEVELS, dtype=np.float64))
    u = u[(u > 0.0) & (u < 1.0)]
    at_levels = [level_threshold(reference, a) for a in {*DEFAULT_LEVELS, *levels}]
    edges = np.concatenate(
        [
            np.asarray(reference.ppf(u), dtype=np.float64),
            np.asarray(at_levels, dtype=np.float64),
            np.asarray(list(thresholds), dtype=np.float64),
        ]
    )
    return np.unique(edges[np.isfinite(edges)])


@dataclass(frozen=True, slots=True)
class Binning:
    """What a predictor's histograms are cut by: its reference, the alert levels judged on
    it and the tenants' thresholds (in score space)."""

    reference: Reference
    levels: tuple[float, ...] = ()
    thresholds: tuple[float, ...] = ()

    def edges(self) -> npt.NDArray[np.float64]:
        return score_edges(self.reference, self.levels, self.thresholds)


@dataclass(frozen=True, slots=True, order=True)
class SummaryKey:
    """What one histogram counts: one predictor's rows of one UTC day, tenant, role, map."""

    predictor: str
    day: date
    tenant: str
    role: str
    tq_version: str


@dataclass(frozen=True, slots=True)
class BinCounts:
    """Summed counts over some keys: ``counts[i]`` scores in ``(edges[i-1], edges[i]]``
    (the first bin from −∞, the last to +∞)."""

    edges: npt.NDArray[np.float64]
    counts: Counts
    #: ``F_R(edges)`` when the summary knows R (spares every tenant's KS a CDF call).
    edge_cdf: npt.NDArray[np.float64] | None = None

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def above(self, threshold: float) -> int:
        """How many scores are ``> threshold``; ``threshold`` must be one of the edges."""
        i = int(np.searchsorted(self.edges, threshold))
        if i >= self.edges.size or self.edges[i] != threshold:
            raise ValueError(f"{threshold!r} is not an edge of these histograms")
        return int(self.counts[i + 1 :].sum())

    def ks(self, reference: Reference) -> float:
        """The Kolmogorov–Smirnov distance to R at the edges (a lower bound of the exact
        one, which needs every score; within a percent of R's mass of it)."""
        if self.n == 0:
            return 0.0
        empirical = np.cumsum(self.counts[:-1]) / self.n
        cdf = self.edge_cdf if self.edge_cdf is not None else reference.cdf(self.edges)
        return float(np.max(np.abs(empirical - cdf)))


class LakeSummary:
    """Histograms of a score lake at ``url`` (a folder or fsspec URL), per predictor with the
    score edges of its :class:`Binning`; rows of other predictors are skipped. Thread-safe: :meth:`refresh` may run in a background thread
    while pages read.
    """

    def __init__(
        self,
        url: str,
        predictors: Mapping[str, Binning],
        *,
        keep_days: int | None = None,
    ) -> None:
        self.url = url
        self.references = {p: b.reference for p, b in predictors.items()}
        self.edges = {p: b.edges() for p, b in predictors.items()}
        self.edge_cdf = {
            p: np.asarray(b.reference.cdf(self.edges[p]), dtype=np.float64)
            for p, b in predictors.items()
        }
        self.keep_days = keep_days
        self._counts: dict[SummaryKey, Counts] = {}
        #: (predictor, tenant) → its keys: a tenant's page reads its own keys, not all of them.
        self._index: dict[tuple[str, str], set[SummaryKey]] = {}
        #: Events per key (the sum of its histogram), kept so totals need no sums.
        self._events: dict[SummaryKey, int] = {}
        #: Predictors each tenant has rows of.
        self._tenant_predictors: dict[str, set[str]] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._fs: Any = None
        self._root = ""
        self.files_read = 0
        self.rows_read = 0
        #: Files that could not be summarised (corrupt, another schema, a bad partition),
        #: with why: skipped, not retried, so one bad file never hides the later ones.
        self.unreadable: dict[str, str] = {}

    # -- reading the lake ---------------------------------------------------------------

    def refresh(self) -> int:
        """Read the lake files not read yet; returns how many there were."""
        fs, root = self._filesystem()
        try:
            fs.invalidate_cache(root)
            paths = [p for p in fs.find(root) if _is_data_file(p)]
        except FileNotFoundError:
            return 0
        new = sorted(p for p in paths if p not in self._seen)
        for path in new:
            try:
                self._read(fs, path)
            except Exception as e:  # any reader error concerns this file only
                with self._lock:
                    self._seen.add(path)
                    self.unreadable[path] = f"{type(e).__name__}: {e}"
        if self.keep_days is not None and new:
            self._age_out()
        return len(new)

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            import fsspec  # type: ignore[import-untyped, unused-ignore]

            self._fs, root = fsspec.core.url_to_fs(self.url)
            self._root = str(root).rstrip("/")
        return self._fs, self._root

    def _read(self, fs: Any, path: str) -> None:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        parts = dict(segment.split("=", 1) for segment in path.split("/") if "=" in segment)
        predictor = parts.get("predictor", "")
        edges = self.edges.get(predictor)
        if edges is None or "date" not in parts:
            self._seen.add(path)
            return
        day = date.fromisoformat(parts["date"])
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=_COLUMNS[:4], partitioning=None)
        scores = np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
        bins = np.searchsorted(edges, scores, side="left")  # (e_i-1, e_i] -> i
        # One integer per (tenant, role, map version), from Arrow's dictionary encoding:
        # no Python object per row (a file holds up to max_rows_per_file rows).
        names, codes = [], []
        for column in _COLUMNS[:3]:
            encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
            names.append(encoded.dictionary.to_pylist())
            codes.append(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
        n_role, n_version = max(len(names[1]), 1), max(len(names[2]), 1)
        ok = (codes[0] >= 0) & (codes[1] >= 0) & (codes[2] >= 0) & np.isfinite(scores)
        code = (codes[0].astype(np.int64) * n_role + codes[1]) * n_version + codes[2]
        unique, inverse = np.unique(code[ok], return_inverse=True)
        width = edges.size + 1
        flat = np.bincount(inverse * width + bins[ok], minlength=unique.size * width)
        flat = flat.reshape(unique.size, width).astype(np.int64)
        groups: dict[tuple[str, str, str], Counts] = {}
        for j, c in enumerate(unique.tolist()):
            t, rest = divmod(c, n_role * n_version)
            r, v = divmod(rest, n_version)
            groups[names[0][t], names[1][r], names[2][v]] = flat[j]
        with self._lock:
            for (t, r, v), counts in groups.items():
                key = SummaryKey(predictor, day, str(t), str(r), str(v))
                held = self._counts.get(key)
                self._counts[key] = counts if held is None else held + counts
                self._index.setdefault((predictor, key.tenant), set()).add(key)
                self._events[key] = self._events.get(key, 0) + int(counts.sum())
                self._tenant_predictors.setdefault(key.tenant, set()).add(predictor)
            self._seen.add(path)
            self.files_read += 1
            self.rows_read += int(ok.sum())

    def _age_out(self) -> None:
        assert self.keep_days is not None
        with self._lock:
            newest = max((k.day for k in self._counts), default=None)
            if newest is None:
                return
            oldest = newest - timedelta(days=self.keep_days - 1)
            for key in [k for k in self._counts if k.day < oldest]:
                del self._counts[key]
                del self._events[key]
                self._index[key.predictor, key.tenant].discard(key)

    # -- questions ------------------------------------------------------------------------

    def keys(self) -> list[SummaryKey]:
        with self._lock:
            return sorted(self._counts)

    def days(self) -> tuple[date, date] | None:
        """The first and last day with rows, if any."""
        with self._lock:
            if not self._counts:
                return None
            days = [k.day for k in self._counts]
        return min(days), max(days)

    def counts(
        self,
        predictor: str,
        *,
        tenant: str | None = None,
        role: str | None = None,
        tq_version: str | None = None,
        first: date | None = None,
        last: date | None = None,
    ) -> BinCounts:
        """The summed histogram of ``predictor``'s keys matching every given filter."""
        edges = self.edges[predictor]
        total = np.zeros(edges.size + 1, dtype=np.int64)
        with self._lock:
            keys = self._counts if tenant is None else self._index.get((predictor, tenant), ())
            for key in keys:
                counts = self._counts[key]
                if (
                    key.predictor == predictor
                    and (tenant is None or key.tenant == tenant)
                    and (role is None or key.role == role)
                    and (tq_version is None or key.tq_version == tq_version)
                    and (first is None or key.day >= first)
                    and (last is None or key.day <= last)
                ):
                    total += counts
        return BinCounts(edges, total, self.edge_cdf[predictor])

    def totals(
        self,
        *,
        role: str | None = None,
        first: date | None = None,
        last: date | None = None,
        tenant: str | None = None,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (tenant, predictor): events, days with events, and the newest map version
        seen (with its day) — one pass over the keys (``tenant``'s only, if given)."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        with self._lock:
            if tenant is None:
                keys: Iterable[SummaryKey] = self._events
            else:
                keys = [
                    k
                    for p in self._tenant_predictors.get(tenant, ())
                    for k in self._index.get((p, tenant), ())
                ]
            for key in keys:
                if (role is not None and key.role != role) or (
                    (first is not None and key.day < first) or (last is not None and key.day > last)
                ):
                    continue
                row = out.setdefault(
                    (key.tenant, key.predictor),
                    {"events": 0, "days": set(), "latest": ("", date.min)},
                )
                row["events"] += self._events[key]
                row["days"].add(key.day)
                if key.day >= row["latest"][1]:
                    row["latest"] = (key.tq_version, key.day)
        return out

    def per_day(
        self, predictor: str, tenant: str, thresholds: Mapping[str, float], *, role: str = "live"
    ) -> list[dict[str, Any]]:
        """Per day: events and the alert rate at each named threshold (which must be edges)."""
        by_day: dict[date, Counts] = {}
        with self._lock:
            for key in self._index.get((predictor, tenant), ()):
                counts = self._counts[key]
                if key.role == role:
                    held = by_day.get(key.day)
                    by_day[key.day] = counts.copy() if held is None else held + counts
        edges = self.edges[predictor]
        out = []
        for day in sorted(by_day):
            hist = BinCounts(edges, by_day[day])
            n = hist.n
            rates = {name: (hist.above(t) / n if n else 0.0) for name, t in thresholds.items()}
            out.append({"day": day, "events": n, "alert_rates": rates})
        return out


def _is_data_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("part-") and name.endswith(".parquet")
