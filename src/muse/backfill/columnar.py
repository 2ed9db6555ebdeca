"""One batch of a file through the serving path, out as lake rows built column by column.

The serving path, piece by piece: the deployment's router resolves each *distinct* intent
(:meth:`Router.route`), a canary split picks each event's arm as it does for a request
(:meth:`Route.live_for`, by the same key), the feature store completes what the file
lacks (:class:`~muse.featurestore.store.Enrichment`), every model runs once on the events
that need it, live or shadow (:func:`muse.scoring.run_models`), and each (predictor,
tenant) group goes through T^C, A and the tenant's T^Q (``Predictor._score_checked``).
What differs from a request is only the bookkeeping around them: a request builds one
result object per event and predictor (:class:`~muse.scoring.ScoreResult`), ~10 µs an
event, which is most of a large batch's time; here the groups' arrays are scattered into
the lake's columns with numpy and Arrow, so a file is scored at the models' speed. The
rows are exactly those the service would write (:data:`~muse.scorelog.LAKE_SCHEMA`),
except ``latency_ms``: each event's share of its batch's time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from muse.backfill.source import BackfillError, EventBatch, RowError
from muse.errors import FeatureStoreError, IntentError, MuseError, NoRouteError
from muse.features.table import FeatureTable
from muse.featurestore.store import Enrichment
from muse.routing import Route
from muse.scorelog.record import LAKE_SCHEMA
from muse.scoring import Holes, run_models
from muse.snapshot import Snapshot
from muse.splits import key_text
from muse.types import Intent, ScoreArray

__all__ = ["ScoredBatch", "score_batch_columns"]

Index = npt.NDArray[np.intp]


@dataclass
class ScoredBatch:
    """A batch's lake rows, the rows left out, and shadow scorings that failed."""

    table: pa.Table
    events: int
    errors: list[RowError]
    #: Shadow predictor → how many events it could not score, and the first reason.
    shadow_errors: dict[str, tuple[int, str]] = field(default_factory=dict)


class _Intents(Sequence[Intent]):
    """Event ``i``'s intent, built when asked: only the feature store asks, and only for
    the events it completes (most backfills carry every feature)."""

    def __init__(self, columns: Mapping[str, pa.Array], n: int) -> None:
        self._columns = {k: v.to_pylist() for k, v in columns.items()} if n else {}
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Intent:  # type: ignore[override]
        return {k: v[i] for k, v in self._columns.items() if v[i] is not None}


