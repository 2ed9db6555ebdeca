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
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from muse.backends.base import REMOTE_KINDS, ModelBackend
from muse.backends.pool import ModelPool
from muse.config import LoadedConfig, load_config
from muse.errors import (
    BackendError,
    ConfigError,
    ConfigIssue,
    FeatureError,
    FeatureStoreError,
    IntentError,
    MuseError,
    NoRouteError,
)
from muse.features.table import FeatureTable
from muse.featurestore import FeatureStore, StorePool, open_backend
from muse.featurestore.store import Enrichment, Need
from muse.predictor import Expert, Predictor, PredictorResult, TenantMap
from muse.routing import Route, Router
from muse.transforms._checks import as_scores
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


class PredictorScore(NamedTuple):
    """One predictor's score for one event. ``role`` is ``"live"`` or ``"shadow"``.

    Immutable named tuples rather than frozen dataclasses: a batch creates one per event
    and predictor, and a frozen dataclass costs several times more to construct.
    """

    predictor: str
    role: str
    score: float
    raw: float
    experts: Mapping[str, float]
    fingerprint: str
    tq_version: str


class ScoreResult(NamedTuple):
    """The outcome for one event: the live score (what the client gets) and the shadows.

    ``shadow_errors`` maps a shadow predictor that could not score this event to why; a
    shadow failure never fails the event (ARCHITECTURE invariant 3).
    """

    event_id: str | None
    intent: Mapping[str, str]
    live: PredictorScore
    shadows: tuple[PredictorScore, ...]
    shadow_errors: Mapping[str, str]
    config_version: str

    @property
    def score(self) -> float:
        """The live final score."""
        return self.live.score


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
        holes: _Holes = {}
        todo = plan.model_events()
        table, enr = _enrich(snap, plan, table, todo)
        _run_models(snap, table, todo, plan.live_model_events, outputs, failed, enr, holes)
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
        table, enr = _enrich(snap, plan, table, live_todo, also=plan.model_events())
        _run_models(snap, table, live_todo, live_todo, outputs, failed, enr)
        live = plan.score_groups(snap, "live", outputs, failed)
        results = plan.results(snap, live, _Scored({}, {}), event_ids)
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
    ) -> tuple[Snapshot, FeatureTable, _Plan]:
        snap = self._snapshot
        table = _as_table(features)
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
        return snap, table, _Plan.build(snap, intents, shadows)


class LiveOutcome(NamedTuple):
    """Live results of a batch and, if any shadow rule matched, the deferred shadow work."""

    results: list[ScoreResult]
    deferred: DeferredShadows | None


class DeferredShadows:
    """The shadow scoring of one batch, to run after the client has its answer.

    Holds the batch's features and the model outputs computed for the live predictors;
    :meth:`run` computes only the models no live predictor needed, on only the events that
    need them, then scores every shadow group. It never raises: a failing shadow model is
    reported in ``shadow_errors`` of the events it concerns.
    """

    __slots__ = (
        "_enrichment",
        "_event_ids",
        "_failed",
        "_live",
        "_outputs",
        "_plan",
        "_snap",
        "_table",
        "_todo",
    )

    def __init__(
        self,
        snap: Snapshot,
        table: FeatureTable,
        plan: _Plan,
        outputs: dict[str, ScoreArray],
        live: _Scored,
        event_ids: Sequence[str] | None,
        enrichment: Enrichment | None = None,
    ) -> None:
        self._snap = snap
        self._table = table
        self._plan = plan
        self._outputs = outputs
        self._live = live
        self._event_ids = event_ids
        self._enrichment = enrichment
        self._failed: dict[str, str] = {}
        self._todo = _shadow_todo(plan)

    @property
    def runs_models(self) -> bool:
        """Whether :meth:`run` calls a model (or the feature store).

        False when the live pass already ran every model the shadows use (a shadow
        ensemble's member, a re-mapped live model): the shadows are then transforms of
        outputs in memory, microseconds of numpy that cannot hang, which the service runs
        on the event loop instead of handing them to the shadow thread.
        """
        return bool(self._todo)

    @property
    def predictors(self) -> tuple[str, ...]:
        """Shadow predictors this work will score (for accounting when it is shed)."""
        return tuple(dict.fromkeys(p for p, _ in self._plan.shadow_groups))

    @property
    def n_events(self) -> int:
        return self._plan.n

    def run(self) -> list[ScoreResult]:
        """Score the shadows; return every event's full result (live and shadows)."""
        plan, todo = self._plan, self._todo
        try:
            holes: _Holes = {}
            snap, table, enr = self._snap, self._table, self._enrichment
            if todo and snap.store is not None:
                # What only shadows need is fetched here, off the response path.
                table, enr = _enrich(snap, plan, table, todo, enrichment=enr)
            _run_models(snap, table, todo, {}, self._outputs, self._failed, enr, holes)
            shadow = plan.score_groups(snap, "shadow", self._outputs, self._failed, holes)
        except Exception as e:  # a shadow must never fail the caller (invariant 3)
            message = f"shadow scoring failed: {type(e).__name__}: {e}"
            errors = {
                i: {pname: message}
                for (pname, _), idx_list in plan.shadow_groups.items()
                for i in idx_list
            }
            shadow = _Scored({}, errors)
        return plan.results(self._snap, self._live, shadow, self._event_ids)


