"""Fakes for the feature-store tests: a recording observer and backends that count or fail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from muse.errors import FeatureStoreError
from muse.featurestore import InProcessTable
from muse.featurestore.base import EntityId
from muse.types import FeatureMatrix


class Recorder:
    """A :class:`~muse.featurestore.StoreObserver` that keeps what it is told."""

    def __init__(self) -> None:
        self.fetches: list[tuple[str, float]] = []
        self.failures: list[tuple[str, str]] = []

    def fetched(self, store: str, seconds: float) -> None:
        self.fetches.append((store, seconds))

    def failed(self, store: str, reason: str) -> None:
        self.failures.append((store, reason))

    def reasons(self) -> list[str]:
        return [reason for _, reason in self.failures]


class CountingBackend:
    """Wraps a backend; records every call's entities and features."""

    kind = "fake"

    def __init__(self, inner: InProcessTable) -> None:
        self.inner = inner
        self.calls: list[tuple[list[EntityId], list[str]]] = []

    @property
    def description(self) -> str:
        return "counting " + self.inner.description

    def fetch(self, entities: Sequence[EntityId], features: Sequence[str]) -> FeatureMatrix:
        self.calls.append((list(entities), list(features)))
        return self.inner.fetch(entities, features)

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


class DownBackend:
    """A store that is down: every call raises FeatureStoreError."""

    kind = "fake"
    description = "fake store at 127.0.0.1:1"

    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, entities: Sequence[EntityId], features: Sequence[str]) -> FeatureMatrix:
        self.calls += 1
        raise FeatureStoreError(
            f"{self.description} failed (unavailable): connection refused",
            store=self.description,
            features=features,
        )

    def check(self) -> None:
        raise FeatureStoreError(f"{self.description} does not answer", store=self.description)

    def close(self) -> None:
        pass


def write_table(path: Path, columns: dict[str, pa.Array | list[object]]) -> Path:
    """A Parquet file of ``columns`` (lists are converted by pyarrow's type inference)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def cards_table() -> InProcessTable:
    """Three cards; ``c3`` has no email age (a null cell)."""
    return InProcessTable.from_columns(
        [["c1", "c2", "c3"]],
        {"card_age_days": [10.0, 20.0, 30.0], "email_age_days": [100.0, 200.0, np.nan]},
        description="cards",
    )
