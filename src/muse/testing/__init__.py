"""Helpers for tests and benchmarks: real KServe V2 model servers (Triton, MLServer).

Nothing here runs in production. :func:`ensure_venv` builds (once, cached) the venv a
server runs from; :func:`triton_repository` and :func:`mlserver_settings` turn LightGBM
model files into what each server loads; :func:`start_triton` and :func:`start_mlserver`
run a server on free ports of 127.0.0.1 and return a :class:`RunningServer` once every
model is ready. See :mod:`muse.testing.repositories` for the tensors each server exposes.
"""

from muse.testing.modelservers import (
    HOST,
    RunningServer,
    free_port,
    free_ports,
    start_mlserver,
    start_triton,
)
from muse.testing.repositories import (
    MLSERVER_OUTPUT,
    TRITON_INPUT,
    TRITON_OUTPUT,
    mlserver_settings,
    read_lightgbm_header,
    triton_repository,
)
from muse.testing.venvs import (
    CACHE_ENV,
    ModelServerError,
    ServerKind,
    VenvInfo,
    cache_root,
    ensure_venv,
    venv_info,
    venv_path,
)

__all__ = [
    "CACHE_ENV",
    "HOST",
    "MLSERVER_OUTPUT",
    "TRITON_INPUT",
    "TRITON_OUTPUT",
    "ModelServerError",
    "RunningServer",
    "ServerKind",
    "VenvInfo",
    "cache_root",
    "ensure_venv",
    "free_port",
    "free_ports",
    "mlserver_settings",
    "read_lightgbm_header",
    "start_mlserver",
    "start_triton",
    "triton_repository",
    "venv_info",
    "venv_path",
]
