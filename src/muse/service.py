"""The scoring core: route → live predictor → shadows, over an immutable deployment snapshot.

No HTTP here (STYLE rule 2): the ASGI app and the CLI only parse, call and map errors.
A :class:`Snapshot` is everything one config version needs — router, compiled predictors,
shared model backends — built and checked beside the live one, then swapped in with a
single reference assignment, so a call that started on a snapshot finishes on it.

Every physical model runs once per event, whichever predictors (live or shadow) use it,
and its output feeds all of them (ARCHITECTURE invariant 5).

Features a request omits are filled from the deployment's feature store, if it has one,
once per batch after routing and before the models run (paper §2.5.1): only features
some model of the event's routes needs, live ones on the response path, shadow-only ones
in the shadow work (:mod:`muse.featurestore`).

One scoring pass — the plan, the model runs, the results, the deferred shadows — lives in
:mod:`muse.scoring`; its public types are re-exported here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from muse.backends.base import REMOTE_KINDS, ModelBackend
from muse.backends.pool import ModelPool
from muse.config import LoadedConfig, load_config
from muse.errors import (
    BackendError,
    ConfigError,
    ConfigIssue,
    FeatureError,
    FeatureStoreError,
)
from muse.features.table import FeatureTable
from muse.featurestore import FeatureStore, StorePool, open_backend
from muse.predictor import Expert, Predictor, TenantMap
from muse.routing import Route, Router
from muse.scoring import (
    DeferredShadows,
    Holes,
    Plan,
    PredictorScore,
    Scored,
    ScoreResult,
    as_table,
    enrich,
    run_models,
)
from muse.types import Intent, ScoreArray

__all__ = [
    "DeferredShadows",
    "LiveOutcome",
    "PredictorScore",
    "ScoreResult",
    "ScoringService",
    "Snapshot",
    "build_snapshot",
]


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One deployed config version: router, compiled predictors, their shared backends,
    and the feature store that fills what requests omit (None: requests carry everything).
    """

    config: LoadedConfig
    router: Router
    predictors: Mapping[str, Predictor]
    backends: Mapping[str, ModelBackend]
    store: FeatureStore | None = None
    #: Features a request may carry: every model's, and entity-key parts sent as features.
    known_features: frozenset[str] = field(init=False)
    #: Store-provided features some model needs: a request carrying all of them skips the store.
    store_features: tuple[str, ...] = field(init=False)
    #: Model → its feature names (what the feature store is asked to complete).
    model_features: Mapping[str, tuple[str, ...]] = field(init=False)
    #: Whether a model is on a remote server: then scoring may wait on the network, and the
    #: HTTP layer runs it off the event loop.
    remote: bool = field(init=False)

    def __post_init__(self) -> None:
        used = frozenset(f for b in self.backends.values() for f in b.feature_names)
        keys = self.store.key_features if self.store is not None else ()
        provided = self.store.provides if self.store is not None else frozenset()
        object.__setattr__(self, "known_features", used | frozenset(keys))
        object.__setattr__(self, "store_features", tuple(sorted(used & provided)))
        object.__setattr__(
            self,
            "model_features",
            MappingProxyType({m: b.feature_names for m, b in self.backends.items()}),
        )
        object.__setattr__(
            self, "remote", any(b.kind in REMOTE_KINDS for b in self.backends.values())
        )

    @property
    def version(self) -> str:
        return self.config.version


