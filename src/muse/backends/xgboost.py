"""XGBoost JSON/UBJ models scored in process with ``inplace_predict`` (no DMatrix per call)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xgboost

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

__all__ = ["XGBoostBackend"]

#: ``reg:logistic`` and ``binary:logitraw`` are refused on purpose: the first is a regression
#: on [0, 1] targets, the second returns margins, neither is a calibrated classifier output.
_BINARY_OBJECTIVES = frozenset({"binary:logistic"})


class XGBoostBackend(InProcessBackend):
    """An XGBoost ``binary:logistic`` booster loaded from a ``.json`` or ``.ubj`` model file.

    Build it with :meth:`load`. ``inplace_predict`` is lock-free across threads and skips
    the DMatrix construction that dominates single-event latency with ``Booster.predict``.
    """

    kind = "xgboost"

    @classmethod
    def load(cls, spec: ModelSpec) -> XGBoostBackend:
        """Load and check ``spec.path``; every failure is a :class:`BackendError` naming the file."""
        label = f"XGBoost model {str(spec.path)!r}"
        reject_unknown_options(spec, (), label=label)
        data, digest = read_model(spec, label=label)
        try:
            booster = xgboost.Booster(params={"nthread": spec.threads})
            booster.load_model(bytearray(data))
        except Exception as exc:
            raise BackendError(
                f"{label} could not be loaded: {describe_exception(exc)}; expected a model "
                "written by Booster.save_model() to a file ending in .json or .ubj",
                model=str(spec.path),
            ) from exc
        objective = _objective(booster)
        if objective not in _BINARY_OBJECTIVES:
            raise BackendError(
                f"{label} has objective {objective!r}, expected 'binary:logistic': muse serves "
                "positive-class probabilities; retrain with objective='binary:logistic'",
                model=str(spec.path),
            )
        names = resolve_feature_names(
            spec,
            booster.feature_names,
            booster.num_features(),
            label=label,
            missing_hint=(
                "add `features:` to the model in the config, or train on a DMatrix built "
                "with feature_names=[...] and save the model again"
            ),
        )
        return cls(
            booster, feature_names=names, digest=digest, path=spec.path, threads=spec.threads
        )

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        """Positive-class probabilities for the rows of ``features`` (see :class:`ModelBackend`)."""
        try:
            # Columns are already in the model's order: name validation would only cost time.
            scores = self._model.inplace_predict(features, validate_features=False)
        except Exception as exc:
            raise self._scoring_error(features, exc) from exc
        return np.asarray(scores, dtype=np.float64)

    def contributions(self, features: FeatureMatrix) -> tuple[np.ndarray, np.ndarray]:
        """TreeSHAP contributions in log-odds (``pred_contribs``; see :class:`Explaining`).

        Through a DMatrix: ``inplace_predict`` has no contributions."""
        try:
            matrix = xgboost.DMatrix(np.asarray(features), nthread=self._threads)
            out = self._model.predict(matrix, pred_contribs=True, validate_features=False)
        except Exception as exc:
            raise self._scoring_error(features, exc) from exc
        values = np.asarray(out, dtype=np.float64)
        return values[:, :-1], values[:, -1].copy()


def _objective(booster: Any) -> str:
    try:
        return str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    except (KeyError, TypeError, ValueError):
        return "<unknown>"