def score_batch_columns(snap: Snapshot, batch: EventBatch, *, shadows: bool = True) -> ScoredBatch:
    """Score ``batch`` on ``snap``: live (and shadow) lake rows of every event that can be
    scored; an event whose intent has no route, or whose features the store cannot
    complete, is a :class:`RowError` (its line named). Raises :class:`BackfillError` for
    what stops the whole run: a feature no row has, a model or the store failing."""
    started = time.perf_counter()
    errors = list(batch.errors)
    if batch.n == 0:
        return ScoredBatch(LAKE_SCHEMA.empty_table(), 0, errors)
    routes, groups = _route(snap, batch)
    bad = np.zeros(batch.n, dtype=bool)
    for g, route in enumerate(routes):
        if isinstance(route, MuseError):
            bad[groups[g]] = True
            message = _route_error(route)
            errors.extend(RowError(int(batch.lines[i]), message, batch.unit) for i in groups[g])
    names: dict[str, int] = {}
    arm_of: dict[int, int] = {}  # event → arm predictor code (split events only)
    live: dict[tuple[str, str], list[Index]] = {}
    shadow: dict[tuple[str, str], list[Index]] = {}
    tenants = batch.intents["tenant"]
    for g, route in enumerate(routes):
        if isinstance(route, MuseError):
            continue
        idx = groups[g]
        tenant = str(tenants[int(idx[0])].as_py())
        if route.split is None:
            parts = [(route.live, idx, route.shadows)]
        else:
            keys = _keys(route, batch, idx)
            chosen = np.array([route.live_for(k) for k in keys])
            parts = []
            for p in route.predictors:
                sub = idx[chosen == p]
                if sub.size:
                    code = names.setdefault(p, len(names))
                    arm_of.update(dict.fromkeys(sub.tolist(), code))
                    parts.append((p, sub, tuple(s for s in route.shadows if s != p)))
        for predictor, sub, shadow_names in parts:
            live.setdefault((predictor, tenant), []).append(sub)
            if shadows:
                for s in shadow_names:
                    shadow.setdefault((s, tenant), []).append(sub)
    if bad.all():
        return ScoredBatch(LAKE_SCHEMA.empty_table(), 0, sorted(errors, key=lambda e: e.line))

    table = FeatureTable.with_gaps(batch.features)
    live_groups = {k: np.sort(np.concatenate(v)) for k, v in live.items()}
    shadow_groups = {k: np.sort(np.concatenate(v)) for k, v in shadow.items()}
    live_models = _model_events(snap, [live_groups])
    all_models = _model_events(snap, [live_groups, shadow_groups])
    table, enrichment, dropped = _enrich(snap, batch, table, live_models, all_models)
    dropped.update(_empty_features(snap, table, live_models, dropped))
    if dropped:
        for i, message in sorted(dropped.items()):
            errors.append(RowError(int(batch.lines[i]), message, batch.unit))
        gone = np.fromiter(dropped, dtype=np.intp)
        live_groups = _without(live_groups, gone)
        shadow_groups = _without(shadow_groups, gone)
        live_models = _model_events(snap, [live_groups])
        all_models = _model_events(snap, [live_groups, shadow_groups])
        bad[gone] = True
    outputs: dict[str, ScoreArray] = {}
    failed: dict[str, str] = {}
    holes: Holes = {}
    todo = {m: idx for m, idx in all_models.items() if idx.size}
    try:
        run_models(snap, table, todo, live_models, outputs, failed, enrichment, holes)
    except MuseError as e:
        raise BackfillError(f"scoring stopped: {e}") from e
    for m, (events, why) in _empty_for_shadows(snap, table, all_models, live_models).items():
        before = holes.get(m)
        holes[m] = (events, why) if before is None else (before[0] | events, before[1])
    live_rows, shadow_rows = _Rows(snap, batch, names), _Rows(snap, batch, names)
    for (predictor, tenant), idx in live_groups.items():
        live_rows.add(predictor, tenant, idx, outputs, "live")
    shadow_errors: dict[str, tuple[int, str]] = {}
    for (predictor, tenant), idx in shadow_groups.items():
        models = snap.predictors[predictor].models
        broken = [failed[m] for m in models if m in failed]
        if broken:
            n, first = shadow_errors.get(predictor, (0, broken[0]))
            shadow_errors[predictor] = (n + int(idx.size), first)
            continue
        for m in models:
            if m in holes:
                events, message = holes[m]
                missed = np.isin(idx, np.fromiter(events, dtype=np.intp))
                if missed.any():
                    n, first = shadow_errors.get(predictor, (0, message))
                    shadow_errors[predictor] = (n + int(missed.sum()), first)
                    idx = idx[~missed]
        if idx.size:
            shadow_rows.add(predictor, tenant, idx, outputs, "shadow")
    good = int((~bad).sum())
    intents = _intent_map(batch.intents)
    elapsed_ms = (time.perf_counter() - started) * 1e3
    latency = elapsed_ms / max(good, 1)
    out = pa.concat_tables(
        [
            live_rows.table(arm_of, latency, intents, in_event_order=True),
            shadow_rows.table(arm_of, latency, intents, in_event_order=False),
        ]
    )
    return ScoredBatch(out, good, sorted(errors, key=lambda e: e.line), shadow_errors)


# -- routing ----------------------------------------------------------------------------


