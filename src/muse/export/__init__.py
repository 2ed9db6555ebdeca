"""What muse writes for the systems around a deployment: today, the Triton model
repository of a deployment's remote models (``muse export triton-repository``)."""

from muse.export.triton import (
    ExportError,
    TritonModel,
    read_lightgbm_header,
    triton_models,
    write_triton_repository,
)

__all__ = [
    "ExportError",
    "TritonModel",
    "read_lightgbm_header",
    "triton_models",
    "write_triton_repository",
]
