"""Model repositories for Triton and MLServer, generated from LightGBM model files.

Both servers speak the Open Inference Protocol (KServe V2) but name and shape tensors
their own way; what a V2 client of these repositories sees:

========  ============================  ==========================================
server    input                         output
========  ============================  ==========================================
Triton    ``features`` FP32 [-1, n]     ``probability`` FP32 [-1, 1]
MLServer  any one name, any numeric     ``predict`` FP64 [-1, 1]
          type, [-1, n] (declared as
          ``features`` FP32 [-1, n])
========  ============================  ==========================================

``n`` is the model's number of features, in the order of the model file's
``feature_names``; ``datatype="FP64"`` makes Triton's input and output FP64 instead. Every
model is version ``"1"`` on both servers. The output is the positive-class probability.

Triton runs each model in its Python backend (one CPU instance, LightGBM on one thread)
with dynamic batching on: concurrent requests queued while the model is busy are run in
one LightGBM call, up to ``max_batch_size`` rows, without waiting for more
(``max_queue_delay_microseconds: 0``). MLServer runs the ``mlserver_lightgbm`` runtime
without adaptive batching.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from muse.testing.venvs import ModelServerError

__all__ = [
    "MLSERVER_OUTPUT",
    "TRITON_INPUT",
    "TRITON_OUTPUT",
    "LightGBMModelFile",
    "mlserver_settings",
    "read_lightgbm_header",
    "triton_repository",
]

#: Input tensor name of every Triton model made by :func:`triton_repository`.
TRITON_INPUT = "features"
#: Output tensor name of every Triton model made by :func:`triton_repository`.
TRITON_OUTPUT = "probability"
#: Output tensor name of MLServer's LightGBM runtime (fixed by ``mlserver_lightgbm``).
MLSERVER_OUTPUT = "predict"
#: Version folder / version string of every generated model.
MODEL_VERSION = "1"
#: Datatypes the generated Triton models accept.
Datatype = Literal["FP32", "FP64"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TRITON_MODEL = Path(__file__).resolve().parent / "triton_model.py"


@dataclass(frozen=True, slots=True)
class LightGBMModelFile:
    """The header facts of a LightGBM text model that a server repository needs."""

    path: Path
    feature_names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def read_lightgbm_header(path: Path) -> LightGBMModelFile:
    """Feature names of a LightGBM text model (``Booster.save_model``), read from its header."""
    label = f"LightGBM model {str(path)!r}"
    try:
        with path.open("rb") as f:
            head = [f.readline().decode("utf-8", errors="replace").strip() for _ in range(64)]
    except OSError as exc:
        raise ModelServerError(f"{label} could not be read: {exc}") from exc
    fields = dict(line.split("=", 1) for line in head if "=" in line)
    if head[0] != "tree" or "max_feature_idx" not in fields:
        raise ModelServerError(
            f"{label} is not a LightGBM text model: expected a 'tree' header with "
            f"max_feature_idx, got first line {head[0]!r}"
        )
    n = int(fields["max_feature_idx"]) + 1
    names = tuple(fields.get("feature_names", "").split())
    if len(names) != n:
        names = tuple(f"Column_{i}" for i in range(n))
    return LightGBMModelFile(path=path, feature_names=names)


def triton_repository(
    models: Mapping[str, Path],
    dest: Path,
    *,
    datatype: Datatype = "FP32",
    max_batch_size: int = 8192,
) -> Path:
    """A Triton model repository in ``dest`` serving each LightGBM text model of ``models``.

    ``models`` maps a model name to its ``.txt`` file; each becomes ``dest/<name>/`` with a
    ``config.pbtxt`` (Python backend, input ``features`` [-1, n], output ``probability``
    [-1, 1], both ``datatype``, dynamic batching up to ``max_batch_size`` rows) and
    ``1/model.py`` + ``1/model.txt``. The feature names are in the config's parameters
    (``GET /v2/models/<name>/config``). Existing model folders of those names are replaced.
    Returns ``dest``.
    """
    if datatype not in ("FP32", "FP64"):
        raise ModelServerError(f"datatype must be 'FP32' or 'FP64', got {datatype!r}")
    if max_batch_size < 1:
        raise ModelServerError(f"max_batch_size must be at least 1, got {max_batch_size!r}")
    files = _check_models(models)
    dest.mkdir(parents=True, exist_ok=True)
    for name, model in files.items():
        folder = _fresh(dest / name)
        version = folder / MODEL_VERSION
        version.mkdir()
        shutil.copyfile(model.path, version / "model.txt")
        shutil.copyfile(_TRITON_MODEL, version / "model.py")
        (folder / "config.pbtxt").write_text(
            _triton_config(name, model, datatype, max_batch_size), encoding="utf-8"
        )
    return dest


def mlserver_settings(models: Mapping[str, Path], dest: Path, *, parallel_workers: int = 1) -> Path:
    """An MLServer folder in ``dest`` serving each LightGBM text model of ``models``.

    Writes ``dest/settings.json`` (listen on 127.0.0.1 only, no metrics server, no debug;
    ports come from ``MLSERVER_HTTP_PORT``/``MLSERVER_GRPC_PORT``, which :func:`start_mlserver`
    sets) and, per model, ``dest/<name>/model-settings.json`` (implementation
    ``mlserver_lightgbm.LightGBMModel``, ``parameters.uri`` ``./model.txt``, version ``"1"``,
    declared input ``features`` FP32 [-1, n] and output ``predict`` FP64 [-1, 1]) next to a
    copy of the model. ``parallel_workers`` is MLServer's: 0 runs inference in the server
    process, N > 0 in N worker processes (MLServer's default is 1). Returns ``dest``.
    """
    if parallel_workers < 0:
        raise ModelServerError(f"parallel_workers must be >= 0, got {parallel_workers!r}")
    files = _check_models(models)
    dest.mkdir(parents=True, exist_ok=True)
    server = {
        "host": "127.0.0.1",
        "debug": False,
        "parallel_workers": parallel_workers,
        "metrics_endpoint": None,
        "load_models_at_startup": True,
    }
    _write_json(dest / "settings.json", server)
    for name, model in files.items():
        folder = _fresh(dest / name)
        shutil.copyfile(model.path, folder / "model.txt")
        settings = {
            "name": name,
            "implementation": "mlserver_lightgbm.LightGBMModel",
            "parameters": {"uri": "./model.txt", "version": MODEL_VERSION},
            "inputs": [{"name": TRITON_INPUT, "datatype": "FP32", "shape": [-1, model.n_features]}],
            "outputs": [{"name": MLSERVER_OUTPUT, "datatype": "FP64", "shape": [-1, 1]}],
        }
        _write_json(folder / "model-settings.json", settings)
    return dest


def _check_models(models: Mapping[str, Path]) -> dict[str, LightGBMModelFile]:
    if not models:
        raise ModelServerError("models is empty: give at least one {name: LightGBM .txt file}")
    out: dict[str, LightGBMModelFile] = {}
    for name, path in models.items():
        if not _NAME.fullmatch(name):
            raise ModelServerError(
                f"model name {name!r} is not a valid folder name: use letters, digits, '_', '.', '-'"
            )
        out[name] = read_lightgbm_header(Path(path))
    return out


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _triton_config(
    name: str, model: LightGBMModelFile, datatype: Datatype, max_batch_size: int
) -> str:
    names = ",".join(model.feature_names)
    return f"""\
# Generated by muse.testing.triton_repository from {model.path.name}.
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [
  {{ name: "{TRITON_INPUT}", data_type: TYPE_{datatype}, dims: [ {model.n_features} ] }}
]
output [
  {{ name: "{TRITON_OUTPUT}", data_type: TYPE_{datatype}, dims: [ 1 ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
parameters {{ key: "feature_names", value: {{ string_value: "{names}" }} }}
"""
