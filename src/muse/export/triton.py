"""A Triton model repository for a deployment's remote (``kserve-v2``) models.

A deployment may run some experts on Triton instead of in the replica (paper §2.2: models
on servers of their own). Each such model in the config names its server-side identity
(``model``, ``version``), its tensors (``input_name``, ``output_name``, ``datatype``), its
features in order and, in ``uri``, the LightGBM text file it is a copy of. This module
turns those into what Triton loads::

    <dest>/<model>/config.pbtxt          Python backend, dynamic batching, CPU instance
    <dest>/<model>/<version>/model.py    muse.export.triton_model: LightGBM on one thread
    <dest>/<model>/<version>/model.txt   the config's `uri`

so the same bytes whose hash is in the model's identity are what Triton serves. Input
``[-1, n]`` and output ``[-1, 1]`` tensors carry the names and datatype the config's
client uses; the feature names go into the config's parameters, and a model file whose own
feature names differ from the config's ``features`` is refused (the columns would be fed
in the wrong order, silently). ``dest`` is a folder or an fsspec URL (``s3://…``: where
Triton's ``--model-repository`` points); each model is written to a temporary folder first
and copied as a whole.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import fsspec  # type: ignore[import-untyped, unused-ignore]

from muse.errors import MuseError

__all__ = [
    "MODEL_VERSION",
    "TRITON_INPUT",
    "TRITON_OUTPUT",
    "Datatype",
    "ExportError",
    "LightGBMModelFile",
    "TritonModel",
    "read_lightgbm_header",
    "triton_models",
    "write_triton_repository",
]

#: Default input tensor name of a generated model.
TRITON_INPUT = "features"
#: Default output tensor name of a generated model.
TRITON_OUTPUT = "probability"
#: Default version folder / version string of a generated model.
MODEL_VERSION = "1"
#: Datatypes the generated models accept (input and output alike).
Datatype = Literal["FP32", "FP64"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TENSOR = re.compile(r"^[A-Za-z0-9_.:-]+$")
_MODEL_PY = Path(__file__).resolve().parent / "triton_model.py"


class ExportError(MuseError, ValueError):
    """A model cannot be exported: the message names the model and what is wrong."""


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
        raise ExportError(f"{label} could not be read: {exc}") from exc
    fields = dict(line.split("=", 1) for line in head if "=" in line)
    if head[0] != "tree" or "max_feature_idx" not in fields:
        raise ExportError(
            f"{label} is not a LightGBM text model: expected a 'tree' header with "
            f"max_feature_idx, got first line {head[0]!r}"
        )
    n = int(fields["max_feature_idx"]) + 1
    names = tuple(fields.get("feature_names", "").split())
    if len(names) != n:
        names = tuple(f"Column_{i}" for i in range(n))
    return LightGBMModelFile(path=path, feature_names=names)


@dataclass(frozen=True, slots=True)
class TritonModel:
    """One model of a Triton repository: its server-side name and version, the LightGBM
    file it serves and the tensors its clients send and read."""

    name: str
    file: Path
    version: str = MODEL_VERSION
    input_name: str = TRITON_INPUT
    output_name: str = TRITON_OUTPUT
    datatype: Datatype = "FP32"
    max_batch_size: int = 8192
    #: The features the client sends, in order; ``None``: the model file's own.
    features: tuple[str, ...] | None = None


def write_triton_repository(models: Sequence[TritonModel], dest: str | Path) -> list[str]:
    """Write ``models`` into the repository ``dest`` (folder or fsspec URL); the version
    folders written.

    Every model is checked before anything is written. A model's other versions stay (the
    config serves them all), so replicas still on the previous version keep being answered
    while a promotion rolls out; the same version is replaced.
    """
    if not models:
        raise ExportError("no model to export")
    checked = [(m, _check(m)) for m in models]
    keys = [(m.name, m.version) for m in models]
    if len(set(keys)) != len(keys):
        raise ExportError(f"two models share a name and version: {sorted(keys)}")
    fs, root = fsspec.core.url_to_fs(str(dest))
    root = root.rstrip("/")
    written = []
    with tempfile.TemporaryDirectory(prefix="muse-triton-") as tmp:
        for model, header in checked:
            local = Path(tmp) / model.name
            _write_model(model, header, local)
            target = f"{root}/{model.name}/{model.version}"
            if fs.exists(target):
                fs.rm(target, recursive=True)
            # config.pbtxt last: a server polling the repository sees a complete version.
            files = sorted(local.rglob("*"), key=lambda f: f.name == "config.pbtxt")
            for file in files:
                if file.is_file():
                    remote = f"{root}/{model.name}/{file.relative_to(local).as_posix()}"
                    fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
                    fs.put_file(str(file), remote)
            written.append(target)
    return written


def triton_models(config: str | Path, names: Sequence[str] | None = None) -> list[TritonModel]:
    """The ``kserve-v2`` models of a deployment config, as :class:`TritonModel` (all of
    them, or those named). Each needs ``uri``: the LightGBM file Triton serves."""
    from muse.config import load_config  # raises ConfigError listing every problem

    loaded = load_config(Path(config), require_transforms=False)
    base = Path(config).resolve().parent
    remote = {name: m for name, m in loaded.spec.models.items() if m.backend == "kserve-v2"}
    wanted = list(remote) if names is None else list(names)
    unknown = [n for n in wanted if n not in remote]
    if unknown:
        raise ExportError(
            f"{config}: no kserve-v2 model named {unknown}; kserve-v2 models: {sorted(remote)}"
        )
    if not wanted:
        raise ExportError(f"{config} has no kserve-v2 model: nothing runs on Triton")
    out = []
    for name in wanted:
        m = remote[name]
        if m.uri is None:
            raise ExportError(
                f"models.{name}: no `uri`: give the LightGBM text file the server serves "
                "(its hash then joins the model's identity)"
            )
        assert m.model is not None
        assert m.version is not None
        out.append(
            TritonModel(
                name=m.model,
                file=(base / m.uri).resolve(),
                version=m.version,
                input_name=m.input_name,
                output_name=m.output_name,
                datatype=m.datatype,
                max_batch_size=m.max_batch_size,
                features=tuple(m.features) if m.features is not None else None,
            )
        )
    return out


def _check(model: TritonModel) -> LightGBMModelFile:
    label = f"model {model.name!r}"
    if not _NAME.fullmatch(model.name):
        raise ExportError(f"{label}: not a valid folder name: use letters, digits, '_', '.', '-'")
    if not model.version.isdigit():
        raise ExportError(f"{label}: Triton versions are whole numbers, got {model.version!r}")
    if model.datatype not in ("FP32", "FP64"):
        raise ExportError(f"datatype must be 'FP32' or 'FP64', got {model.datatype!r}")
    if model.max_batch_size < 1:
        raise ExportError(f"max_batch_size must be at least 1, got {model.max_batch_size!r}")
    for what, tensor in (("input", model.input_name), ("output", model.output_name)):
        if not _TENSOR.fullmatch(tensor):
            raise ExportError(f"{label}: {what} tensor name {tensor!r} is not a plain name")
    header = read_lightgbm_header(model.file)
    if model.features is not None and model.features != header.feature_names:
        generic = all(n.startswith("Column_") for n in header.feature_names)
        if len(model.features) != header.n_features or not generic:
            raise ExportError(
                f"{label}: the config's features {list(model.features)} are not the model "
                f"file's {list(header.feature_names)} ({model.file}); Triton would be fed "
                "columns in the wrong order"
            )
    return header


def _write_model(model: TritonModel, header: LightGBMModelFile, folder: Path) -> None:
    version = folder / model.version
    version.mkdir(parents=True)
    shutil.copyfile(header.path, version / "model.txt")
    shutil.copyfile(_MODEL_PY, version / "model.py")
    features = model.features or header.feature_names
    (folder / "config.pbtxt").write_text(_config(model, header, features), encoding="utf-8")


def _config(model: TritonModel, header: LightGBMModelFile, features: Sequence[str]) -> str:
    dtype = f"TYPE_{model.datatype}"
    return f"""\
# Generated by muse (muse.export.triton) from {header.path.name}.
name: "{model.name}"
backend: "python"
max_batch_size: {model.max_batch_size}
input [
  {{ name: "{model.input_name}", data_type: {dtype}, dims: [ {header.n_features} ] }}
]
output [
  {{ name: "{model.output_name}", data_type: {dtype}, dims: [ 1 ] }}
]
version_policy: {{ all: {{ }} }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
parameters {{ key: "feature_names", value: {{ string_value: "{",".join(features)}" }} }}
"""
