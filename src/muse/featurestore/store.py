"""Enrichment: fill the features a request omitted from the feature store (paper §2.5.1).

Clients send what they know; a model may need more (a card's age, an email's age, a
feature a new model was trained with). The ``feature_store`` section names the entity key
(intent attributes or request features, e.g. ``card_id``), the features the store
provides, and for each either a default (for an entity the store does not know, or an
event that names none) or ``required``. So a new model that needs a feature the store
has goes live or into shadow without any client change ("easy feature evolution").

:class:`FeatureStore` is the deployment's policy around a backend; :class:`Enrichment` is
the store work of one batch. The service asks it to fill what the models about to run
need — only features absent from the request, only for the events whose routes need them,
each (feature, event) at most once, in one backend call — and, before a model runs, which
of its events still lack a value and why: the store was unavailable (the caller gets a
:class:`~muse.errors.FeatureStoreError`, HTTP 503) or a required feature has no value
(:class:`~muse.errors.FeatureError`, HTTP 422). A live model raises; a shadow model
skips those events and records why (ARCHITECTURE invariant 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from muse.errors import FeatureError, FeatureStoreError, MuseError
from muse.features.table import FeatureTable
from muse.featurestore.base import EntityId, StoreBackend, key_text
from muse.featurestore.spec import FeatureStoreSpec
from muse.types import FeatureMatrix, Intent

__all__ = ["Enrichment", "FeatureStore", "Gap"]

#: ``(feature names of a model, indices of the events it runs on)``.
Need = tuple[Sequence[str], npt.NDArray[np.intp]]
BoolArray = npt.NDArray[np.bool_]


class FeatureStore:
    """The feature store of one deployment: which features it fills, by which key, how.

    ``spec`` is the resolved ``feature_store`` section, ``backend`` the opened source
    (an :class:`~muse.featurestore.table.InProcessTable` or a
    :class:`~muse.featurestore.redis.RedisStore`).
    """

    __slots__ = (
        "_default_rows",
        "_defaults",
        "_names",
        "backend",
        "key_features",
        "provides",
        "spec",
    )

    def __init__(self, spec: FeatureStoreSpec, backend: StoreBackend) -> None:
        self.spec = spec
        self.backend = backend
        #: Features the store can fill.
        self.provides: frozenset[str] = frozenset(spec.feature_names)
        #: Key parts clients send as request features (accepted even if no model uses them).
        self.key_features: tuple[str, ...] = tuple(k.name for k in spec.keys if not k.from_intent)
        self._defaults = {f.name: f.default for f in spec.features if f.default is not None}
        self._names = tuple(k.name for k in spec.keys)
        #: features → their defaults as one row (NaN: required), so filling is one copyto.
        self._default_rows: dict[tuple[str, ...], npt.NDArray[np.float64]] = {}

    def entity(self, intent: Intent, table: FeatureTable, i: int) -> EntityId | None:
        """Event ``i``'s entity key, or None when the event lacks a part of it."""
        parts: list[str] = []
        for key in self.spec.keys:
            if key.from_intent:
                value = intent.get(key.name)
                if value is None:
                    return None
                parts.append(value)
            else:
                if key.name not in table:
                    return None
                parts.append(key_text(float(table[key.name][i])))
        return tuple(parts)

    def describe_key(self, entity: EntityId | None) -> str:
        """``card_id 'card-00002'`` (every part, for a composite key); for no entity, the
        request fields that carry the key (``intent.card_id``), for messages."""
        if entity is None:
            return " and ".join(
                ("intent." if k.from_intent else "features.") + k.name for k in self.spec.keys
            )
        return ", ".join(f"{n} {v!r}" for n, v in zip(self._names, entity, strict=True))

    def lookup(
        self, entities: Sequence[EntityId | None], features: Sequence[str]
    ) -> tuple[FeatureMatrix, FeatureStoreError | None]:
        """Values of ``features`` per entity, defaults applied; NaN where there is none.

        Each distinct entity is asked once. Defaults stand in for what the store does not
        know; an event without an entity (None) was not looked up and gets NaN, so a
        client that omits a feature and names no entity is told so, as without a store.
        When the backend fails, every value is NaN (an outage is not "no value": no
        default hides it) and the error is returned, not raised: which events that hurts
        is the caller's decision — a live model's fail, a shadow's are counted.
        """
        if len(entities) == 1:  # the single-event request path: no dedup, no gather
            (entity,) = entities
            if entity is None:
                return np.full((1, len(features)), np.nan), None
            try:
                one = np.asarray(self.backend.fetch([entity], features), dtype=np.float64)
            except FeatureStoreError as e:
                return np.full((1, len(features)), np.nan), e
            self._with_defaults(one, features)
            return one, None
        distinct: dict[EntityId, int] = {}
        rows = np.empty(len(entities), dtype=np.intp)
        for i, entity in enumerate(entities):
            rows[i] = -1 if entity is None else distinct.setdefault(entity, len(distinct))
        values = np.full((len(distinct) + 1, len(features)), np.nan)  # last row: no entity
        error = None
        if distinct:
            try:
                values[:-1] = self.backend.fetch(list(distinct), features)
            except FeatureStoreError as e:
                error = e
            else:
                self._with_defaults(values[:-1], features)
        out: FeatureMatrix = values[rows]
        return out, error

    def _with_defaults(self, values: FeatureMatrix, features: Sequence[str]) -> None:
        """Replace, in place, the NaN of features that have a default by that default."""
        key = tuple(features)
        row = self._default_rows.get(key)
        if row is None:
            row = self._default_rows[key] = np.array(
                [self._defaults.get(f, np.nan) for f in key], dtype=np.float64
            )
        np.copyto(values, row, where=np.isnan(values))

    def __repr__(self) -> str:
        return (
            f"FeatureStore(key={list(self._names)}, features={sorted(self.provides)}, "
            f"backend={self.backend.description!r})"
        )


