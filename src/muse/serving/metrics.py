"""Prometheus metrics of one service process (``GET /metrics``).

Label children are cached: ``metric.labels(...)`` costs more than the observation itself,
and it runs on every request. The final-score histogram per tenant and predictor is the
distribution tenants' thresholds depend on — drift there is what an operator must see.

The two per-event histograms (latency and final score by tenant, predictor and role) are a
collector of our own, :class:`_Histograms`: prometheus-client observes one value at a
time (a lock and a Python loop over the buckets, ~1.5 µs), which made metrics a tenth of a
100-event batch's CPU; here a batch's scores go into their buckets at once per (tenant,
predictor): ``bisect`` for a few, one ``np.searchsorted`` for many. prometheus-client
still writes the text format (buckets, ``_count``, ``_sum``; no ``_created`` samples).
NaN is not observed.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import utils as _prometheus_utils
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from muse.serving.protocol import CLOSED

if TYPE_CHECKING:
    from muse.service import ScoreResult
    from muse.serving.multiprocess import SharedMetrics

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How prometheus-client writes a bucket's ``le`` label (untyped there).
_go_float: Callable[[float], str] = _prometheus_utils.floatToGoString
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.3, 1.0, 3.0,
)  # fmt: skip
#: Feature-store lookups: ~1 µs (in-process table) to a timeout (tens of ms).
_STORE_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
)  # fmt: skip
_SCORE_BUCKETS = (
    0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
)  # fmt: skip


class _LakeCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Any]:
        counts = self._read()
        for name in ("written_rows", "dropped_rows", "lost_rows", "failed_files", "write_retries"):
            c = CounterMetricFamily(f"muse_lake_{name}", f"Score lake {name.replace('_', ' ')}.")
            c.add_metric([], counts.get(name, 0))
            yield c
        g = GaugeMetricFamily("muse_lake_pending_rows", "Rows waiting to be written.")
        g.add_metric([], counts.get("pending_rows", 0))
        yield g


class _ConnectionCollector(Collector):
    """Connections the server closed by a deadline (:mod:`muse.serving.protocol`)."""

    def collect(self) -> Iterable[Any]:
        c = CounterMetricFamily(
            "muse_connections_closed",
            "Connections closed for arriving too slowly, by reason (idle: no byte sent; "
            "header_timeout, body_timeout: answered 408).",
            labels=("reason",),
        )
        for reason in ("idle", "header_timeout", "body_timeout"):
            c.add_metric([reason], CLOSED[reason])
        yield c


class _Series:
    __slots__ = ("counts", "total")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)  # per bucket, not cumulative; last: above every bound
        self.total = 0.0


#: Up to this many values a batch is bucketed with ``bisect`` in Python; beyond, with numpy
#: (whose ~8 calls cost ~10 µs whatever the size: a micro-batch averages ~6 events).
_LOOP_VALUES = 32


class _Histograms(Collector):
    """One histogram per label-value tuple, observed one value or many at a time."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._bounds = [float(b) for b in buckets]
        self._np_bounds = np.asarray(self._bounds)
        self._le = [_go_float(b) for b in self._bounds]
        self._series: dict[tuple[str, ...], _Series] = {}
        self._lock = threading.Lock()  # the event loop and the shadow thread both observe

    def _get(self, key: tuple[str, ...]) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(len(self._bounds))
        return series

    def observe(self, key: tuple[str, ...], value: float, times: int = 1) -> None:
        """``value`` observed ``times`` times (a bucket's upper bound is inclusive)."""
        if value != value:  # NaN: in no bucket (scores and latencies are never NaN)
            return
        i = bisect_left(self._bounds, value)
        with self._lock:
            series = self._get(key)
            series.counts[i] += times
            series.total += value * times

    def observe_many(self, key: tuple[str, ...], values: Sequence[float]) -> None:
        if len(values) <= _LOOP_VALUES:
            bounds = self._bounds
            kept = [v for v in values if v == v]  # NaN in no bucket
            with self._lock:
                series = self._get(key)
                counts = series.counts
                for v in kept:
                    counts[bisect_left(bounds, v)] += 1
                series.total += sum(kept)
            return
        arr = np.asarray(values, dtype=np.float64)
        nan = np.isnan(arr)
        if nan.any():
            arr = arr[~nan]
        per_bucket = np.bincount(
            np.searchsorted(self._np_bounds, arr, side="left"), minlength=len(self._bounds) + 1
        ).tolist()
        total = float(arr.sum())
        with self._lock:
            series = self._get(key)
            counts = series.counts
            for i, c in enumerate(per_bucket):
                counts[i] += c
            series.total += total

    def value(self, key: tuple[str, ...]) -> tuple[list[int], float]:
        """Cumulative counts per bucket (the last: +Inf) and the sum, for tests and tools."""
        with self._lock:
            series = self._series.get(key)
            if series is None:
                return [0] * (len(self._bounds) + 1), 0.0
            return list(accumulate(series.counts)), series.total

    def collect(self) -> Iterable[Any]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(k, list(s.counts), s.total) for k, s in self._series.items()]
        for key, counts, total in snapshot:
            cumulative = list(accumulate(counts))
            buckets = [*zip(self._le, cumulative, strict=False), ("+Inf", cumulative[-1])]
            family.add_metric(list(key), buckets, sum_value=total)
        yield family


