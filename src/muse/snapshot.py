"""A deployment snapshot: one config version compiled into router, predictors and models.

Built beside the live one and swapped in with a single reference assignment (see
:mod:`muse.deployment`), so a call that started on a snapshot finishes on it. Every physical
model is loaded once per distinct spec through the shared :class:`~muse.backends.ModelPool`,
whichever predictors (live or shadow) use it (ARCHITECTURE invariant 5).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from muse.backends.base import REMOTE_KINDS, Explaining, ModelBackend, ModelSpec
from muse.backends.pool import ModelPool
from muse.config import LoadedConfig
from muse.errors import (
    BackendError,
    ConfigError,
    ConfigIssue,
    FeatureStoreError,
    ReasonsUnavailableError,
)
from muse.features.table import FeatureTable
from muse.featurestore import FeatureStore, StorePool, open_backend
from muse.predictor import Expert, Predictor, TenantMap
from muse.routing import Router

__all__ = ["Snapshot", "build_snapshot"]


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
    #: The name this version is served under when it is not the config's own ``version``:
    #: a deployment store's version id (``v-…``), so responses and lake rows name exactly
    #: what ``muse promote`` moved, even when two bundles share a config ``version``.
    label: str | None = None
    #: The pool the models came from: explaining models (reason codes) are loaded through
    #: it on first use, never while a version loads (asking for no reasons costs nothing).
    pool: ModelPool | None = field(default=None, repr=False)
    #: Features a request may carry: every model's, entity-key parts sent as features, and
    #: the request features canary splits are sticky by.
    known_features: frozenset[str] = field(init=False)
    #: Store-provided features some model needs: a request carrying all of them skips the store.
    store_features: tuple[str, ...] = field(init=False)
    #: Features some events of a batch may send and others not: the store's, and the request
    #: features canary splits are sticky by.
    optional_features: tuple[str, ...] = field(init=False)
    #: Model → its feature names (what the feature store is asked to complete).
    model_features: Mapping[str, tuple[str, ...]] = field(init=False)
    #: Whether a model is on a remote server: then scoring may wait on the network, and the
    #: HTTP layer runs it off the event loop.
    remote: bool = field(init=False)

    def explainer(self, model: str) -> Explaining:
        """What explains ``model``'s outputs: the model itself when it is a tree model in
        process, else the tree model it was exported from (``models.<m>.explain``) — loaded
        and checked on first use, then kept. Raises :class:`ReasonsUnavailableError` saying
        why there is none."""
        cache: dict[str, Explaining | str] = self.__dict__.setdefault("_explainers", {})
        found = cache.get(model)
        if found is None:
            with _EXPLAIN_LOCK:
                found = cache.get(model)
                if found is None:
                    found = cache[model] = self._load_explainer(model)
        if isinstance(found, str):
            raise ReasonsUnavailableError(found)
        return found

    def _load_explainer(self, model: str) -> Explaining | str:
        backend = self.backends[model]
        spec = self.config.explain_specs.get(model)
        if spec is None and backend.kind not in ("lightgbm", "xgboost"):
            return (
                f"model {model!r} ({backend.kind}) cannot give reasons: it has no contribution "
                f"method; give "
                f"models.{model}.explain, the tree model (LightGBM .txt or XGBoost .json) it "
                "was exported from"
            )
        try:
            explainer = _explainer(self.pool or ModelPool(), backend, spec)
            why = (
                None
                if explainer is None
                else _check_explainer(backend, explainer, own=spec is None)
            )
        except BackendError as e:
            explainer, why = None, str(e)
        if explainer is None or why is not None:
            return f"model {model!r} cannot give reasons: {why or 'no contributions'}"
        return explainer

    def __post_init__(self) -> None:
        used = frozenset(f for b in self.backends.values() for f in b.feature_names)
        keys = self.store.key_features if self.store is not None else ()
        provided = self.store.provides if self.store is not None else frozenset()
        sticky = self.router.sticky_keys()
        object.__setattr__(self, "known_features", used | frozenset(keys) | sticky)
        object.__setattr__(self, "store_features", tuple(sorted(used & provided)))
        object.__setattr__(self, "optional_features", tuple(sorted((used & provided) | sticky)))
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
        """The version responses and lake rows name: :attr:`label`, else the config's."""
        return self.label if self.label is not None else self.config.version


def build_snapshot(
    config: LoadedConfig,
    pool: ModelPool,
    stores: StorePool | None = None,
    *,
    label: str | None = None,
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
        label=label,
        pool=pool,
    )


_EXPLAIN_LOCK = threading.Lock()

#: Rows an explaining model is checked on, and how far its outputs may be from those of the
#: model it explains (an ONNX export computes in float32) and from what its own
#: contributions add up to.
PROBE_ROWS, PROBE_TOLERANCE, ADDITIVE_TOLERANCE = 64, 1e-4, 1e-6


def _explainer(pool: ModelPool, backend: ModelBackend, spec: ModelSpec | None) -> Explaining | None:
    if spec is None:
        kind_explains = backend.kind in ("lightgbm", "xgboost")
        return backend if kind_explains and isinstance(backend, Explaining) else None
    try:
        loaded = pool.get(spec)
    except BackendError as e:
        if "no feature names" not in str(e):
            raise
        # A tree model saved without names: it takes the served model's columns.
        loaded = pool.get(replace(spec, features=backend.feature_names))
    if not isinstance(loaded, Explaining):  # pragma: no cover - tree kinds explain
        raise BackendError(f"a {spec.kind} model gives no contributions", model=str(spec.path))
    return loaded


def _check_explainer(backend: ModelBackend, explainer: Explaining, *, own: bool) -> str | None:
    """Why ``explainer`` cannot explain ``backend``, or None."""
    if not own and set(explainer.feature_names) != set(backend.feature_names):
        return (
            f"explains features {sorted(explainer.feature_names)} but the model uses "
            f"{sorted(backend.feature_names)}: it is not the model this was exported from"
        )
    table = FeatureTable(
        {
            f: col
            for f, col in zip(
                backend.feature_names, _probe(len(backend.feature_names)), strict=True
            )
        }
    )
    x = table.matrix(explainer.feature_names)
    values, bias = explainer.contributions(x)
    own_output = explainer.predict(x)
    added = 1.0 / (1.0 + np.exp(-(bias + values.sum(axis=1))))
    gap = float(np.max(np.abs(added - own_output)))
    if not gap <= ADDITIVE_TOLERANCE:
        return (
            f"its contributions do not add up to its outputs (largest difference {gap:.3g}): "
            "reasons need a binary logistic model whose output is σ(margin) (for LightGBM, "
            "sigmoid 1)"
        )
    if own or backend.kind in REMOTE_KINDS:  # a remote model is not called while loading
        return None
    served = backend.predict(table.matrix(backend.feature_names))
    gap = float(np.max(np.abs(served - own_output)))
    if not gap <= PROBE_TOLERANCE:
        return (
            f"answers differently from the model it explains (largest difference {gap:.3g} "
            f"over {PROBE_ROWS} probe rows, more than {PROBE_TOLERANCE:g}): give the tree model "
            "this one was exported from"
        )
    return None


def _probe(width: int) -> list[np.ndarray]:
    """Probe columns at several scales (probabilities, counts, amounts), so splits of
    features in [0, 1] and in the thousands are both crossed."""
    rng = np.random.default_rng(0)
    scale = np.repeat([1.0, 10.0, 1000.0], -(-PROBE_ROWS // 3))[:PROBE_ROWS]
    return [np.abs(rng.normal(0.0, 1.0, PROBE_ROWS)) * scale for _ in range(width)]
