"""Fake backends for unit tests of code that *uses* models (the real ones are tested in
tests/backends). They follow the ModelBackend protocol exactly."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from muse.types import FeatureMatrix, ScoreArray


class FunctionBackend:
    """Scores with a plain function of the feature matrix; counts calls and rows."""

    kind = "fake"

    def __init__(
        self, name: str, features: tuple[str, ...], fn: Callable[[FeatureMatrix], ScoreArray]
    ) -> None:
        self.name = name
        self._features = features
        self._fn = fn
        self.calls = 0
        self.rows = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._features

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.name.encode()).hexdigest()

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        self.calls += 1
        self.rows += features.shape[0]
        return np.asarray(self._fn(features), dtype=np.float64)


def logistic(
    name: str, features: tuple[str, ...], scale: float = 1.0, shift: float = 0.0
) -> FunctionBackend:
    """A smooth model: sigmoid(scale · mean(features) + shift)."""
    return FunctionBackend(
        name, features, lambda X: 1.0 / (1.0 + np.exp(-(scale * X.mean(axis=1) + shift)))
    )


class FailingBackend(FunctionBackend):
    """Raises on every call, as a crashed runtime would."""

    def __init__(self, name: str, features: tuple[str, ...]) -> None:
        super().__init__(name, features, lambda X: X[:, 0])

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        self.calls += 1
        raise RuntimeError(f"{self.name} is down")
