"""ONNX classifiers on ONNX Runtime: any exporter, one positive-class probability out.

Exporters disagree on what a binary classifier returns. skl2onnx and onnxmltools emit a
label output next to the probabilities, as a ``(N, 2)`` tensor or, by default, a ZipMap
(a list of ``{class: probability}`` dicts); hand-built graphs often return ``(N, 1)`` or
``(N,)``. The layout is read from the session's output metadata once, at load time, so
``predict`` runs only the probability output and slices it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime

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

__all__ = ["OnnxBackend"]

_TENSOR_DTYPES: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}
#: Names exporters give the probability output, tried when a model has several float outputs.
_PROBABILITY_NAMES = ("probabilities", "output_probability", "probability", "probs")
#: skl2onnx's ``zipmap="columns"`` emits one ``(N,)`` output per class, named after the label.
_POSITIVE_COLUMN_NAMES = ("i1", "1")
_METADATA_KEY = "feature_names"

Extract = Callable[[Any], ScoreArray]
Feed = Callable[[FeatureMatrix], dict[str, npt.NDArray[Any]]]


class OnnxBackend(InProcessBackend):
    """A binary classifier in an ONNX file, run by ONNX Runtime on the CPU provider.

    Inputs: one 2-D float/double tensor whose column names come from ``features:`` in the
    config or the model's ``feature_names`` metadata (a JSON list), or one ``(N, 1)`` input
    per feature, named after the feature. Output: the positive-class probability whatever
    the layout; set the spec option ``output`` to pick an output by name when the model has
    several float outputs with unrecognised names.

    Export with ZipMap disabled (skl2onnx ``options={id(model): {"zipmap": False}}``,
    onnxmltools ``zipmap=False``): a ZipMap output is a Python list of dicts, read here
    row by row, which is correct but far slower than slicing a tensor.
    """

    kind = "onnx"
    __slots__ = ("_extract", "_feed", "_output")

    def __init__(
        self,
        session: Any,
        *,
        feature_names: tuple[str, ...],
        feed: Feed,
        output: str,
        extract: Extract,
        digest: str,
        path: Path,
        threads: int = 1,
    ) -> None:
        super().__init__(
            session, feature_names=feature_names, digest=digest, path=path, threads=threads
        )
        self._feed = feed
        self._output = [output]
        self._extract = extract

    @classmethod
    def load(cls, spec: ModelSpec) -> OnnxBackend:
        """Load and check ``spec.path``; every failure is a :class:`BackendError` naming the file."""
        label = f"ONNX model {str(spec.path)!r}"
        reject_unknown_options(spec, ("output",), label=label)
        data, digest = read_model(spec, label=label)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = spec.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Load-time warnings are about graph clean-up (unused initialisers); real failures
        # raise, so keep serving logs quiet.
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise BackendError(
                f"{label} could not be loaded: {describe_exception(exc)}; expected an ONNX "
                "model file (e.g. written by skl2onnx or onnxmltools)",
                model=str(spec.path),
            ) from exc
        names, feed = _inputs(session, spec, label)
        output, extract = _output(session, dict(spec.options).get("output"), spec, label)
        return cls(
            session,
            feature_names=names,
            feed=feed,
            output=output,
            extract=extract,
            digest=digest,
            path=spec.path,
            threads=spec.threads,
        )

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        """Positive-class probabilities for the rows of ``features`` (see :class:`ModelBackend`)."""
        try:
            (out,) = self._model.run(self._output, self._feed(features))
        except Exception as exc:
            raise self._scoring_error(features, exc) from exc
        return self._extract(out)

    def __repr__(self) -> str:
        return (
            f"OnnxBackend(path={str(self._path)!r}, features={len(self._feature_names)}, "
            f"output={self._output[0]!r}, threads={self._threads}, "
            f"digest={self._digest[:19]!r})"
        )


def _inputs(session: Any, spec: ModelSpec, label: str) -> tuple[tuple[str, ...], Feed]:
    inputs = session.get_inputs()
    for i in inputs:
        if i.type not in _TENSOR_DTYPES:
            raise BackendError(
                f"{label}: input {i.name!r} has type {i.type!r}, expected tensor(float) or "
                "tensor(double); export the model with FloatTensorType/DoubleTensorType inputs",
                model=str(spec.path),
            )
    if len(inputs) == 1:
        return _matrix_input(session, inputs[0], spec, label)
    if len(inputs) > 1:
        return _column_inputs(inputs, spec, label)
    raise BackendError(f"{label} has no inputs", model=str(spec.path))


def _matrix_input(
    session: Any, node: Any, spec: ModelSpec, label: str
) -> tuple[tuple[str, ...], Feed]:
    shape = node.shape
    if len(shape) != 2:
        raise BackendError(
            f"{label}: input {node.name!r} has shape {shape!r}, expected a 2-D "
            "(events, features) tensor",
            model=str(spec.path),
        )
    width = shape[1] if isinstance(shape[1], int) else None
    # Names in the config win, and also rescue a model whose metadata is unreadable.
    embedded = _metadata_names(session, spec, label) if spec.features is None else None
    names = resolve_feature_names(
        spec,
        embedded,
        width,
        label=label,
        missing_hint=(
            "add `features:` to the model in the config, or store the names in the model's "
            f"metadata_props under key {_METADATA_KEY!r} as a JSON list of strings"
        ),
    )
    name, dtype = node.name, _TENSOR_DTYPES[node.type]

    def feed(features: FeatureMatrix) -> dict[str, npt.NDArray[Any]]:
        return {name: np.ascontiguousarray(features, dtype=dtype)}

    return names, feed


def _column_inputs(
    inputs: Sequence[Any], spec: ModelSpec, label: str
) -> tuple[tuple[str, ...], Feed]:
    for i in inputs:
        width = i.shape[1] if len(i.shape) == 2 else None
        if len(i.shape) != 2 or (isinstance(width, int) and width != 1):
            raise BackendError(
                f"{label} has {len(inputs)} inputs, so each must be one feature of shape "
                f"(N, 1); input {i.name!r} has shape {i.shape!r}",
                model=str(spec.path),
            )
    by_name = {i.name: _TENSOR_DTYPES[i.type] for i in inputs}
    names = tuple(by_name)
    if spec.features is not None:
        # Inputs are matched by name, never by position: a reordered list must not swap
        # features between inputs.
        if sorted(spec.features) != sorted(names):
            missing = sorted(set(names) - set(spec.features))
            unknown = sorted(set(spec.features) - set(names))
            raise BackendError(
                f"{label} takes one input per feature, named {list(names)!r}; the features "
                f"given in the config must be those names (missing {missing!r}, "
                f"not inputs {unknown!r})",
                model=str(spec.path),
            )
        names = tuple(spec.features)
    columns = [(name, j, by_name[name]) for j, name in enumerate(names)]

    def feed(features: FeatureMatrix) -> dict[str, npt.NDArray[Any]]:
        return {
            name: np.ascontiguousarray(features[:, j : j + 1], dtype=dtype)
            for name, j, dtype in columns
        }

    return names, feed


def _metadata_names(session: Any, spec: ModelSpec, label: str) -> list[str] | None:
    raw = session.get_modelmeta().custom_metadata_map.get(_METADATA_KEY)
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BackendError(
            f"{label}: metadata {_METADATA_KEY!r} must be a JSON list of strings, got {raw!r}",
            model=str(spec.path),
        )
    return names


def _output(
    session: Any, requested: str | None, spec: ModelSpec, label: str
) -> tuple[str, Extract]:
    outputs = {o.name: o for o in session.get_outputs()}
    if requested is not None:
        if requested not in outputs:
            raise BackendError(
                f"{label}: option output={requested!r} names no output of the model; "
                f"outputs are {list(outputs)!r}",
                model=str(spec.path),
            )
        chosen = outputs[requested]
    else:
        chosen = _probability_output(list(outputs.values()), spec, label)
    return chosen.name, _extractor(chosen, spec, label)


def _probability_output(outputs: Sequence[Any], spec: ModelSpec, label: str) -> Any:
    # Labels come out as int64 or string tensors; only float tensors and ZipMaps can hold
    # probabilities.
    candidates = [o for o in outputs if o.type in _TENSOR_DTYPES or o.type.startswith("seq(map(")]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        layout = [f"{o.name} {o.type}" for o in outputs]
        raise BackendError(
            f"{label} has no float tensor or ZipMap output to read probabilities from; "
            f"outputs are {layout!r}",
            model=str(spec.path),
        )
    by_name = {o.name: o for o in candidates}
    for name in (*_PROBABILITY_NAMES, *_POSITIVE_COLUMN_NAMES):
        if name in by_name:
            return by_name[name]
    layout = [f"{o.name} {o.type}" for o in outputs]
    raise BackendError(
        f"{label}: cannot tell which output is the positive-class probability among "
        f"{layout!r}; set the model option `output` to the name of the probability output",
        model=str(spec.path),
    )


def _extractor(node: Any, spec: ModelSpec, label: str) -> Extract:
    where = f"{label}, output {node.name!r}"
    if node.type.startswith("seq(map(int64,"):
        return _zipmap(1, where, str(spec.path))
    if node.type.startswith("seq(map(string,"):
        return _zipmap("1", where, str(spec.path))
    if node.type not in _TENSOR_DTYPES:
        raise BackendError(
            f"{where} has type {node.type!r}, expected a float tensor or a ZipMap of probabilities",
            model=str(spec.path),
        )
    shape = node.shape
    width = shape[1] if len(shape) == 2 else None
    if len(shape) == 1 or width == 1:
        return _flat
    if width == 2:
        return _second_column
    if len(shape) == 2 and not isinstance(width, int):
        return _by_runtime_shape(where, str(spec.path))
    raise BackendError(
        f"{where} has shape {shape!r}, expected (N, 2), (N, 1) or (N,) probabilities of a "
        "binary classifier",
        model=str(spec.path),
    )


def _flat(out: Any) -> ScoreArray:
    return np.asarray(out, dtype=np.float64).reshape(-1)


def _second_column(out: Any) -> ScoreArray:
    return np.array(out[:, 1], dtype=np.float64)


def _by_runtime_shape(where: str, model: str) -> Extract:
    def extract(out: Any) -> ScoreArray:
        if out.ndim == 2 and out.shape[1] == 2:
            return _second_column(out)
        if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
            return _flat(out)
        raise BackendError(
            f"{where} returned shape {out.shape!r}, expected (N, 2), (N, 1) or (N,) "
            "probabilities of a binary classifier",
            model=model,
        )

    return extract


def _zipmap(key: int | str, where: str, model: str) -> Extract:
    def extract(out: Any) -> ScoreArray:
        try:
            return np.fromiter((row[key] for row in out), dtype=np.float64, count=len(out))
        except KeyError:
            keys = sorted(out[0]) if len(out) else []
            raise BackendError(
                f"{where} has class keys {keys!r}, expected the positive class under {key!r}; "
                "export the classifier trained on 0/1 labels, or with zipmap disabled so the "
                "second probability column is taken",
                model=model,
            ) from None

    return extract