class Gap:
    """Events of a model's batch that lack a store-filled feature: ``bad`` (a mask over the
    model's events) and ``error`` for the first of them."""

    __slots__ = ("bad", "error")

    def __init__(self, bad: BoolArray, error: MuseError) -> None:
        self.bad = bad
        self.error = error


class Enrichment:
    """The feature-store work of one batch: what was fetched for which events, what failed.

    Mutable and used by one thread at a time: the request fills what live models need,
    then the shadow worker (later, off the response path) what only shadows need.
    """

    __slots__ = ("_attempted", "_incomplete", "_intents", "_n", "_store", "_unavailable")

    def __init__(self, store: FeatureStore, intents: Sequence[Intent], n_events: int) -> None:
        self._store = store
        self._intents = intents
        self._n = n_events
        #: feature → events a lookup was made for (whatever its outcome).
        self._attempted: dict[str, BoolArray] = {}
        #: feature → (events whose lookup failed, the error).
        self._unavailable: dict[str, tuple[BoolArray, FeatureStoreError]] = {}
        #: Features some asked event got no value for: only their models need a gap check.
        self._incomplete: set[str] = set()

    @property
    def filled(self) -> frozenset[str]:
        """Features this batch asked the store for."""
        return frozenset(self._attempted)

    def fill(
        self, table: FeatureTable, needs: Iterable[Need], also: Iterable[Need] = ()
    ) -> FeatureTable:
        """``table`` plus the store's values for what ``needs`` lack, in one lookup.

        ``needs`` lists the models about to run as (feature names, event indices). A
        feature is fetched when the request lacks it and the store provides it, for the
        events not asked before. ``also`` adds features (not events) to the same lookup:
        the live path fetches the shadows' extra features of the same entities in its one
        round trip, so the shadow worker rarely needs another. Never raises for a store
        failure: it is recorded and reported by :meth:`gap`.
        """
        store = self._store
        if self._n == 1:
            return self._fill_one(table, needs, also)
        masks: dict[str, BoolArray] = {}
        sent: dict[str, BoolArray] = {}  # a column some events sent: only its gaps are asked
        for names, idx in needs:
            for f in names:
                if f not in store.provides:
                    continue
                if f in table and f not in self._attempted:
                    has = sent.get(f)
                    if has is None:
                        has = sent[f] = ~np.isnan(table[f])
                    if has.all():
                        continue
                mask = masks.get(f)
                if mask is None:
                    mask = masks[f] = np.zeros(self._n, dtype=bool)
                mask[idx] = True
        for f, has in sent.items():
            if f in masks:
                masks[f] &= ~has
        events_mask = np.zeros(self._n, dtype=bool)
        features: list[str] = []
        for f, mask in masks.items():
            before = self._attempted.get(f)
            if before is not None:
                mask &= ~before
            if mask.any():
                features.append(f)
                events_mask |= mask
        if not features:
            return table
        for names, _ in also:
            for f in names:
                if (
                    f in store.provides
                    and f not in features
                    and (f in self._attempted or f not in table)
                ):
                    features.append(f)
        events = np.flatnonzero(events_mask)
        entities = [store.entity(self._intents[i], table, i) for i in events.tolist()]
        values, error = store.lookup(entities, features)
        asked = (
            events[np.array([e is not None for e in entities], dtype=bool)]
            if error is not None
            else events
        )
        columns: dict[str, npt.NDArray[np.float64]] = {}
        for j, f in enumerate(features):
            before = self._attempted.get(f)
            if before is not None or f in table:
                col = table[f].copy()
                # What an event sent stays: the store fills only the gaps.
                col[events] = np.where(np.isnan(col[events]), values[:, j], col[events])
            else:
                col = np.full(self._n, np.nan)
                col[events] = values[:, j]
            columns[f] = col
            if before is None:
                before = self._attempted[f] = np.zeros(self._n, dtype=bool)
            before[events] = True
            self._record(f, values[:, j], asked, error)
        return table.with_columns(columns)

    def _fill_one(
        self, table: FeatureTable, needs: Iterable[Need], also: Iterable[Need]
    ) -> FeatureTable:
        """:meth:`fill` for a single event, in plain Python: numpy's per-call overhead on
        one-element masks cost more than the lookup itself."""
        provides = self._store.provides
        features: list[str] = []
        for names, idx in needs:
            if len(idx):
                for f in names:
                    if f in provides and f not in table and f not in features:
                        features.append(f)
        if not features:
            return table
        for names, _ in also:
            for f in names:
                if f in provides and f not in table and f not in features:
                    features.append(f)
        entity = self._store.entity(self._intents[0], table, 0)
        values, error = self._store.lookup([entity], features)
        asked = _ONE if entity is not None else _NONE
        columns: dict[str, npt.NDArray[np.float64]] = {}
        for j, (f, missing) in enumerate(zip(features, np.isnan(values[0]).tolist(), strict=True)):
            columns[f] = values[:, j]
            self._attempted[f] = _ASKED
            if missing:
                self._incomplete.add(f)
            if error is not None:
                self._record(f, values[:, j], asked, error)
        return table.with_columns(columns)

    def _record(
        self,
        feature: str,
        values: npt.NDArray[np.float64],
        asked: npt.NDArray[np.intp],
        error: FeatureStoreError | None,
    ) -> None:
        if np.isnan(values).any():
            self._incomplete.add(feature)
        if error is not None:
            failed, _ = self._unavailable.get(feature, (np.zeros(self._n, dtype=bool), error))
            failed[asked] = True
            self._unavailable[feature] = (failed, error)

    def gap(
        self, table: FeatureTable, names: Sequence[str], idx: npt.NDArray[np.intp]
    ) -> Gap | None:
        """Which of events ``idx`` lack a store-filled feature among ``names``, and why.

        None when every event has every value (the common case, one NaN test per filled
        feature of the model). The error names the first such event: a
        :class:`FeatureStoreError` if the store failed for it, else a
        :class:`FeatureError` naming the required feature the store has no value for.
        """
        incomplete = self._incomplete
        if not incomplete or not any(f in incomplete for f in names):
            return None
        bad: BoolArray | None = None
        for f in names:
            if f in incomplete:
                nan = np.isnan(table[f][idx])
                if nan.any():
                    bad = nan if bad is None else bad | nan
        if bad is None:
            return None
        i = int(idx[int(np.argmax(bad))])
        lacking = [f for f in names if f in incomplete and np.isnan(table[f][i])]
        # An outage names every feature the event lacks for it, not only this model's: the
        # client's way around it is to send them all.
        down = [f for f, (failed, _) in self._unavailable.items() if failed[i]]
        store = self._store
        if any(f in down for f in lacking):
            cause = self._unavailable[down[0]][1]
            error: MuseError = FeatureStoreError(
                f"feature(s) {down} are not in the request (event {i}) and the feature store "
                f"is unavailable: {cause}; send them, or retry later",
                store=cause.store,
                features=down,
            )
        else:
            entity = store.entity(self._intents[i], table, i)
            if entity is None:
                why = (
                    f"the event has no {store.describe_key(None)} to look it up by in the "
                    "feature store; send the feature, or the key"
                )
            else:
                why = (
                    f"the feature store has no value for {store.describe_key(entity)}; "
                    "send the feature"
                )
            error = FeatureError(
                f"missing feature {lacking[0]!r} (event {i}): it is not in the request, and {why}",
                feature=lacking[0],
                index=i,
            )
        return Gap(bad, error)


_ONE = np.zeros(1, dtype=np.intp)
_NONE = np.zeros(0, dtype=np.intp)
#: The attempted-mask of a single-event batch (shared: a later fill of it never writes).
_ASKED = np.ones(1, dtype=bool)
_ASKED.flags.writeable = False