def _route(snap: Snapshot, batch: EventBatch) -> tuple[list[Route | MuseError], list[Index]]:
    """Each distinct intent's route (or why it has none) and the events of each."""
    columns, sizes = [], []
    for column in batch.intents.values():
        encoded = column.dictionary_encode()
        k = len(encoded.dictionary)
        # A null is its own value (the attribute is absent): code k.
        columns.append(encoded.indices.fill_null(k).to_numpy(zero_copy_only=False).astype(np.int64))
        sizes.append(k + 1)
    if math.prod(sizes) < 2**62:  # one integer per intent: the fast path
        codes = np.zeros(batch.n, dtype=np.int64)
        for index, size in zip(columns, sizes, strict=True):
            codes = codes * size + index
    else:  # too many distinct values to number as one integer: compare rows
        codes = np.column_stack(columns)
    distinct, first, inverse = np.unique(
        codes, return_index=True, return_inverse=True, axis=0 if codes.ndim == 2 else None
    )
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(distinct.size + 1))
    groups = [order[bounds[g] : bounds[g + 1]] for g in range(distinct.size)]
    attributes = list(batch.intents)
    routes: list[Route | MuseError] = []
    for g in range(distinct.size):
        i = int(first[g])
        intent = {a: v for a in attributes if (v := batch.intents[a][i].as_py()) is not None}
        try:
            routes.append(snap.router.route(intent))
        except (IntentError, NoRouteError) as e:
            routes.append(e)
    return routes, groups


def _empty_features(
    snap: Snapshot, table: FeatureTable, live_models: Mapping[str, Index], known: Mapping[int, str]
) -> dict[int, str]:
    """Events a live model would score with a feature missing (an empty cell, no store value
    to fill it): a request without that feature is refused, so the row is bad."""
    out: dict[int, str] = {}
    for m, idx in live_models.items():
        for f in snap.model_features[m]:
            if f not in table:
                continue  # a column no row has: run_models stops the run, naming it
            empty = idx[np.isnan(table[f][idx])]
            for i in empty.tolist():
                if i not in known and i not in out:
                    out[i] = f"feature {f!r} is empty (and not one the feature store fills)"
    return out


def _empty_for_shadows(
    snap: Snapshot,
    table: FeatureTable,
    all_models: Mapping[str, Index],
    live_models: Mapping[str, Index],
) -> Holes:
    """Events a shadow-only model cannot score for an empty feature: their shadow rows are
    left out and counted, as the service does for a feature the store could not fill."""
    holes: Holes = {}
    for m, idx in all_models.items():
        rest = np.setdiff1d(idx, live_models.get(m, np.array([], dtype=np.intp)))
        if not rest.size:
            continue
        empty = np.zeros(rest.size, dtype=bool)
        lacking = []
        for f in snap.model_features[m]:
            if f in table:
                nan = np.isnan(table[f][rest])
                if nan.any():
                    lacking.append(f)
                    empty |= nan
        if empty.any():
            holes[m] = (frozenset(rest[empty].tolist()), f"feature(s) {lacking} empty")
    return holes


def _route_error(error: MuseError) -> str:
    if isinstance(error, NoRouteError):
        return f"no scoring rule matches intent {dict(error.intent)}"
    return str(error)


def _keys(route: Route, batch: EventBatch, idx: Index) -> list[str]:
    """The entity key of each event of a split route, as a request's (see
    :func:`muse.scoring.Plan.build`): its sticky intent attribute, else that feature, else
    its event id."""
    assert route.split is not None
    name = route.split.sticky_by
    ids = batch.event_ids.take(pa.array(idx)).to_pylist()
    if name is None:
        return [str(i) for i in ids]
    if name in batch.intents:
        sticky = batch.intents[name].take(pa.array(idx)).to_pylist()
        return [s if s else str(i) for s, i in zip(sticky, ids, strict=True)]
    if name in batch.features:
        texts = [key_text(v) for v in batch.features[name][idx].tolist()]
        return [t if t is not None else str(i) for t, i in zip(texts, ids, strict=True)]
    return [str(i) for i in ids]


def _model_events(
    snap: Snapshot, groupings: Sequence[Mapping[tuple[str, str], Index]]
) -> dict[str, Index]:
    """Model → the events it must score for the groups, each once, sorted (a model two
    predictors share runs once per event: ARCHITECTURE invariant 5)."""
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    size = 1 + max((int(i.max()) for g in groupings for i in g.values() if i.size), default=0)
    for groups in groupings:
        for (predictor, _), idx in groups.items():
            for m in snap.predictors[predictor].models:
                mask = masks.get(m)
                if mask is None:
                    mask = masks[m] = np.zeros(size, dtype=bool)
                mask[idx] = True
    return {m: np.flatnonzero(mask) for m, mask in masks.items()}


