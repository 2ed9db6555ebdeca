"""XGBoost backend: same scores as ``Booster.predict``, refuses what is not binary:logistic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from muse.backends import ModelSpec, XGBoostBackend
from muse.errors import BackendError


def _spec(path: Path, **kw: Any) -> ModelSpec:
    return ModelSpec(kind="xgboost", path=path, **kw)


@pytest.mark.parametrize("case", ["xgboost-json", "xgboost-ubj"])
def test_scores_equal_booster_predict(
    trained: Any, files: dict[str, Path], rows: np.ndarray, features: tuple[str, ...], case: str
) -> None:
    backend = XGBoostBackend.load(_spec(files[case]))
    expected = trained.xgb.predict(xgboost.DMatrix(rows, feature_names=list(features)))
    np.testing.assert_allclose(backend.predict(rows), expected, rtol=0, atol=1e-6)


def test_model_without_names_needs_features_in_the_config(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError) as e:
        XGBoostBackend.load(_spec(files["xgboost-unnamed"]))
    message = str(e.value)
    assert "xgb_unnamed.json" in message
    assert "has no feature names" in message
    assert "add `features:` to the model in the config" in message


def test_features_in_the_config_of_wrong_length(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError, match=r"takes 5 feature\(s\) but .* list 6"):
        XGBoostBackend.load(_spec(files["xgboost-json"], features=tuple("abcdef")))


def test_regression_objective_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError) as e:
        XGBoostBackend.load(_spec(files["xgboost-regression"]))
    message = str(e.value)
    assert "objective 'reg:squarederror'" in message
    assert "expected 'binary:logistic'" in message
    assert "xgb_regression.json" in message


def test_garbage_file(garbage: Path) -> None:
    with pytest.raises(BackendError, match="could not be loaded") as e:
        XGBoostBackend.load(_spec(garbage))
    message = str(e.value)
    assert str(garbage) in message
    assert ".json or .ubj" in message
    assert "Stack trace" not in message, "C++ stack traces stay out of the message"


def test_wrong_width_at_predict_names_the_shapes(files: dict[str, Path], rows: np.ndarray) -> None:
    backend = XGBoostBackend.load(_spec(files["xgboost-json"]))
    with pytest.raises(BackendError, match=r"shape \(3, 2\) \(expected \(n, 5\)\)"):
        backend.predict(rows[:3, :2])