def build_snapshot(
    config: LoadedConfig, pool: ModelPool, stores: StorePool | None = None
) -> Snapshot:
    """Compile ``config`` into a snapshot, loading models through ``pool`` (shared, reused)
    and opening its feature store through ``stores`` (shared across reloads; None: opened
    for this snapshot alone, e.g. by an offline tool).

    Every model that fails to load (corrupt file, not a binary classifier, declared
    features that disagree with the file), and a feature table that fails to load, is
    reported in one :class:`ConfigError`, each under its YAML path, like every other
    config problem.
    """
    backends: dict[str, ModelBackend] = {}
    issues: list[ConfigIssue] = []
    for name, spec in config.model_specs.items():
        try:
            backends[name] = pool.get(spec)
        except BackendError as e:
            issues.append(ConfigIssue(f"models.{name}", str(e)))
    store = None
    if config.feature_store is not None:
        source = config.feature_store.source
        try:
            backend = stores.get(source) if stores is not None else open_backend(source)
        except FeatureStoreError as e:
            issues.append(ConfigIssue(f"feature_store.{source.kind}", str(e)))
        else:
            store = FeatureStore(config.feature_store, backend)
    if issues:
        raise ConfigError(issues, source=str(config.path))
    predictors: dict[str, Predictor] = {}
    for name, pspec in config.spec.predictors.items():
        betas = config.betas(name)
        experts = tuple(
            Expert(model=e.model, backend=backends[e.model], beta=b, weight=e.weight)
            for e, b in zip(pspec.experts, betas, strict=True)
        )
        tq = config.transforms[name]
        predictor = Predictor(
            name=name,
            experts=experts,
            default_map=TenantMap(tq.default.quantile_map, tq.default.label),
            tenant_maps={t: TenantMap(a.quantile_map, a.label) for t, a in tq.tenants.items()},
            aggregation=pspec.aggregation,
        )
        if predictor.fingerprint != config.fingerprints[name]:  # pragma: no cover - same inputs
            raise BackendError(f"predictor {name!r}: fingerprint changed while loading its models")
        predictors[name] = predictor
    return Snapshot(
        config=config,
        router=config.router,
        predictors=MappingProxyType(predictors),
        backends=MappingProxyType(backends),
        store=store,
    )