def _without(groups: dict[tuple[str, str], Index], gone: Index) -> dict[tuple[str, str], Index]:
    out = {k: np.setdiff1d(v, gone) for k, v in groups.items()}
    return {k: v for k, v in out.items() if v.size}


def _enrich(
    snap: Snapshot,
    batch: EventBatch,
    table: FeatureTable,
    live_models: Mapping[str, Index],
    all_models: Mapping[str, Index],
) -> tuple[FeatureTable, Enrichment | None, dict[int, str]]:
    """``table`` completed from the feature store (as a request is), and the events whose
    live models still lack a feature, with why. A store outage stops the run."""
    store = snap.store
    if store is None:
        return table, None, {}
    features = snap.model_features
    missing = [f for f in snap.store_features if f not in table]
    gaps = any(bool(np.isnan(table[f]).any()) for f in snap.store_features if f in table)
    if not missing and not gaps:
        return table, None, {}
    enrichment = Enrichment(store, _Intents(batch.intents, batch.n), batch.n)
    table = enrichment.fill(
        table,
        [(features[m], idx) for m, idx in all_models.items()],
    )
    dropped: dict[int, str] = {}
    for m, idx in live_models.items():
        gap = enrichment.gap(table, features[m], idx)
        if gap is None:
            continue
        if isinstance(gap.error, FeatureStoreError):
            raise BackfillError(f"scoring stopped: {gap.error}")
        for i in idx[gap.bad].tolist():
            lacking = [f for f in features[m] if f in table and np.isnan(table[f][i])]
            dropped.setdefault(
                i,
                f"feature(s) {lacking} are not in the file and the feature store has no value "
                "for this event's entity",
            )
    return table, enrichment, dropped


# -- rows -------------------------------------------------------------------------------


