"""Opening feature-store backends, and the pool that keeps one per source across reloads.

A config reload must not drop the Redis connections requests are using, nor re-read an
unchanged Parquet table: the pool keys backends by their source spec (a Parquet file's
content digest included), hands the same backend to every snapshot that names the same
source, and closes the ones no snapshot names any more.
"""

from __future__ import annotations

import threading

from muse.featurestore.base import NO_OBSERVER, StoreBackend, StoreObserver
from muse.featurestore.redis import RedisStore
from muse.featurestore.spec import ParquetSource, RedisSource
from muse.featurestore.table import InProcessTable

__all__ = ["StorePool", "open_backend"]

Source = ParquetSource | RedisSource


def open_backend(source: Source, observer: StoreObserver = NO_OBSERVER) -> StoreBackend:
    """The backend of ``source``: the Parquet table loaded, or a Redis client (no I/O yet).

    Raises :class:`~muse.errors.FeatureStoreError` when a table cannot be loaded.
    """
    if isinstance(source, ParquetSource):
        return InProcessTable.load(source, observer)
    return RedisStore.connect(source, observer)


class StorePool:
    """One open backend per source; thread-safe. ``observer`` receives every backend's measures."""

    def __init__(self, observer: StoreObserver = NO_OBSERVER) -> None:
        self._observer = observer
        self._backends: dict[Source, StoreBackend] = {}
        self._lock = threading.Lock()

    def get(self, source: Source) -> StoreBackend:
        """The backend of ``source``, opened on first use."""
        with self._lock:
            backend = self._backends.get(source)
            if backend is None:
                backend = self._backends[source] = open_backend(source, self._observer)
            return backend

    def retain(self, source: Source | None) -> None:
        """Close every backend but ``source``'s (after a reload swapped in its snapshot)."""
        with self._lock:
            dropped = [b for s, b in self._backends.items() if s != source]
            self._backends = {s: b for s, b in self._backends.items() if s == source}
        for backend in dropped:
            backend.close()

    def close(self) -> None:
        """Close every backend (shutdown)."""
        self.retain(None)

    def __len__(self) -> int:
        return len(self._backends)
