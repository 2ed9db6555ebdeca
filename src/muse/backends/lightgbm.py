"""LightGBM text models scored in process, the cheapest expert to serve on the request path."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np

from muse.backends.base import (
    InProcessBackend,
    ModelSpec,
    describe_exception,
    read_model,
    reject_unknown_options,
    resolve_feature_names,
)
from muse.errors import BackendError
from muse.types import FeatureMatrix, ScoreArray

__all__ = ["LightGBMBackend"]

#: Objectives whose prediction is a positive-class probability. ``cross_entropy`` also ends
#: in a sigmoid but is a regression on [0, 1] labels, so it is refused like the others.
_BINARY_OBJECTIVES = frozenset({"binary"})


class LightGBMBackend(InProcessBackend):
    """A LightGBM binary classifier loaded from a text model file (``Booster.save_model``).

    Build it with :meth:`load`; ``__init__`` only wires already-loaded parts together.
    ``predict`` calls the booster directly on the float64 matrix: no DataFrame, no
    per-call checks beyond what LightGBM does itself, because it runs once per event.
    """

    kind = "lightgbm"

    @classmethod
    def load(cls, spec: ModelSpec) -> LightGBMBackend:
        """Load and check ``spec.path``; every failure is a :class:`BackendError` naming the file."""
        label = f"LightGBM model {str(spec.path)!r}"
        reject_unknown_options(spec, (), label=label)
        data, digest = read_model(spec, label=label)
        try:
            booster = lightgbm.Booster(model_str=data.decode("utf-8"))
        except Exception as exc:
            raise BackendError(
                f"{label} could not be loaded: {describe_exception(exc)}; expected a LightGBM text "
                "model file written by Booster.save_model()",
                model=str(spec.path),
            ) from exc
        _require_binary(booster, spec, label)
        names = resolve_feature_names(
            spec,
            booster.feature_name(),
            booster.num_feature(),
            label=label,
            missing_hint="add `features:` to the model in the config",
        )
        return cls(
            booster, feature_names=names, digest=digest, path=spec.path, threads=spec.threads
        )

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        """Positive-class probabilities for the rows of ``features`` (see :class:`ModelBackend`)."""
        try:
            scores = self._model.predict(features, num_threads=self._threads)
        except Exception as exc:
            raise self._scoring_error(features, exc) from exc
        return np.asarray(scores, dtype=np.float64)

    def contributions(self, features: FeatureMatrix) -> tuple[np.ndarray, np.ndarray]:
        """TreeSHAP contributions in log-odds (``pred_contrib``; see :class:`Explaining`)."""
        try:
            out = self._model.predict(features, pred_contrib=True, num_threads=self._threads)
        except Exception as exc:
            raise self._scoring_error(features, exc) from exc
        values = np.asarray(out, dtype=np.float64)
        return values[:, :-1], values[:, -1].copy()


def _require_binary(booster: Any, spec: ModelSpec, label: str) -> None:
    # Dumping a single iteration is enough to read the header and keeps load time flat
    # for models with thousands of trees.
    objective = str(booster.dump_model(num_iteration=1).get("objective", "")).split(" ")[0]
    if objective not in _BINARY_OBJECTIVES or booster.num_model_per_iteration() != 1:
        raise BackendError(
            f"{label} has objective {objective!r}, expected 'binary': muse serves "
            "positive-class probabilities; retrain with objective='binary'",
            model=str(spec.path),
        )