class ScoringService:
    """Scores events against the current snapshot; :meth:`reload` swaps in a new one.

    Thread-safe: scoring reads the snapshot reference once per call; reloads are serialised.
    ``stores`` keeps the feature-store backends (a Redis client, a loaded table) across
    reloads; :meth:`close` closes them.
    """

    def __init__(
        self, snapshot: Snapshot, pool: ModelPool, stores: StorePool | None = None
    ) -> None:
        self._snapshot = snapshot
        self._pool = pool
        self._stores = stores if stores is not None else StorePool()
        self._reload_lock = threading.Lock()

    @classmethod
    def from_config(
        cls, path: str | Path, *, pool: ModelPool | None = None, stores: StorePool | None = None
    ) -> ScoringService:
        """Load ``muse.yaml``, load its models once each, compile its predictors."""
        pool = pool if pool is not None else ModelPool()
        stores = stores if stores is not None else StorePool()
        return cls(build_snapshot(load_config(path), pool, stores), pool, stores)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot new calls score on."""
        return self._snapshot

    @property
    def pool(self) -> ModelPool:
        return self._pool

    @property
    def stores(self) -> StorePool:
        return self._stores

    def close(self) -> None:
        """Close the feature-store backends (connections); the service is not used after."""
        self._stores.close()

    def swap(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the one new calls score on (a single reference assignment)."""
        self._snapshot = snapshot

    def reload(self, path: str | Path | None = None) -> Snapshot:
        """Build a snapshot from ``path`` (default: the current config file) and swap it in.

        Models already loaded are reused. On any error the current snapshot keeps serving
        and the error propagates (ARCHITECTURE invariant 4).
        """
        with self._reload_lock:
            config = load_config(path or self._snapshot.config.path)
            new = build_snapshot(config, self._pool, self._stores)
            self._snapshot = new
            self._pool.retain(new.config.model_specs.values())
            store = new.config.feature_store
            self._stores.retain(None if store is None else store.source)
            return new

    # -- scoring ------------------------------------------------------------------------

    def route(self, intent: Intent) -> Route:
        """The live and shadow predictors for ``intent`` under the current snapshot."""
        return self._snapshot.router.route(intent)

    def score(
        self,
        intent: Intent,
        features: Mapping[str, Any],
        *,
        event_id: str | None = None,
        shadows: bool = True,
    ) -> ScoreResult:
        """Score one event; raises on bad input (IntentError, FeatureError, NoRouteError)."""
        return self.score_batch(
            [intent],
            FeatureTable.from_row(features),
            event_ids=None if event_id is None else [event_id],
            shadows=shadows,
        )[0]

    def score_batch(
        self,
        intents: Sequence[Intent],
        features: FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        event_ids: Sequence[str] | None = None,
        shadows: bool = True,
    ) -> list[ScoreResult]:
        """Score many events (any mix of tenants and routes) in one pass per model.

        ``features`` is a :class:`FeatureTable`, a mapping of feature → column, or one
        mapping per event. A bad event rejects the whole batch with an error naming its
        index, before anything is scored. Shadows are scored in the same call; a server
        uses :meth:`score_live` instead, to answer before the shadows run.
        """
        snap, table, plan = self._prepare(intents, features, event_ids, shadows)
        outputs: dict[str, ScoreArray] = {}
        failed: dict[str, str] = {}
        holes: Holes = {}
        todo = plan.model_events()
        table, enr = enrich(snap, plan, table, todo)
        run_models(snap, table, todo, plan.live_model_events, outputs, failed, enr, holes)
        live = plan.score_groups(snap, "live", outputs, failed)
        shadow = plan.score_groups(snap, "shadow", outputs, failed, holes)
        return plan.results(snap, live, shadow, event_ids)

    def score_live(
        self,
        intents: Sequence[Intent],
        features: FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        event_ids: Sequence[str] | None = None,
    ) -> LiveOutcome:
        """Score only what the client waits for; return the shadow work for later.

        The live results carry no shadows. :attr:`LiveOutcome.deferred` (None when no
        shadow rule matched) scores the shadows when run — off the response path — reusing
        every model output the live predictors already computed (invariant 5), and never
        raises for a shadow's sake (invariant 3).
        """
        snap, table, plan = self._prepare(intents, features, event_ids, True)
        outputs: dict[str, ScoreArray] = {}
        failed: dict[str, str] = {}
        live_todo = plan.live_model_events
        # One round trip fetches the shadows' extra features of the same entities too.
        table, enr = enrich(snap, plan, table, live_todo, also=plan.model_events())
        run_models(snap, table, live_todo, live_todo, outputs, failed, enr)
        live = plan.score_groups(snap, "live", outputs, failed)
        results = plan.results(snap, live, Scored({}, {}), event_ids)
        deferred = None
        if plan.shadow_groups:
            deferred = DeferredShadows(snap, table, plan, outputs, live, event_ids, enr)
        return LiveOutcome(results, deferred)

    def _prepare(
        self,
        intents: Sequence[Intent],
        features: FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]],
        event_ids: Sequence[str] | None,
        shadows: bool,
    ) -> tuple[Snapshot, FeatureTable, Plan]:
        snap = self._snapshot
        table = as_table(features)
        n = len(intents)
        if table.n_events != n and len(table) > 0:
            raise FeatureError(f"got {n} intents but features for {table.n_events} events")
        if event_ids is not None and len(event_ids) != n:
            raise FeatureError(f"got {n} intents but {len(event_ids)} event ids")
        unknown = [f for f in table if f not in snap.known_features]
        if unknown:
            raise FeatureError(
                f"unknown feature(s) {sorted(unknown)}: no model of this deployment uses them",
                feature=sorted(unknown)[0],
            )
        return snap, table, Plan.build(snap, intents, shadows)


class LiveOutcome(NamedTuple):
    """Live results of a batch and, if any shadow rule matched, the deferred shadow work."""

    results: list[ScoreResult]
    deferred: DeferredShadows | None
