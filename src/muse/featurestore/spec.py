"""What a deployment's feature store is, as plain frozen values (no I/O, no client).

:func:`muse.config.load_config` resolves the ``feature_store`` section into a
:class:`FeatureStoreSpec`; :mod:`muse.featurestore.pool` opens the backend it names. The
source specs are the identity of a backend: two configs with equal sources share one
loaded table or one Redis connection pool across a reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EntityKey", "FeatureStoreSpec", "ParquetSource", "RedisSource", "StoreFeature"]


@dataclass(frozen=True, slots=True)
class EntityKey:
    """One part of the entity key: an intent attribute (``from_intent``) or a request feature."""

    name: str
    from_intent: bool


@dataclass(frozen=True, slots=True)
class StoreFeature:
    """A feature the store provides: ``default`` for entities it lacks, or None = required."""

    name: str
    default: float | None = None

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True, slots=True)
class ParquetSource:
    """An in-process table read from a Parquet file: one row per entity.

    ``digest`` is the file's content hash, so a replaced file is loaded again on reload
    while an unchanged one is reused.
    """

    path: Path
    digest: str
    keys: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "parquet"


@dataclass(frozen=True, slots=True)
class RedisSource:
    """A Redis server holding one hash per entity: ``key_prefix`` + key parts joined by ``:``.

    ``timeout_s`` bounds connecting and every read; after ``failure_threshold`` failures in
    a row the circuit breaker fails lookups at once for ``reset_timeout_s``, then probes.
    """

    url: str
    key_prefix: str = ""
    timeout_s: float = 0.02
    failure_threshold: int = 5
    reset_timeout_s: float = 5.0
    max_connections: int = 64

    @property
    def kind(self) -> str:
        return "redis"


@dataclass(frozen=True, slots=True)
class FeatureStoreSpec:
    """The ``feature_store`` section, resolved: entity key, provided features, source."""

    keys: tuple[EntityKey, ...]
    features: tuple[StoreFeature, ...]
    source: ParquetSource | RedisSource

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)
