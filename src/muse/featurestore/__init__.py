"""Feature-store enrichment (paper §2.5.1): features a request omits, filled by entity key.

Backends: :class:`InProcessTable` (a Parquet file in memory: the embedded default) and
:class:`RedisStore` (one hash per entity, pipelined reads, a timeout, a circuit breaker).
pyarrow and the Redis client are imported only when a backend of theirs is opened.
"""

from muse.featurestore.base import StoreBackend, StoreObserver
from muse.featurestore.pool import StorePool, open_backend
from muse.featurestore.redis import RedisStore
from muse.featurestore.spec import (
    EntityKey,
    FeatureStoreSpec,
    ParquetSource,
    RedisSource,
    StoreFeature,
)
from muse.featurestore.store import FeatureStore
from muse.featurestore.table import InProcessTable

__all__ = [
    "EntityKey",
    "FeatureStore",
    "FeatureStoreSpec",
    "InProcessTable",
    "ParquetSource",
    "RedisSource",
    "RedisStore",
    "StoreBackend",
    "StoreFeature",
    "StoreObserver",
    "StorePool",
    "open_backend",
]
