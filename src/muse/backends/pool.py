"""Loading backends by kind, and the pool that shares one instance per physical model.

Many predictors name the same model file (paper §2.2.1: infrastructure reuse); loading it
once per predictor would multiply memory and load time by the number of tenants. The pool
keys instances by what changes the loaded object: kind, real path, feature names, threads
and options. A config reload keeps the instances the new snapshot still names.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from muse.backends.base import BACKEND_KINDS, REMOTE_KINDS, ModelBackend, ModelSpec
from muse.errors import BackendError

__all__ = ["ModelPool", "load_backend"]

#: Runtime modules are imported on first use, so a deployment of ONNX models never pays
#: for importing LightGBM and XGBoost (and a broken install of one breaks only its kind).
_IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "lightgbm": ("muse.backends.lightgbm", "LightGBMBackend"),
    "onnx": ("muse.backends.onnx", "OnnxBackend"),
    "xgboost": ("muse.backends.xgboost", "XGBoostBackend"),
    "kserve-v2": ("muse.backends.kserve_v2", "KServeV2Backend"),
}

PoolKey = tuple[str, str, tuple[str, ...] | None, int, tuple[tuple[str, str], ...]]
#: (device, inode, size, mtime) of a model file when it was loaded; ``None`` if unknown.
FileStamp = tuple[int, int, int, int] | None


def load_backend(spec: ModelSpec) -> ModelBackend:
    """Load the model ``spec`` describes with the backend of ``spec.kind``.

    Raises :class:`BackendError` for an unknown kind, a missing file, an unreadable or
    invalid model, or a model that is not a binary classifier.
    """
    if spec.threads < 1:
        # Every runtime reads 0 as "all cores": one such model per worker process would
        # oversubscribe the machine.
        raise BackendError(
            f"threads for {spec.kind} model {str(spec.path)!r} must be at least 1, got "
            f"{spec.threads!r}",
            model=str(spec.path),
        )
    if spec.kind not in BACKEND_KINDS and spec.kind not in REMOTE_KINDS:
        raise BackendError(
            f"unknown model kind {spec.kind!r} for {str(spec.path)!r}; expected one of "
            f"{list(BACKEND_KINDS)!r}",
            model=str(spec.path),
        )
    if spec.kind not in REMOTE_KINDS and not spec.path.is_file():
        what = "is not a file" if spec.path.exists() else "does not exist"
        raise BackendError(
            f"{spec.kind} model file {str(spec.path)!r} {what} (resolved to "
            f"{str(spec.path.resolve())!r}); check the model path in the config",
            model=str(spec.path),
        )
    module_name, class_name = _IMPLEMENTATIONS[spec.kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"the {spec.kind} runtime cannot be imported ({exc}); reinstall muse-serve with "
            "its dependencies",
            model=str(spec.path),
        ) from exc
    backend: ModelBackend = getattr(module, class_name).load(spec)
    return backend


@dataclass(frozen=True, slots=True)
class _Entry:
    backend: ModelBackend
    stamp: FileStamp


class ModelPool:
    """One loaded backend per distinct model, shared by every predictor that names it.

    ``get`` is thread-safe; loads are serialised by one lock, which is fine because they
    happen when a config snapshot is built, not per request. If a model file is replaced
    in place (same path, new content), the next ``get`` loads the new file instead of
    handing out the stale model, so redeploying a model under the same name is safe.
    """

    def __init__(self, loader: Callable[[ModelSpec], ModelBackend] = load_backend) -> None:
        self._loader = loader
        self._entries: dict[PoolKey, _Entry] = {}
        self._lock = threading.Lock()
        self._loads = 0

    @property
    def loads(self) -> int:
        """How many models were actually loaded (not served from the pool)."""
        return self._loads

    def get(self, spec: ModelSpec) -> ModelBackend:
        """The backend for ``spec``, loaded on first use and shared afterwards."""
        key = _key(spec)
        with self._lock:
            entry = self._entries.get(key)
            stamp = _stamp(Path(key[1]))
            if entry is not None and (stamp is None or stamp == entry.stamp):
                return entry.backend
            backend = self._loader(spec)
            self._entries[key] = _Entry(backend, stamp)
            self._loads += 1
            return backend

    def retain(self, specs: Iterable[ModelSpec]) -> None:
        """Drop every instance no spec in ``specs`` names (after a config snapshot swap)."""
        keep = {_key(s) for s in specs}
        with self._lock:
            for key in [k for k in self._entries if k not in keep]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ModelPool(models={len(self._entries)}, loads={self._loads})"


def _key(spec: ModelSpec) -> PoolKey:
    features = tuple(spec.features) if spec.features is not None else None
    return (
        spec.kind,
        os.path.realpath(spec.path),
        features,
        spec.threads,
        tuple(sorted(spec.options)),
    )


def _stamp(path: Path) -> FileStamp:
    try:
        st = path.stat()
    except OSError:
        # A deleted file does not invalidate the copy already in memory.
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