def _shadow_todo(plan: _Plan) -> dict[str, np.ndarray]:
    """Model → the events only shadows need it on (the live pass did not run it there)."""
    todo: dict[str, np.ndarray] = {}
    for model, idx in plan.model_events().items():
        done = plan.live_model_events.get(model)
        if done is None:
            rest = idx
        elif done.size == idx.size:
            continue  # the live predictors already ran it on every event that needs it
        else:
            # A mask rather than np.setdiff1d, which sorts: ~10x cheaper on small batches.
            pending = np.ones(plan.n, dtype=bool)
            pending[done] = False
            rest = idx[pending[idx]]
        if rest.size:
            todo[model] = rest
    return todo


#: Model → (events it could not score, why): shadow events whose store features are missing.
_Holes = dict[str, tuple[frozenset[int], str]]


def _enrich(
    snap: Snapshot,
    plan: _Plan,
    table: FeatureTable,
    todo: Mapping[str, np.ndarray],
    *,
    also: Mapping[str, np.ndarray] | None = None,
    enrichment: Enrichment | None = None,
) -> tuple[FeatureTable, Enrichment | None]:
    """``table`` completed from the feature store for the models of ``todo`` (see
    :meth:`Enrichment.fill`); no store, or a request carrying every store feature the
    models use, costs one membership test per such feature."""
    store = snap.store
    if store is None or (enrichment is None and all(f in table for f in snap.store_features)):
        return table, enrichment
    enr = enrichment if enrichment is not None else Enrichment(store, plan.intents, plan.n)
    features = snap.model_features
    needs: list[Need] = [(features[m], idx) for m, idx in todo.items()]
    extra: list[Need] = [(features[m], idx) for m, idx in (also or {}).items()]
    return enr.fill(table, needs, extra), enr


