"""A deployment snapshot: one config version compiled into router, predictors and models.

Built beside the live one and swapped in with a single reference assignment (see
:mod:`muse.deployment`), so a call that started on a snapshot finishes on it. Every physical
model is loaded once per distinct spec through the shared :class:`~muse.backends.ModelPool`,
whichever predictors (live or shadow) use it (ARCHITECTURE invariant 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from muse.backends.base import REMOTE_KINDS, Explaining, ModelBackend
from muse.backends.pool import ModelPool
from muse.config import LoadedConfig
from muse.errors import BackendError, ConfigError, ConfigIssue, FeatureStoreError
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
    #: Model → what explains its outputs (reason codes): the model itself when it is a tree
    #: model in process, else the tree model it was exported from (``models.<m>.explain``).
    explainers: Mapping[str, Explaining] = field(default_factory=lambda: MappingProxyType({}))
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
    explainers = _explainers(config, pool, backends, issues)
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
        explainers=MappingProxyType(explainers),
    )


#: Rows an explaining model is checked on against the model it explains, and how far
#: apart their outputs may be (an ONNX export computes in float32).
PROBE_ROWS, PROBE_TOLERANCE = 256, 1e-4


def _explainers(
    config: LoadedConfig,
    pool: ModelPool,
    backends: Mapping[str, ModelBackend],
    issues: list[ConfigIssue],
) -> dict[str, Explaining]:
    out: dict[str, Explaining] = {}
    for name, backend in backends.items():
        spec = config.explain_specs.get(name)
        if spec is None:
            if backend.kind in ("lightgbm", "xgboost") and isinstance(backend, Explaining):
                out[name] = backend
            continue
        where = f"models.{name}.explain"
        try:
            explainer = pool.get(spec)
        except BackendError as e:
            issues.append(ConfigIssue(where, str(e)))
            continue
        if not isinstance(explainer, Explaining):  # pragma: no cover - tree kinds explain
            issues.append(ConfigIssue(where, f"a {spec.kind} model gives no contributions"))
            continue
        if set(explainer.feature_names) != set(backend.feature_names):
            issues.append(
                ConfigIssue(
                    where,
                    f"explains features {sorted(explainer.feature_names)} but the model uses "
                    f"{sorted(backend.feature_names)}: it is not the model this was exported from",
                )
            )
            continue
        if backend.kind not in REMOTE_KINDS:  # a remote model is not called while loading
            rng = np.random.default_rng(0)
            table = FeatureTable(
                {f: rng.normal(0.0, 100.0, PROBE_ROWS) for f in backend.feature_names}
            )
            served = backend.predict(table.matrix(backend.feature_names))
            own = explainer.predict(table.matrix(explainer.feature_names))
            gap = float(np.max(np.abs(served - own)))
            if not gap <= PROBE_TOLERANCE:
                issues.append(
                    ConfigIssue(
                        where,
                        f"answers differently from the model it explains (largest difference "
                        f"{gap:.3g} over {PROBE_ROWS} probe rows, more than {PROBE_TOLERANCE:g}): "
                        "give the tree model this one was exported from",
                    )
                )
                continue
        out[name] = explainer
    return out