class _Rows:
    """Lake rows gathered group by group as arrays, turned into one Arrow table at the end."""

    def __init__(self, snap: Snapshot, batch: EventBatch, arm_names: dict[str, int]) -> None:
        self.snap = snap
        self.batch = batch
        self.arm_names = arm_names
        self.events: list[Index] = []
        self.raw: list[ScoreArray] = []
        self.score: list[ScoreArray] = []
        self.labels: list[tuple[str, str, str, str, int]] = []  # predictor, role, fp, tq, n
        self.expert_names: list[npt.NDArray[np.int64]] = []
        self.expert_values: list[ScoreArray] = []
        self.expert_counts: list[npt.NDArray[np.int32]] = []
        self.models: dict[str, int] = {}

    def add(
        self,
        predictor: str,
        tenant: str,
        idx: Index,
        outputs: Mapping[str, ScoreArray],
        role: str,
    ) -> None:
        p = self.snap.predictors[predictor]
        picked = {m: outputs[m][idx] for m in p.models}
        result = p._score_checked(picked, tenant)
        g = int(idx.size)
        self.events.append(idx)
        self.raw.append(result.raw)
        self.score.append(result.score)
        self.labels.append((predictor, role, result.fingerprint, result.tq_version, g))
        models = list(result.experts)
        codes = np.array([self.models.setdefault(m, len(self.models)) for m in models])
        self.expert_names.append(np.tile(codes, g))
        self.expert_values.append(np.column_stack([result.experts[m] for m in models]).ravel())
        self.expert_counts.append(np.full(g, len(models), dtype=np.int32))

    def table(
        self,
        arm_of: Mapping[int, int],
        latency_ms: float,
        intents: pa.MapArray,
        *,
        in_event_order: bool,
    ) -> pa.Table:
        """The gathered rows as a lake table; ``in_event_order`` (the live rows: one per
        scored event) sorts them by event, so the event's own columns need no gather when
        every event of the batch was scored."""
        if not self.events:
            return LAKE_SCHEMA.empty_table()
        events = np.concatenate(self.events)
        n = int(events.size)
        counts = np.concatenate(self.expert_counts)
        names = np.concatenate(self.expert_names)
        values = np.concatenate(self.expert_values)
        raw, score = np.concatenate(self.raw), np.concatenate(self.score)
        group = np.repeat(np.arange(len(self.labels)), [lab[4] for lab in self.labels])
        if in_event_order:
            order = np.argsort(events, kind="stable")
            events, raw, score, group = events[order], raw[order], score[order], group[order]
            starts = (np.cumsum(counts) - counts)[order]
            counts = counts[order]
            # Each row's expert entries, moved with the row.
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            gather = np.repeat(starts, counts) + within
            names, values = names[gather], values[gather]
        batch = self.batch
        whole = in_event_order and n == batch.n  # every event, in order: no gather

        def per_event(array: pa.Array) -> pa.Array:
            return array if whole else array.take(pa.array(events))

        labels = self.labels
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        experts = pa.MapArray.from_arrays(
            pa.array(offsets),
            _decode(names, list(self.models)),
            pa.array(values, pa.float64()),
        )
        if arm_of:
            codes = np.fromiter((arm_of.get(i, -1) for i in events.tolist()), np.int32, n)
            arm = _decode(codes, list(self.arm_names))
        else:
            arm = pa.nulls(n, pa.string())
        timestamps = pa.array(batch.timestamps_us[events], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        )
        columns = {
            "event_id": per_event(batch.event_ids),
            "timestamp": timestamps,
            "tenant": per_event(batch.intents["tenant"]),
            "intent": per_event(intents),
            "predictor": _by_group(group, [lab[0] for lab in labels]),
            "role": _by_group(group, [lab[1] for lab in labels]),
            "fingerprint": _by_group(group, [lab[2] for lab in labels]),
            "tq_version": _by_group(group, [lab[3] for lab in labels]),
            "raw": pa.array(raw, pa.float64()),
            "score": pa.array(score, pa.float64()),
            "experts": experts,
            "latency_ms": pa.array(np.full(n, latency_ms), pa.float64()),
            "config_version": _decode(np.zeros(n, dtype=np.int32), [self.snap.version]),
            "arm": arm,
        }
        return pa.Table.from_arrays(
            [columns[f.name].cast(f.type) for f in LAKE_SCHEMA], schema=LAKE_SCHEMA
        )


def _decode(codes: npt.NDArray[np.integer], names: Sequence[str]) -> pa.Array:
    """``names[code]`` for every code (null for a negative one), built in Arrow."""
    codes = codes.astype(np.int32, copy=False)
    indices = pa.array(codes, mask=codes < 0) if (codes < 0).any() else pa.array(codes)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(names), pa.string())).cast(
        pa.string()
    )


def _by_group(group: npt.NDArray[np.intp], labels: Sequence[str]) -> pa.Array:
    """Each row's group label, the labels deduplicated first (a dictionary stays small)."""
    distinct = list(dict.fromkeys(labels))
    code = np.array([distinct.index(v) for v in labels], dtype=np.int32)
    return _decode(code[group], distinct)


def _intent_map(intents: Mapping[str, pa.Array]) -> pa.MapArray:
    """Every event's intent as a map of its non-null attributes, built without a Python
    object per event: the attribute columns are interleaved row by row and the nulls
    dropped."""
    names = list(intents)
    k = len(names)
    n = len(intents[names[0]])
    valid = np.column_stack(
        [intents[a].is_valid().to_numpy(zero_copy_only=False) for a in names]
    )  # n × k
    flat = np.flatnonzero(valid.ravel())  # row-major positions of the present values
    rows, cols = np.divmod(flat, k)
    stacked = pa.concat_arrays([intents[a] for a in names])  # column-major: a*n + row
    values = stacked.take(pa.array(cols * n + rows))
    keys = pa.DictionaryArray.from_arrays(
        pa.array(cols.astype(np.int32)), pa.array(names, pa.string())
    ).cast(pa.string())
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values)
