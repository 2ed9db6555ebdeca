"""Tiny real models, trained once per session, in every format the backends load.

Features are rounded to float32 before training: ONNX tree ensembles compare in float32,
so float64 inputs lying between a split threshold and its float32 rounding would flip a
split and make the LightGBM-vs-ONNX comparison fail for reasons unrelated to muse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import onnx
import pytest
import xgboost
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

FEATURES = ("f0", "f1", "f2", "f3", "f4")
N_ROWS = 2000
SEED = 7


@dataclass(frozen=True)
class Data:
    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Trained:
    """Reference models (to compare scores against) and every model file, by case name."""

    lgb: Any
    xgb: Any
    lr: LogisticRegression
    files: dict[str, Path]


@pytest.fixture(scope="session")
def data() -> Data:
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(N_ROWS, len(FEATURES))).astype(np.float32).astype(np.float64)
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3] + rng.normal(scale=0.5, size=N_ROWS)
    return Data(X=X, y=(logit > 0).astype(np.int64))


@pytest.fixture(scope="session")
def trained(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    out = tmp_path_factory.mktemp("models")
    files: dict[str, Path] = {}
    lgb = _lightgbm(data, out, files)
    xgb = _xgboost(data, out, files)
    lr = _sklearn(data, out, files)
    _onnx_from_boosters(lgb, xgb, out, files)
    _hand_built(lr, out, files)
    return Trained(lgb=lgb, xgb=xgb, lr=lr, files=files)


@pytest.fixture(scope="session")
def files(trained: Trained) -> dict[str, Path]:
    return trained.files


@pytest.fixture(scope="session")
def features() -> tuple[str, ...]:
    return FEATURES


@pytest.fixture(scope="session")
def rows(data: Data) -> np.ndarray:
    """Feature matrix in ``FEATURES`` order, float64 as the backends receive it."""
    return data.X


@pytest.fixture(scope="session")
def labels(data: Data) -> np.ndarray:
    return data.y


@pytest.fixture
def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(b"this is not a model\n")
    return path


def _lightgbm(data: Data, out: Path, files: dict[str, Path]) -> Any:
    common = {"deterministic": True, "num_threads": 1, "seed": SEED, "verbose": -1}
    params = {**common, "objective": "binary", "num_leaves": 8}
    dataset = lightgbm.Dataset(data.X, data.y, feature_name=list(FEATURES))
    booster = lightgbm.train(params, dataset, num_boost_round=20)
    files["lightgbm"] = out / "lgb.txt"
    booster.save_model(files["lightgbm"])

    regression = lightgbm.train(
        {**common, "objective": "regression"},
        lightgbm.Dataset(data.X, data.y.astype(np.float64), feature_name=list(FEATURES)),
        num_boost_round=2,
    )
    files["lightgbm-regression"] = out / "lgb_regression.txt"
    regression.save_model(files["lightgbm-regression"])

    labels = np.random.default_rng(SEED).integers(0, 3, size=len(data.y))
    multiclass = lightgbm.train(
        {**common, "objective": "multiclass", "num_class": 3},
        lightgbm.Dataset(data.X, labels, feature_name=list(FEATURES)),
        num_boost_round=2,
    )
    files["lightgbm-multiclass"] = out / "lgb_multiclass.txt"
    multiclass.save_model(files["lightgbm-multiclass"])
    return booster


def _xgboost(data: Data, out: Path, files: dict[str, Path]) -> Any:
    params = {"objective": "binary:logistic", "nthread": 1, "seed": SEED, "max_depth": 3}
    dmatrix = xgboost.DMatrix(data.X, data.y, feature_names=list(FEATURES))
    booster = xgboost.train(params, dmatrix, num_boost_round=20)
    for ext in ("json", "ubj"):
        files[f"xgboost-{ext}"] = out / f"xgb.{ext}"
        booster.save_model(files[f"xgboost-{ext}"])

    unnamed = xgboost.train(params, xgboost.DMatrix(data.X, data.y), num_boost_round=5)
    files["xgboost-unnamed"] = out / "xgb_unnamed.json"
    unnamed.save_model(files["xgboost-unnamed"])

    regression = xgboost.train(
        {**params, "objective": "reg:squarederror"}, dmatrix, num_boost_round=2
    )
    files["xgboost-regression"] = out / "xgb_regression.json"
    regression.save_model(files["xgboost-regression"])
    return booster


def _sklearn(data: Data, out: Path, files: dict[str, Path]) -> LogisticRegression:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    lr = LogisticRegression().fit(data.X, data.y)
    float_input = [("X", FloatTensorType([None, len(FEATURES)]))]
    for name, zipmap in (("onnx-lr-zipmap", True), ("onnx-lr", False)):
        model = convert_sklearn(lr, initial_types=float_input, options={id(lr): {"zipmap": zipmap}})
        files[name] = _save(model, out / f"{name}.onnx")
    double = convert_sklearn(
        lr,
        initial_types=[("X", DoubleTensorType([None, len(FEATURES)]))],
        options={id(lr): {"zipmap": False}},
    )
    files["onnx-lr-double"] = _save(double, out / "onnx-lr-double.onnx")

    rf = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=SEED)
    rf.fit(data.X, data.y)
    columns = convert_sklearn(
        rf, initial_types=float_input, options={id(rf): {"zipmap": "columns"}}
    )
    files["onnx-rf-columns"] = _save(columns, out / "onnx-rf-columns.onnx", names=FEATURES)

    letters = np.where(data.y == 1, "fraud", "legit")
    lr_letters = LogisticRegression().fit(data.X, letters)
    files["onnx-lr-string-labels"] = _save(
        convert_sklearn(lr_letters, initial_types=float_input), out / "onnx-lr-letters.onnx"
    )
    return lr


def _onnx_from_boosters(lgb: Any, xgb: Any, out: Path, files: dict[str, Path]) -> None:
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial = [("input", FloatTensorType([None, len(FEATURES)]))]
    for name, zipmap in (("onnx-lightgbm-zipmap", True), ("onnx-lightgbm", False)):
        model = convert_lightgbm(lgb, initial_types=initial, zipmap=zipmap)
        files[name] = _save(model, out / f"{name}.onnx", names=FEATURES)
    files["onnx-xgboost"] = _save(
        convert_xgboost(xgb, initial_types=initial), out / "onnx-xgboost.onnx", names=FEATURES
    )


def _hand_built(lr: LogisticRegression, out: Path, files: dict[str, Path]) -> None:
    """Graphs no converter emits but a user may write: other output layouts, one input per feature."""
    coef = lr.coef_.T.astype(np.float32)
    intercept = lr.intercept_.astype(np.float32)
    layouts: dict[str, list[Any]] = {
        "onnx-n1": ["N", 1],
        "onnx-flat": ["N"],
        "onnx-dynamic-width": ["N", "C"],
    }
    for name, shape in layouts.items():
        model = _logistic(coef, intercept, output_shape=shape)
        files[name] = _save(model, out / f"{name}.onnx", names=FEATURES)
    files["onnx-per-feature"] = _save(
        _logistic(coef, intercept, output_shape=["N", 1], per_feature=True),
        out / "onnx-per-feature.onnx",
    )
    files["onnx-two-scores"] = _save(
        _logistic(coef, intercept, output_shape=["N", 1], extra_output=True),
        out / "onnx-two-scores.onnx",
        names=FEATURES,
    )
    bad = _logistic(coef, intercept, output_shape=["N", 1])
    files["onnx-bad-metadata"] = _save(bad, out / "onnx-bad-metadata.onnx", raw_names="f0,f1")


def _logistic(
    coef: np.ndarray,
    intercept: np.ndarray,
    *,
    output_shape: list[Any],
    per_feature: bool = False,
    extra_output: bool = False,
) -> onnx.ModelProto:
    width = len(FEATURES)
    nodes = []
    if per_feature:
        inputs = [helper.make_tensor_value_info(f, TensorProto.FLOAT, ["N", 1]) for f in FEATURES]
        nodes.append(helper.make_node("Concat", list(FEATURES), ["x"], axis=1))
    else:
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])]
    nodes += [
        helper.make_node("MatMul", ["x", "coef"], ["z0"]),
        helper.make_node("Add", ["z0", "intercept"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p1"]),
    ]
    initializers = [
        numpy_helper.from_array(coef, "coef"),
        numpy_helper.from_array(intercept, "intercept"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
    ]
    if output_shape == ["N"]:
        nodes.append(helper.make_node("Reshape", ["p1", "flat"], ["p"]))
    elif output_shape == ["N", "C"]:
        nodes += [
            helper.make_node("Sub", ["one", "p1"], ["p0"]),
            helper.make_node("Concat", ["p0", "p1"], ["p"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["p1"], ["p"]))
    outputs = [helper.make_tensor_value_info("p", TensorProto.FLOAT, output_shape)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(nodes, "logistic", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _save(
    model: onnx.ModelProto,
    path: Path,
    *,
    names: tuple[str, ...] | None = None,
    raw_names: str | None = None,
) -> Path:
    if names is not None:
        raw_names = json.dumps(list(names))
    if raw_names is not None:
        helper.set_model_props(model, {"feature_names": raw_names})
    path.write_bytes(model.SerializeToString())
    return path
