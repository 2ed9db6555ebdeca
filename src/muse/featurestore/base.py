"""The contract of a feature-store backend, and how entity keys are written.

A backend answers one question per batch: for these entities, these features — as a
float matrix with NaN where it has no value. One call per batch, whatever its size, is
what keeps enrichment cheap: the in-process table gathers rows with one numpy take, Redis
answers a pipeline of ``HMGET`` in one round trip. Defaults, required features and which
events need what are decided above the backend (:mod:`muse.featurestore.store`), the same
for every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from muse.splits import key_text as split_key_text
from muse.types import FeatureMatrix

__all__ = ["EntityId", "StoreBackend", "StoreObserver", "key_text"]

#: An entity's key parts, in the order the config lists them (``("card-00002",)``).
EntityId = tuple[str, ...]


@runtime_checkable
class StoreBackend(Protocol):
    """One opened store (a loaded table, a client). Thread-safe for concurrent ``fetch``."""

    @property
    def kind(self) -> str:
        """``"parquet"`` or ``"redis"``: the label of its metrics."""
        ...

    @property
    def description(self) -> str:
        """Where it reads from, for logs and errors (never sent to clients)."""
        ...

    def fetch(self, entities: Sequence[EntityId], features: Sequence[str]) -> FeatureMatrix:
        """``(len(entities), len(features))`` values; NaN where the store has none.

        A new array the caller owns (it fills in defaults in place), never a view of the
        store's own data. Raises :class:`~muse.errors.FeatureStoreError` when the store cannot answer.
        """
        ...

    def check(self) -> None:
        """Raise :class:`~muse.errors.FeatureStoreError` unless the store answers now."""
        ...

    def close(self) -> None:
        """Release connections or memory; the backend is not used afterwards."""
        ...


class StoreObserver(Protocol):
    """Receives what a backend measures (the serving layer turns it into metrics)."""

    def fetched(self, store: str, seconds: float) -> None:
        """One lookup answered in ``seconds``."""
        ...

    def failed(self, store: str, reason: str) -> None:
        """One lookup failed (``timeout``, ``unavailable``, ``circuit_open``, ``error``), or
        a stored value was unusable (``invalid_value``)."""
        ...


class _NoObserver:
    def fetched(self, store: str, seconds: float) -> None:
        pass

    def failed(self, store: str, reason: str) -> None:
        pass


NO_OBSERVER: StoreObserver = _NoObserver()


def key_text(value: object) -> str:
    """The text of one key part: intent values as they are, numbers without a spurious ``.0``.

    A card id sent as the feature ``1234`` arrives as the float 1234.0; written as
    ``"1234"`` it finds the row whose id column holds the integer 1234 or the text
    ``"1234"``, and the Redis hash ``card:1234``. The same text a canary split hashes
    (:func:`muse.splits.key_text`), so an entity is one entity everywhere.
    """
    text = split_key_text(value)
    return str(value) if text is None else text
