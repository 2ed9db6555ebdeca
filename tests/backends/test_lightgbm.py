"""LightGBM backend: same scores as the booster, refuses what is not a binary classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from muse.backends import LightGBMBackend, ModelSpec
from muse.errors import BackendError


def _spec(path: Path, **kw: Any) -> ModelSpec:
    return ModelSpec(kind="lightgbm", path=path, **kw)


def test_scores_equal_the_booster(trained: Any, files: dict[str, Path], rows: np.ndarray) -> None:
    backend = LightGBMBackend.load(_spec(files["lightgbm"]))
    np.testing.assert_array_equal(backend.predict(rows), trained.lgb.predict(rows))


def test_threads_do_not_change_scores(files: dict[str, Path], rows: np.ndarray) -> None:
    one = LightGBMBackend.load(_spec(files["lightgbm"], threads=1))
    two = LightGBMBackend.load(_spec(files["lightgbm"], threads=2))
    np.testing.assert_array_equal(one.predict(rows), two.predict(rows))
    assert "threads=2" in repr(two)


def test_features_in_the_config_rename_columns(files: dict[str, Path]) -> None:
    names = ("amount", "age", "hour", "country_risk", "velocity")
    backend = LightGBMBackend.load(_spec(files["lightgbm"], features=names))
    assert backend.feature_names == names


def test_features_in_the_config_of_wrong_length(files: dict[str, Path]) -> None:
    with pytest.raises(
        BackendError, match=r"takes 5 feature\(s\) but the features given in the config list 2"
    ) as e:
        LightGBMBackend.load(_spec(files["lightgbm"], features=("f0", "f1")))
    assert e.value.model == str(files["lightgbm"])
    assert "lgb.txt" in str(e.value)


def test_duplicate_feature_names_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError, match=r"duplicate feature name\(s\) \['f0'\]"):
        LightGBMBackend.load(_spec(files["lightgbm"], features=("f0", "f0", "f2", "f3", "f4")))


@pytest.mark.parametrize(
    ("case", "objective"),
    [("lightgbm-regression", "regression"), ("lightgbm-multiclass", "multiclass")],
)
def test_non_binary_objectives_are_refused(
    files: dict[str, Path], case: str, objective: str
) -> None:
    with pytest.raises(BackendError) as e:
        LightGBMBackend.load(_spec(files[case]))
    message = str(e.value)
    assert f"objective {objective!r}" in message
    assert "expected 'binary'" in message
    assert "retrain with objective='binary'" in message


def test_garbage_file(garbage: Path) -> None:
    with pytest.raises(BackendError, match="could not be loaded") as e:
        LightGBMBackend.load(_spec(garbage))
    assert str(garbage) in str(e.value)
    assert "LightGBM text model file" in str(e.value)


def test_unknown_option_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError, match=r"unknown option\(s\) \['output'\] for kind 'lightgbm'"):
        LightGBMBackend.load(_spec(files["lightgbm"], options=(("output", "p"),)))


def test_wrong_width_at_predict_names_the_shapes(files: dict[str, Path], rows: np.ndarray) -> None:
    backend = LightGBMBackend.load(_spec(files["lightgbm"]))
    with pytest.raises(BackendError, match=r"shape \(3, 2\) \(expected \(n, 5\)\)"):
        backend.predict(rows[:3, :2])