def _run_models(
    snap: Snapshot,
    table: FeatureTable,
    todo: Mapping[str, np.ndarray],
    live: Mapping[str, np.ndarray],
    outputs: dict[str, ScoreArray],
    failed: dict[str, str],
    enrichment: Enrichment | None = None,
    holes: _Holes | None = None,
) -> None:
    """Run each model of ``todo`` on its events, filling ``outputs`` (full-length arrays).

    A model that ``live`` predictors need raises on failure (the client gets the error);
    one only shadows need is recorded in ``failed`` instead. Events the feature store
    could not complete fail a live model (the error names the first), and are left out of
    a shadow-only model's run and recorded in ``holes``.
    """
    n = table.n_events
    for model, idx in todo.items():
        backend = snap.backends[model]
        live_idx = live.get(model)
        if enrichment is not None:
            names = backend.feature_names
            if live_idx is not None and (gap := enrichment.gap(table, names, live_idx)):
                raise gap.error
            # Only shadows need the rest of ``idx`` (none when it is the live events).
            if (live_idx is None or live_idx.size < idx.size) and (
                gap := enrichment.gap(table, names, idx)
            ):
                if gap.bad.all() or holes is None:
                    failed[model] = str(gap.error)
                    continue
                holes[model] = (frozenset(idx[gap.bad].tolist()), str(gap.error))
                idx = idx[~gap.bad]
        missing = table.missing(backend.feature_names)
        if missing:
            if live_idx is not None:
                # Clients request intents, not models: the message names features only.
                raise FeatureError(
                    f"missing feature {missing[0]!r} (event {int(live_idx[0])}); scoring this intent "
                    f"needs features {sorted(backend.feature_names)}",
                    feature=missing[0],
                    index=int(live_idx[0]),
                )
            failed[model] = f"missing feature(s) {missing} for model {model!r}"
            continue
        sub = table if idx.shape[0] == n else table.take(idx)
        try:
            y = as_scores(
                backend.predict(sub.matrix(backend.feature_names)), f"output of model {model!r}"
            )
        except (MuseError, ValueError, RuntimeError) as e:
            if live_idx is not None:
                if isinstance(e, BackendError):
                    raise
                raise BackendError(f"model {model!r} failed: {e}", model=model) from e
            failed[model] = f"model {model!r} failed: {e}"
            continue
        full = outputs.get(model)
        if full is None:
            if idx.shape[0] == n:  # every event (a single event, a one-route batch): no copy
                outputs[model] = y
                continue
            full = outputs[model] = np.full(n, np.nan)
        full[idx] = y


