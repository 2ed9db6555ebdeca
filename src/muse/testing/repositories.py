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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from muse.export.triton import (
    MODEL_VERSION,
    TRITON_INPUT,
    TRITON_OUTPUT,
    Datatype,
    ExportError,
    LightGBMModelFile,
    TritonModel,
    write_triton_repository,
)
from muse.export.triton import read_lightgbm_header as _read_header
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

#: Output tensor name of MLServer's LightGBM runtime (fixed by ``mlserver_lightgbm``).
MLSERVER_OUTPUT = "predict"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@contextmanager
def _as_server_error() -> Iterator[None]:
    """The production exporter's errors, as this module's callers expect them."""
    try:
        yield
    except ExportError as e:
        raise ModelServerError(str(e)) from e


def read_lightgbm_header(path: Path) -> LightGBMModelFile:
    """Feature names of a LightGBM text model (``Booster.save_model``), read from its header."""
    with _as_server_error():
        return _read_header(path)


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
    ``1/model.py`` + ``1/model.txt``: what ``muse export triton-repository`` writes
    (:mod:`muse.export.triton`), with its default tensor names. Existing model folders of
    those names are replaced. Returns ``dest``.
    """
    _check_models(models)
    with _as_server_error():
        specs = [
            TritonModel(name=n, file=Path(p), datatype=datatype, max_batch_size=max_batch_size)
            for n, p in models.items()
        ]
        for name in models:
            if (dest / name).exists():
                shutil.rmtree(dest / name)
        write_triton_repository(specs, dest)
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
