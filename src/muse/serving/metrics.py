"""Prometheus metrics of one service process (``GET /metrics``).

Label children are cached: ``metric.labels(...)`` costs more than the observation itself,
and it runs on every request. The final-score histogram per tenant and predictor is the
distribution tenants' thresholds depend on — drift there is what an operator must see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
        for name in ("written_rows", "dropped_rows", "lost_rows", "failed_files"):
            c = CounterMetricFamily(f"muse_lake_{name}", f"Score lake {name.replace('_', ' ')}.")
            c.add_metric([], counts.get(name, 0))
            yield c
        g = GaugeMetricFamily("muse_lake_pending_rows", "Rows waiting to be written.")
        g.add_metric([], counts.get("pending_rows", 0))
        yield g


class Metrics:
    """The service's metrics, in a registry of their own (one per app instance)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.latency = Histogram(
            "muse_request_duration_seconds",
            "Time to score, by tenant, predictor and role (live: request; shadow: shadow work).",
            ("tenant", "predictor", "role"),
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
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
        self.scores = Histogram(
            "muse_score",
            "Final scores by tenant and predictor: the distribution thresholds depend on.",
            ("tenant", "predictor", "role"),
            registry=r,
            buckets=_SCORE_BUCKETS,
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
        self._children: dict[tuple[Any, ...], Any] = {}

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
        key = (tenant, predictor, role)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (
                self.latency.labels(tenant, predictor, role),
                self.scores.labels(tenant, predictor, role),
            )
        pair[0].observe(seconds)
        pair[1].observe(score)

    def response(self, path: str, status: int) -> None:
        key = ("r", path, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.responses.labels(path, str(status))
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