def _as_table(
    features: FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> FeatureTable:
    if isinstance(features, FeatureTable):
        return features
    if isinstance(features, Mapping):
        return FeatureTable(features)
    return FeatureTable.from_rows(features)


class _Scored(NamedTuple):
    """Scores of one role: event index → its predictor scores, and → shadow errors."""

    scores: dict[int, list[PredictorScore]]
    errors: dict[int, dict[str, str]]


@dataclass
class _Plan:
    """Which predictor scores which events in which role, and so which model runs where."""

    n: int
    intents: list[Intent]
    routes: list[Route]
    tenants: list[str]
    # (predictor, tenant) → event indices
    live_groups: dict[tuple[str, str], list[int]]
    shadow_groups: dict[tuple[str, str], list[int]]
    live_model_events: dict[str, np.ndarray]
    _model_events: dict[str, np.ndarray]

    @classmethod
    def build(cls, snap: Snapshot, intents: Sequence[Intent], shadows: bool) -> _Plan:
        routes: list[Route] = []
        tenants: list[str] = []
        clean: list[Intent] = []
        cache: dict[tuple[tuple[str, str], ...], Route] = {}
        live_groups: dict[tuple[str, str], list[int]] = {}
        shadow_groups: dict[tuple[str, str], list[int]] = {}
        for i, intent in enumerate(intents):
            if not isinstance(intent, Mapping):
                raise IntentError(
                    f"intent of event {i} must be a mapping, got {type(intent).__name__}",
                    index=i,
                )
            tenant = intent.get("tenant")
            if not isinstance(tenant, str) or not tenant:
                raise IntentError(
                    f"intent of event {i} must name its tenant (a non-empty string), got {tenant!r}",
                    attribute="tenant",
                    index=i,
                )
            # Unsorted: the same attributes in another order only miss the cache.
            key: tuple[tuple[str, str], ...] | None = tuple(intent.items())
            try:
                route = cache.get(key)  # type: ignore[arg-type]
            except TypeError:  # an unhashable value: the router rejects it below
                route, key = None, None
            if route is None:
                try:
                    route = snap.router.route(intent)
                except IntentError as e:
                    raise IntentError(f"event {i}: {e}", attribute=e.attribute, index=i) from None
                except NoRouteError as e:
                    raise NoRouteError(e.intent, index=i) from None
                if key is not None:
                    cache[key] = route
            routes.append(route)
            tenants.append(tenant)
            clean.append(intent)
            live_groups.setdefault((route.live, tenant), []).append(i)
            if shadows:
                for s in route.shadows:
                    shadow_groups.setdefault((s, tenant), []).append(i)
        live_models: dict[str, set[int]] = {}
        all_models: dict[str, set[int]] = {}
        for groups, target in ((live_groups, live_models), (shadow_groups, None)):
            for (pname, _), idx in groups.items():
                for m in snap.predictors[pname].models:
                    all_models.setdefault(m, set()).update(idx)
                    if target is not None:
                        target.setdefault(m, set()).update(idx)
        return cls(
            n=len(intents),
            intents=clean,
            routes=routes,
            tenants=tenants,
            live_groups=live_groups,
            shadow_groups=shadow_groups,
            live_model_events={
                m: np.array(sorted(s), dtype=np.intp) for m, s in live_models.items()
            },
            _model_events={m: np.array(sorted(s), dtype=np.intp) for m, s in all_models.items()},
        )

    def model_events(self) -> dict[str, np.ndarray]:
        """Model → the events it must score (live or shadow), each event once."""
        return self._model_events

    def score_groups(
        self,
        snap: Snapshot,
        role: str,
        outputs: Mapping[str, ScoreArray],
        failed: Mapping[str, str],
        holes: _Holes | None = None,
    ) -> _Scored:
        """Score every (predictor, tenant) group of ``role`` from the model outputs.

        ``holes`` (shadows only) names events a model could not score: they get an error
        for each predictor using that model, and the group's other events are scored.
        """
        # Per-event containers are created only where needed: a large batch allocating
        # two empty containers per event spent much of its time in the garbage collector.
        scored: dict[int, list[PredictorScore]] = {}
        errors: dict[int, dict[str, str]] = {}
        groups = self.live_groups if role == "live" else self.shadow_groups
        for (pname, tenant), idx_list in groups.items():
            predictor = snap.predictors[pname]
            broken = [failed[m] for m in predictor.models if m in failed]
            if broken:  # only shadows can get here: live failures raised already
                message = "; ".join(broken)
                for i in idx_list:
                    errors.setdefault(i, {})[pname] = message
                continue
            if holes:
                missed = [holes[m] for m in predictor.models if m in holes]
                for events, message in missed:
                    for i in idx_list:
                        if i in events:
                            errors.setdefault(i, {}).setdefault(pname, message)
                if missed:
                    idx_list = [i for i in idx_list if not any(i in e for e, _ in missed)]
                    if not idx_list:
                        continue
            if len(idx_list) == self.n:  # the group is the whole batch: no gather
                picked = {m: outputs[m] for m in predictor.models}
            else:
                idx = np.array(idx_list, dtype=np.intp)
                picked = {m: outputs[m][idx] for m in predictor.models}
            res = predictor._score_checked(picked, tenant)
            for i, ps in zip(idx_list, _per_event(res, role), strict=True):
                scored.setdefault(i, []).append(ps)
        return _Scored(scored, errors)

    def results(
        self,
        snap: Snapshot,
        live: _Scored,
        shadow: _Scored,
        event_ids: Sequence[str] | None,
    ) -> list[ScoreResult]:
        """One :class:`ScoreResult` per event, shadows in route order."""
        version = snap.version
        out: list[ScoreResult] = []
        for i in range(self.n):
            mine = shadow.scores.get(i, ())
            if len(mine) > 1:  # groups may have filled them out of route order
                order = self.routes[i].shadows
                mine = sorted(mine, key=lambda s: order.index(s.predictor))
            out.append(
                ScoreResult(
                    event_id=None if event_ids is None else event_ids[i],
                    intent=self.intents[i],
                    live=live.scores[i][0],
                    shadows=tuple(mine),
                    shadow_errors=shadow.errors.get(i, _NO_ERRORS),
                    config_version=version,
                )
            )
        return out


_NO_ERRORS: Mapping[str, str] = MappingProxyType({})


def _per_event(res: PredictorResult, role: str) -> list[PredictorScore]:
    # Arrays become Python floats in one ``tolist`` each: per-element ``float(a[k])`` was
    # the bulk of a large batch's time.
    models = list(res.experts)
    columns = [res.experts[m].tolist() for m in models]
    return [
        PredictorScore(
            predictor=res.predictor,
            role=role,
            score=score,
            raw=raw,
            experts=dict(zip(models, expert_row, strict=True)),
            fingerprint=res.fingerprint,
            tq_version=res.tq_version,
        )
        for score, raw, *expert_row in zip(
            res.score.tolist(), res.raw.tolist(), *columns, strict=True
        )
    ]
