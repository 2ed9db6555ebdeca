"""Warm-up: synthetic requests that take a new snapshot down every path real ones will.

A runtime's first call is slow (ONNX Runtime plans its graph, LightGBM and XGBoost build
their predictors, numpy's first ufunc loops are compiled), and so is the first lookup on a
fresh store connection. A replica that turned ready — or a promotion that switched —
before those ran would serve its first requests late (paper §3.1.2 warms pods up before
they take traffic). So before a snapshot is activated, :func:`warm_up_requests` builds
requests from the routing itself — one intent per scoring and shadow rule, so every live
and shadow predictor is reached *through the router* — and the caller sends them down its
own request path: :func:`warm_up` here for the library (:func:`muse.scoring.score_live`,
the deferred shadows), the HTTP app's warmer for a server (decode, micro-batcher, worker
threads). Predictors no rule reaches are scored directly, so they are warm too if a
reload later routes to them.

Every request comes in both shapes a client sends — single events and a batch — and, with
a feature store, once more without the features the store provides, so the store's
lookup path runs (a required feature the store has no value for is then an expected
:class:`~muse.errors.FeatureError`, counted, not raised). Nothing is written anywhere:
warm-up results are dropped, not logged to the lake nor counted in metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from muse.errors import FeatureError, FeatureStoreError
from muse.features.table import FeatureTable
from muse.routing import ScoringRule, ShadowRule
from muse.scoring import LiveOutcome, ScoreResult, score_live
from muse.snapshot import Snapshot
from muse.types import Intent

__all__ = [
    "WarmUpReport",
    "WarmUpRequest",
    "Warmer",
    "run_request",
    "warm_unrouted",
    "warm_up",
    "warm_up_requests",
]

#: Tenant (and attribute value) of intents whose rule does not name one.
WARM_UP_TENANT = "-warm-up-"
#: Single-event requests per rule (each a separate micro-batch candidate).
_SINGLES = 16


@dataclass(frozen=True, slots=True)
class WarmUpRequest:
    """One synthetic request: events as a client would send them (intent, features)."""

    intents: tuple[Intent, ...]
    features: tuple[dict[str, float], ...]
    #: Sent as single-event requests (True) or as one batch.
    single: bool
    #: The features the store provides were left out, so the store is asked for them.
    uses_store: bool

    @property
    def n_events(self) -> int:
        return len(self.intents)


@dataclass(slots=True)
class WarmUpReport:
    """What a warm-up scored: which predictors, live and shadow, on how many events.

    Kept on the prepared version and shown by ``GET /admin/config``, so an operator (and a
    test) sees that warm-up reached every predictor through the request path.
    """

    requests: int = 0
    events: int = 0
    #: Predictor → events it scored as the live predictor of a warm-up request.
    live: dict[str, int] = field(default_factory=dict)
    #: Predictor → events it scored as a shadow.
    shadow: dict[str, int] = field(default_factory=dict)
    #: Predictors no rule routes to, scored directly.
    direct: dict[str, int] = field(default_factory=dict)
    #: Events sent without the store's features (the store was asked for them).
    store_events: int = 0
    #: Warm-up events refused as a real one would be (a required store feature with no value).
    refused: int = 0
    #: Single events scored through the caller's micro-batcher (0 for the library path).
    micro_batched: int = 0

    def record(self, results: Sequence[ScoreResult]) -> None:
        """Count ``results`` (live and shadow scores of one request)."""
        for r in results:
            self.live[r.live.predictor] = self.live.get(r.live.predictor, 0) + 1
            for s in r.shadows:
                self.shadow[s.predictor] = self.shadow.get(s.predictor, 0) + 1

    @property
    def predictors(self) -> frozenset[str]:
        """Every predictor warm-up scored, in any role."""
        return frozenset(self.live) | frozenset(self.shadow) | frozenset(self.direct)

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "events": self.events,
            "live": dict(sorted(self.live.items())),
            "shadow": dict(sorted(self.shadow.items())),
            "direct": dict(sorted(self.direct.items())),
            "store_events": self.store_events,
            "refused": self.refused,
            "micro_batched": self.micro_batched,
        }


#: Sends a snapshot's warm-up requests down a request path; returns what was scored.
Warmer = Callable[[Snapshot, int], WarmUpReport]


def warm_up_requests(snapshot: Snapshot, n_events: int) -> list[WarmUpRequest]:
    """The warm-up requests of ``snapshot``: per routing rule, ``n_events`` as batches
    (of at most ``server.max_batch_events``), up to 16 single events, and, with a feature store, single events that omit the
    store's features. Deterministic (seeded)."""
    if n_events <= 0:
        return []
    rng = np.random.default_rng(0)
    limit = snapshot.config.spec.server.max_batch_events
    store = snapshot.store
    key_features = frozenset(store.key_features) if store is not None else frozenset()
    features = sorted(snapshot.known_features - key_features)
    requests: list[WarmUpRequest] = []
    for intent in _rule_intents(snapshot):
        columns = {f: rng.normal(size=n_events) for f in features}
        rows = tuple({f: float(c[i]) for f, c in columns.items()} for i in range(n_events))
        for at in range(0, n_events, limit):  # split as a client must
            chunk = rows[at : at + limit]
            requests.append(
                WarmUpRequest((intent,) * len(chunk), chunk, single=False, uses_store=False)
            )
        k = min(n_events, _SINGLES)
        requests.append(WarmUpRequest((intent,) * k, rows[:k], single=True, uses_store=False))
        if store is not None:
            keyed = dict(intent)
            row = {f: v for f, v in rows[0].items() if f not in store.provides}
            for part in store.spec.keys:
                if part.from_intent:
                    keyed[part.name] = WARM_UP_TENANT
                else:
                    row[part.name] = -1.0
            requests.append(WarmUpRequest((keyed,), (row,), single=True, uses_store=True))
    return requests