class Metrics:
    """The service's metrics, in a registry of their own (one per app instance)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        r.register(_ConnectionCollector())
        self.latency = _Histograms(
            "muse_request_duration_seconds",
            "Time to score, by tenant, predictor and role (live: request; shadow: shadow work).",
            ("tenant", "predictor", "role"),
            _LATENCY_BUCKETS,
        )
        r.register(self.latency)
        self.responses = Counter(
            "muse_responses_total",
            "HTTP responses by path and status.",
            ("path", "status"),
            registry=r,
        )
        self.shadow_shed = Counter(
            "muse_shadow_shed_total",
            "Shadow scorings shed under overload.",
            ("predictor",),
            registry=r,
        )
        self.shadow_failed = Counter(
            "muse_shadow_failed_total", "Shadow scorings that failed.", ("predictor",), registry=r
        )
        self.scores = _Histograms(
            "muse_score",
            "Final scores by tenant and predictor: the distribution thresholds depend on.",
            ("tenant", "predictor", "role"),
            _SCORE_BUCKETS,
        )
        r.register(self.scores)
        self.split_events = Counter(
            "muse_split_events_total",
            "Events a canary split sent to each arm, by tenant and arm (the arm's predictor): "
            "the observed split. Latency and scores per arm are the predictor's live series.",
            ("tenant", "arm"),
            registry=r,
        )
        self.ready = Gauge("muse_ready", "1 when the service accepts traffic.", registry=r)
        self.reloads = Counter(
            "muse_config_reloads_total", "Config reloads by outcome.", ("outcome",), registry=r
        )
        self.store_latency = Histogram(
            "muse_feature_store_duration_seconds",
            "Time of one feature-store lookup (all entities of a batch), by store kind.",
            ("store",),
            registry=r,
            buckets=_STORE_BUCKETS,
        )
        self.store_errors = Counter(
            "muse_feature_store_errors_total",
            "Feature-store lookups that failed (timeout, unavailable, circuit_open, error) and "
            "stored values that were unusable (invalid_value), by store kind.",
            ("store", "reason"),
            registry=r,
        )
        self.store_circuit_open = Gauge(
            "muse_feature_store_circuit_open",
            "1 while the feature store's circuit breaker fails lookups fast (open or probing).",
            registry=r,
        )
        self.version = Gauge(
            "muse_version_info",
            "1 for the version each replica (worker process) serves: an operator sees a "
            "fleet converge on one version.",
            ("replica", "version"),
            registry=r,
        )
        self.switches = Counter(
            "muse_version_switches_total",
            "Times this replica switched to another version of its deployment store.",
            registry=r,
        )
        self.promotion_answers = Counter(
            "muse_promotion_answers_total",
            "Promoted versions this replica prepared or refused.",
            ("answer",),
            registry=r,
        )
        self.deployment_store_errors = Counter(
            "muse_deployment_store_errors_total",
            "Polls of the deployment store that failed (the replica kept serving).",
            registry=r,
        )
        self._serving: tuple[str, str] | None = None
        self._shared: SharedMetrics | None = None
        self._children: dict[tuple[Any, ...], Any] = {}

    def serving(self, replica: str, version: str) -> None:
        """Replica ``replica`` now serves ``version`` (the previous one's series removed)."""
        if self._serving is not None and self._serving != (replica, version):
            self.version.remove(*self._serving)
        self._serving = (replica, version)
        self.version.labels(replica, version).set(1)

    def fetched(self, store: str, seconds: float) -> None:
        """A feature-store lookup answered (the :class:`~muse.featurestore.StoreObserver` side)."""
        key = ("store", store)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.store_latency.labels(store)
        child.observe(seconds)

    def failed(self, store: str, reason: str) -> None:
        """A feature-store lookup failed, or a stored value was unusable."""
        self.store_errors.labels(store, reason).inc()

    def watch_circuit(self, read: Callable[[], bool]) -> None:
        """Report ``read()`` (is the store's circuit open?) at every scrape."""
        self.store_circuit_open.set_function(lambda: 1.0 if read() else 0.0)

    def watch_lake(self, read: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_LakeCollector(read))

    def observe(self, tenant: str, predictor: str, role: str, seconds: float, score: float) -> None:
        """One event's final score and the time it took."""
        key = (tenant, predictor, role)
        self.latency.observe(key, seconds)
        self.scores.observe(key, score)

    def observe_live(self, results: Sequence[ScoreResult], seconds: float) -> None:
        """The live scores of one request's events, which all took ``seconds``."""
        if len(results) == 1:
            r = results[0]
            self.observe(r.intent["tenant"], r.live.predictor, "live", seconds, r.live.score)
            if r.arm is not None:
                self._arm(r.intent["tenant"], r.arm, 1)
            return
        groups: dict[tuple[str, str, str], list[float]] = {}
        arms: dict[tuple[str, str], int] | None = None
        for r in results:
            key = (r.intent["tenant"], r.live.predictor, "live")
            scores = groups.get(key)
            if scores is None:
                scores = groups[key] = []
            scores.append(r.live.score)
            if r.arm is not None:
                arms = arms or {}
                arms[key[0], r.arm] = arms.get((key[0], r.arm), 0) + 1
        self._observe_groups(groups, seconds)
        for (tenant, arm), n in (arms or {}).items():
            self._arm(tenant, arm, n)

    def _arm(self, tenant: str, arm: str, n: int) -> None:
        key = ("arm", tenant, arm)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.split_events.labels(tenant, arm)
        child.inc(n)

    def observe_shadows(self, results: Sequence[ScoreResult], seconds: float) -> None:
        """Every shadow score of a piece of shadow work, which took ``seconds``."""
        groups: dict[tuple[str, str, str], list[float]] = {}
        for r in results:
            for s in r.shadows:
                key = (r.intent["tenant"], s.predictor, "shadow")
                scores = groups.get(key)
                if scores is None:
                    scores = groups[key] = []
                scores.append(s.score)
        self._observe_groups(groups, seconds)

    def _observe_groups(
        self, groups: dict[tuple[str, str, str], list[float]], seconds: float
    ) -> None:
        for key, scores in groups.items():
            self.latency.observe(key, seconds, len(scores))
            if len(scores) == 1:
                self.scores.observe(key, scores[0])
            else:
                self.scores.observe_many(key, scores)

    def response(self, path: str, status: int) -> None:
        key = ("r", path, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.responses.labels(path, str(status))
        child.inc()

    def share(self, folder: Path) -> None:
        """Serve every worker's metrics from any worker (:mod:`muse.serving.multiprocess`)."""
        from muse.serving.multiprocess import SharedMetrics

        self._shared = SharedMetrics(self.registry, folder)
        self._shared.start()

    def unshare(self) -> None:
        if self._shared is not None:
            self._shared.stop()

    def render(self) -> bytes:
        if self._shared is not None:
            return self._shared.render()
        return generate_latest(self.registry)
