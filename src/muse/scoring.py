"""One scoring pass over a batch: the plan, each model run once, the results, the shadows.

:class:`Plan` says which predictor scores which events in which role (live or shadow)
and so which model must run on which events; :func:`run_models` runs each model once on
exactly those events (ARCHITECTURE invariant 5), completing features from the feature
store first (:func:`enrich`); :meth:`Plan.score_groups` applies each predictor's T^C, A
and the tenant's T^Q; :class:`DeferredShadows` holds what the shadows need to finish after
the client has its answer. :func:`score_batch` and :func:`score_live` drive a pass over a
:class:`~muse.snapshot.Snapshot`: the one code path of the server, the library's
:class:`~muse.service.ScoringService`, offline replays and the deployment's warm-up.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from muse.errors import BackendError, FeatureError, IntentError, MuseError, NoRouteError
from muse.features.table import FeatureTable
from muse.featurestore.store import Enrichment, Need
from muse.predictor import PredictorResult
from muse.routing import Route
from muse.snapshot import Snapshot
from muse.splits import Split, key_text
from muse.transforms._checks import as_scores
from muse.types import Intent, ScoreArray

__all__ = [
    "DeferredShadows",
    "Holes",
    "LiveOutcome",
    "Plan",
    "PredictorScore",
    "ScoreResult",
    "Scored",
    "as_table",
    "enrich",
    "prepare",
    "run_models",
    "score_batch",
    "score_live",
    "shadow_todo",
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
    shadow failure never fails the event (ARCHITECTURE invariant 3). ``arm`` is the live
    predictor when a canary split chose it (the event's arm), else None.
    """

    event_id: str | None
    intent: Mapping[str, str]
    live: PredictorScore
    shadows: tuple[PredictorScore, ...]
    shadow_errors: Mapping[str, str]
    config_version: str
    arm: str | None = None

    @property
    def score(self) -> float:
        """The live final score."""
        return self.live.score


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
        plan: Plan,
        outputs: dict[str, ScoreArray],
        live: Scored,
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
        self._todo = shadow_todo(plan)

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
            holes: Holes = {}
            snap, table, enr = self._snap, self._table, self._enrichment
            if todo and snap.store is not None:
                # What only shadows need is fetched here, off the response path.
                table, enr = enrich(snap, plan, table, todo, enrichment=enr)
            run_models(snap, table, todo, {}, self._outputs, self._failed, enr, holes)
            shadow = plan.score_groups(snap, "shadow", self._outputs, self._failed, holes)
        except Exception as e:  # a shadow must never fail the caller (invariant 3)
            message = f"shadow scoring failed: {type(e).__name__}: {e}"
            errors = {
                i: {pname: message}
                for (pname, _), idx_list in plan.shadow_groups.items()
                for i in idx_list
            }
            shadow = Scored({}, errors)
        return plan.results(self._snap, self._live, shadow, self._event_ids)


def shadow_todo(plan: Plan) -> dict[str, np.ndarray]:
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
Holes = dict[str, tuple[frozenset[int], str]]