def _rule_intents(snapshot: Snapshot) -> list[Intent]:
    """One intent matching each scoring and shadow rule (the first value each condition
    accepts; a tenant the rule does not name is :data:`WARM_UP_TENANT`), deduplicated."""
    router = snapshot.router
    out: dict[tuple[tuple[str, str], ...], Intent] = {}
    rules: list[ScoringRule | ShadowRule] = [*router.scoring_rules, *router.shadow_rules]
    for rule in rules:
        intent = {"tenant": WARM_UP_TENANT}
        for attribute, values in rule.condition.items():
            intent[attribute] = min(values)
        out.setdefault(tuple(sorted(intent.items())), intent)
    if not out:
        out[(("tenant", WARM_UP_TENANT),)] = {"tenant": WARM_UP_TENANT}
    return list(out.values())


def warm_up(snapshot: Snapshot, n_events: int) -> WarmUpReport:
    """Warm ``snapshot`` up through the library's request path (:func:`score_live`, then
    the deferred shadows), then score directly the predictors no rule reaches."""
    report = WarmUpReport()
    for request in warm_up_requests(snapshot, n_events):
        run_request(report, request, partial(_library_pass, snapshot))
    warm_unrouted(snapshot, report, n_events)
    return report


def _library_pass(snapshot: Snapshot, request: WarmUpRequest) -> list[LiveOutcome]:
    if request.single:
        return [
            # Distinct ids, as the HTTP warm-up sends: a canary split's arms each get some.
            score_live(snapshot, [intent], FeatureTable.from_row(row), event_ids=[f"warm-up-{i}"])
            for i, (intent, row) in enumerate(zip(request.intents, request.features, strict=True))
        ]
    table = FeatureTable.from_rows(list(request.features))
    ids = [f"warm-up-{i}" for i in range(request.n_events)]
    return [score_live(snapshot, list(request.intents), table, event_ids=ids)]


def run_request(
    report: WarmUpReport,
    request: WarmUpRequest,
    send: Callable[[WarmUpRequest], Sequence[LiveOutcome]],
) -> None:
    """Send one warm-up request (``send`` returns the outcome of each scoring pass it
    took), then run its deferred shadows; count what they scored.

    A refusal that a real request without the store's values would also get (a required
    feature the store lacks for the warm-up entity) is counted; any other error raises:
    a snapshot that cannot score its own warm-up must not go live.
    """
    report.requests += 1
    report.events += request.n_events
    if request.uses_store:
        report.store_events += request.n_events
    try:
        outcomes = send(request)
    except (FeatureError, FeatureStoreError):
        if not request.uses_store:
            raise
        report.refused += request.n_events
        return
    for outcome in outcomes:
        results = outcome.results if outcome.deferred is None else outcome.deferred.run()
        report.record(results)


def warm_unrouted(snapshot: Snapshot, report: WarmUpReport, n_events: int) -> None:
    """Score directly every predictor warm-up has not reached (no rule routes to it)."""
    if n_events <= 0:
        return
    rng = np.random.default_rng(1)
    for name, predictor in snapshot.predictors.items():
        if name in report.predictors:
            continue
        names = sorted({f for e in predictor.experts for f in e.backend.feature_names})
        columns = {f: rng.normal(size=n_events) for f in names}
        predictor.score(FeatureTable(columns), WARM_UP_TENANT)
        for i in range(min(n_events, _SINGLES)):
            predictor.score(
                FeatureTable.from_row({f: float(c[i]) for f, c in columns.items()}),
                WARM_UP_TENANT,
            )
        report.direct[name] = n_events + min(n_events, _SINGLES)
