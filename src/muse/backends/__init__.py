"""In-process model backends (LightGBM, ONNX Runtime, XGBoost) and the pool that shares them.

The backend classes are imported lazily: ``import muse.backends`` does not import any
model runtime, so a process only pays for the runtimes its models use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from muse.backends.base import BACKEND_KINDS, ModelBackend, ModelSpec, file_digest
from muse.backends.pool import ModelPool, load_backend

if TYPE_CHECKING:
    from muse.backends.lightgbm import LightGBMBackend
    from muse.backends.onnx import OnnxBackend
    from muse.backends.xgboost import XGBoostBackend

__all__ = [
    "BACKEND_KINDS",
    "LightGBMBackend",
    "ModelBackend",
    "ModelPool",
    "ModelSpec",
    "OnnxBackend",
    "XGBoostBackend",
    "file_digest",
    "load_backend",
]

_LAZY = {
    "LightGBMBackend": "muse.backends.lightgbm",
    "OnnxBackend": "muse.backends.onnx",
    "XGBoostBackend": "muse.backends.xgboost",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