def enrich(
    snap: Snapshot,
    plan: Plan,
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
    if store is None or (
        enrichment is None
        and all(f in table for f in snap.store_features)
        and not _has_gaps(table, snap.store_features)
    ):
        return table, enrichment
    enr = enrichment if enrichment is not None else Enrichment(store, plan.intents, plan.n)
    features = snap.model_features
    needs: list[Need] = [(features[m], idx) for m, idx in todo.items()]
    extra: list[Need] = [(features[m], idx) for m, idx in (also or {}).items()]
    return enr.fill(table, needs, extra), enr


def _has_gaps(table: FeatureTable, names: Sequence[str]) -> bool:
    """Whether some events of a batch left a store feature to the store that others sent
    (NaN where it is missing, :meth:`FeatureTable.from_rows`); one event never does."""
    return table.n_events > 1 and any(bool(np.isnan(table[f]).any()) for f in names)


def run_models(
    snap: Snapshot,
    table: FeatureTable,
    todo: Mapping[str, np.ndarray],
    live: Mapping[str, np.ndarray],
    outputs: dict[str, ScoreArray],
    failed: dict[str, str],
    enrichment: Enrichment | None = None,
    holes: Holes | None = None,
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


def as_table(
    features: FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> FeatureTable:
    if isinstance(features, FeatureTable):
        return features
    if isinstance(features, Mapping):
        return FeatureTable(features)
    return FeatureTable.from_rows(features)


class Scored(NamedTuple):
    """Scores of one role: event index → its predictor scores, and → shadow errors."""

    scores: dict[int, list[PredictorScore]]
    errors: dict[int, dict[str, str]]


@dataclass
class Plan:
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
    #: Event index → its arm, for events a canary split routed (most batches: empty).
    arms: dict[int, str]

    @classmethod
    def build(
        cls,
        snap: Snapshot,
        intents: Sequence[Intent],
        shadows: bool,
        table: FeatureTable | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> Plan:
        """Route every event; a split's events get their arm from their entity key, which
        is the split's ``sticky_by`` intent attribute, else that request feature in
        ``table``, else the event id (see :mod:`muse.splits`)."""
        routes: list[Route] = []
        arms: dict[int, str] = {}
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
            if route.split is None:
                live_groups.setdefault((route.live, tenant), []).append(i)
                if shadows:
                    for s in route.shadows:
                        shadow_groups.setdefault((s, tenant), []).append(i)
                continue
            live = arms[i] = route.live_for(_entity_key(route.split, intent, table, event_ids, i))
            live_groups.setdefault((live, tenant), []).append(i)
            if shadows:
                for s in route.shadows:
                    if s != live:  # never mirrored to the arm that serves it
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
            arms=arms,
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
        holes: Holes | None = None,
    ) -> Scored:
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
        return Scored(scored, errors)

    def results(
        self,
        snap: Snapshot,
        live: Scored,
        shadow: Scored,
        event_ids: Sequence[str] | None,
    ) -> list[ScoreResult]:
        """One :class:`ScoreResult` per event, shadows in route order."""
        version = snap.version
        arms = self.arms
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
                    arm=arms.get(i) if arms else None,
                )
            )
        return out


_NO_ERRORS: Mapping[str, str] = MappingProxyType({})


def _entity_key(
    split: Split,
    intent: Intent,
    table: FeatureTable | None,
    event_ids: Sequence[str] | None,
    i: int,
) -> str:
    """The text event ``i`` is assigned an arm by: its sticky intent attribute, else its
    sticky request feature, else its event id; an event with none of them (a library
    call without ids) is assigned at random — it has no identity to keep."""
    name = split.sticky_by
    if name is not None:
        value = intent.get(name)
        if value:
            return value
        if table is not None and name in table:
            key = key_text(table[name][i])
            if key is not None:
                return key
    if event_ids is not None:
        return str(event_ids[i])
    return f"random:{random.getrandbits(64)}"


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


Features = FeatureTable | Mapping[str, Any] | Sequence[Mapping[str, Any]]


class LiveOutcome(NamedTuple):
    """Live results of a batch and, if any shadow rule matched, the deferred shadow work."""

    results: list[ScoreResult]
    deferred: DeferredShadows | None


def score_batch(
    snap: Snapshot,
    intents: Sequence[Intent],
    features: Features,
    *,
    event_ids: Sequence[str] | None = None,
    shadows: bool = True,
) -> list[ScoreResult]:
    """Score many events (any mix of tenants and routes) on ``snap``, live and shadows in
    one pass per model. A bad event rejects the whole batch with an error naming its index,
    before anything is scored."""
    table, plan = prepare(snap, intents, features, event_ids, shadows)
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
    snap: Snapshot,
    intents: Sequence[Intent],
    features: Features,
    *,
    event_ids: Sequence[str] | None = None,
) -> LiveOutcome:
    """Score only what the client waits for on ``snap``; return the shadow work for later
    (see :meth:`muse.service.ScoringService.score_live`)."""
    table, plan = prepare(snap, intents, features, event_ids, True)
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


def prepare(
    snap: Snapshot,
    intents: Sequence[Intent],
    features: Features,
    event_ids: Sequence[str] | None,
    shadows: bool,
) -> tuple[FeatureTable, Plan]:
    """The batch's feature table and routing plan, every input checked (the features
    known, one row per intent, one id per event): what every scoring pass starts from."""
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
    return table, Plan.build(snap, intents, shadows, table, event_ids)
