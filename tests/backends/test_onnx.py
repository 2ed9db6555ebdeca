"""ONNX backend: agrees with the native models it was converted from, whatever the layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from muse.backends import ModelSpec, OnnxBackend
from muse.errors import BackendError


def _spec(path: Path, **kw: Any) -> ModelSpec:
    return ModelSpec(kind="onnx", path=path, **kw)


@pytest.mark.parametrize("case", ["onnx-lightgbm", "onnx-lightgbm-zipmap"])
def test_lightgbm_and_its_onnx_conversion_agree(
    trained: Any, files: dict[str, Path], rows: np.ndarray, case: str
) -> None:
    backend = OnnxBackend.load(_spec(files[case]))
    np.testing.assert_allclose(backend.predict(rows), trained.lgb.predict(rows), rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", ["onnx-lr", "onnx-lr-zipmap", "onnx-lr-double", "onnx-n1"])
def test_logistic_regression_equals_sklearn(
    trained: Any, files: dict[str, Path], rows: np.ndarray, features: tuple[str, ...], case: str
) -> None:
    backend = OnnxBackend.load(_spec(files[case], features=features))
    expected = trained.lr.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(backend.predict(rows), expected, rtol=0, atol=1e-5)


def test_double_input_is_fed_without_float32_rounding(
    trained: Any, files: dict[str, Path], rows: np.ndarray, features: tuple[str, ...]
) -> None:
    backend = OnnxBackend.load(_spec(files["onnx-lr-double"], features=features))
    expected = trained.lr.predict_proba(rows)[:, 1]
    # float32 anywhere on the way would cost ~1e-8; what remains is summation order.
    np.testing.assert_allclose(backend.predict(rows), expected, rtol=0, atol=1e-12)


def test_xgboost_conversion_agrees(
    trained: Any, files: dict[str, Path], rows: np.ndarray, features: tuple[str, ...]
) -> None:
    import xgboost

    backend = OnnxBackend.load(_spec(files["onnx-xgboost"]))
    expected = trained.xgb.predict(xgboost.DMatrix(rows, feature_names=list(features)))
    np.testing.assert_allclose(backend.predict(rows), expected, rtol=0, atol=1e-5)


def test_only_the_probability_output_is_run(files: dict[str, Path]) -> None:
    assert "output='probabilities'" in repr(OnnxBackend.load(_spec(files["onnx-lightgbm"])))
    assert "output='i1'" in repr(OnnxBackend.load(_spec(files["onnx-rf-columns"])))


def test_per_feature_inputs_are_matched_by_name(
    files: dict[str, Path], rows: np.ndarray, features: tuple[str, ...]
) -> None:
    default = OnnxBackend.load(_spec(files["onnx-per-feature"]))
    assert default.feature_names == features
    reordered = OnnxBackend.load(_spec(files["onnx-per-feature"], features=features[::-1]))
    assert reordered.feature_names == features[::-1]
    np.testing.assert_array_equal(reordered.predict(rows[:, ::-1]), default.predict(rows))


def test_per_feature_inputs_refuse_other_names(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError) as e:
        OnnxBackend.load(_spec(files["onnx-per-feature"], features=("f0", "f1", "f2", "f3", "x")))
    message = str(e.value)
    assert "one input per feature" in message
    assert "missing ['f4']" in message
    assert "not inputs ['x']" in message


def test_without_feature_names_says_how_to_fix(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError) as e:
        OnnxBackend.load(_spec(files["onnx-lr"]))
    message = str(e.value)
    assert "onnx-lr.onnx" in message
    assert "has no feature names" in message
    assert "add `features:`" in message
    assert "metadata_props under key 'feature_names'" in message


def test_features_in_the_config_override_metadata(files: dict[str, Path]) -> None:
    names = ("a", "b", "c", "d", "e")
    assert OnnxBackend.load(_spec(files["onnx-lightgbm"], features=names)).feature_names == names


def test_features_of_wrong_length_are_checked_against_the_input_width(
    files: dict[str, Path],
) -> None:
    with pytest.raises(
        BackendError, match=r"takes 5 feature\(s\) but the features given in the config list 3"
    ):
        OnnxBackend.load(_spec(files["onnx-lr"], features=("f0", "f1", "f2")))


def test_metadata_names_of_wrong_length(files: dict[str, Path], tmp_path: Path) -> None:
    model = onnx.load(files["onnx-lr"])
    helper.set_model_props(model, {"feature_names": json.dumps(["f0", "f1"])})
    path = tmp_path / "short.onnx"
    onnx.save(model, path)
    with pytest.raises(BackendError, match=r"feature names stored in the model list 2"):
        OnnxBackend.load(_spec(path))


def test_metadata_that_is_not_a_json_list(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError, match=r"must be a JSON list of strings, got 'f0,f1'"):
        OnnxBackend.load(_spec(files["onnx-bad-metadata"]))


def test_features_in_the_config_rescue_unreadable_metadata(
    files: dict[str, Path], features: tuple[str, ...]
) -> None:
    backend = OnnxBackend.load(_spec(files["onnx-bad-metadata"], features=features))
    assert backend.feature_names == features


def test_several_float_outputs_need_the_output_option(
    trained: Any, files: dict[str, Path], rows: np.ndarray
) -> None:
    with pytest.raises(BackendError) as e:
        OnnxBackend.load(_spec(files["onnx-two-scores"]))
    message = str(e.value)
    assert "cannot tell which output" in message
    assert "p tensor(float)" in message
    assert "z tensor(float)" in message
    assert "option `output`" in message

    backend = OnnxBackend.load(_spec(files["onnx-two-scores"], options=(("output", "p"),)))
    expected = trained.lr.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(backend.predict(rows), expected, rtol=0, atol=1e-5)


def test_output_option_must_name_an_output(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError, match=r"output='proba' names no output.*\['p', 'z'\]"):
        OnnxBackend.load(_spec(files["onnx-two-scores"], options=(("output", "proba"),)))


def test_zipmap_without_a_positive_class_key(
    files: dict[str, Path], rows: np.ndarray, features: tuple[str, ...]
) -> None:
    backend = OnnxBackend.load(_spec(files["onnx-lr-string-labels"], features=features))
    with pytest.raises(BackendError) as e:
        backend.predict(rows[:2])
    message = str(e.value)
    assert "class keys ['fraud', 'legit']" in message
    assert "under '1'" in message
    assert "zipmap disabled" in message


def test_garbage_file(garbage: Path) -> None:
    with pytest.raises(BackendError, match="could not be loaded") as e:
        OnnxBackend.load(_spec(garbage))
    assert str(garbage) in str(e.value)
    assert "expected an ONNX model file" in str(e.value)


def test_wrong_width_at_predict_names_the_shapes(files: dict[str, Path], rows: np.ndarray) -> None:
    backend = OnnxBackend.load(_spec(files["onnx-lightgbm"]))
    with pytest.raises(BackendError, match=r"shape \(3, 2\) \(expected \(n, 5\)\)"):
        backend.predict(rows[:3, :2])
