"""The contract every model backend fulfils (paper §2.2: experts m_k behind one interface).

A backend is one *physical* model: loaded once, shared by every predictor that names it
(§2.2.1, infrastructure reuse). It declares the features it needs, in the order it needs
them, and turns a batch of feature rows into positive-class probabilities.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from muse.errors import BackendError
from muse.types import FeatureMatrix, ScoreArray

__all__ = [
    "BACKEND_KINDS",
    "REMOTE_KINDS",
    "REQUEST_DEADLINE",
    "Explaining",
    "ModelBackend",
    "ModelSpec",
    "describe_exception",
    "file_digest",
    "read_model",
    "reject_unknown_options",
    "remote_digest",
    "resolve_feature_names",
]

#: The absolute deadline (``time.perf_counter()`` seconds) of the request being scored, set
#: by the HTTP layer around a scoring call: a remote call gets at most what remains of the
#: request's latency budget, so a slow model server cannot hold a request past its budget.
#: ``None`` (the default, e.g. offline tools): each model's own ``timeout_ms`` only.
REQUEST_DEADLINE: ContextVar[float | None] = ContextVar("muse_request_deadline", default=None)

#: Backend kinds that run in this process.
BACKEND_KINDS: tuple[str, ...] = ("lightgbm", "onnx", "xgboost")
#: Backend kinds served by a remote model server (no model file is read).
REMOTE_KINDS: tuple[str, ...] = ("kserve-v2",)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What is needed to load one model: plain values, no I/O at construction.

    ``features`` overrides or supplies the feature names for formats that do not embed
    them (a plain ONNX tensor input, an XGBoost model saved without names).
    ``threads`` bounds the runtime's intra-op threads: serving parallelism comes from
    worker processes, and a second thread pool per model would oversubscribe the cores.
    """

    kind: str
    path: Path
    features: tuple[str, ...] | None = None
    threads: int = 1
    options: tuple[tuple[str, str], ...] = field(default=())


@runtime_checkable
class ModelBackend(Protocol):
    """One loaded model. Implementations are thread-safe for concurrent ``predict`` calls."""

    @property
    def kind(self) -> str:
        """Backend kind, e.g. ``"lightgbm"``."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Features the model needs, in column order of the matrix ``predict`` takes."""
        ...

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the model file: the model's identity in predictor fingerprints."""
        ...

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        """Positive-class probabilities, shape ``(n_events,)``, for rows of ``features``.

        ``features`` has shape ``(n_events, len(feature_names))``, dtype float64, finite.
        """
        ...


@runtime_checkable
class Explaining(Protocol):
    """A model that explains its outputs (reason codes): tree models, by TreeSHAP."""

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def predict(self, features: FeatureMatrix) -> ScoreArray: ...

    def contributions(self, features: FeatureMatrix) -> tuple[np.ndarray, np.ndarray]:
        """Each feature's contribution to each row's output in margin (log-odds) space,
        shape ``(n, len(feature_names))``, and the bias ``(n,)``: ``logit(predict(x)) =
        bias + contributions.sum(axis=1)``."""
        ...


def remote_digest(
    model: str, version: str, features: Sequence[str], file: str | None = None
) -> str:
    """The identity of a remote model in predictor fingerprints.

    A remote model has no file muse reads, so its identity is what names it — model,
    version, features — plus the digest of a local copy when the config gives one.
    Redeploying a model on the server under the same version would not change it: bump
    ``version`` (the protocol's own model identity) and every map is refitted.
    """
    text = "|".join(["kserve-v2", model, version, ",".join(features), file or ""])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    """Content hash of a model file, so a renamed or copied file keeps its identity."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def resolve_feature_names(
    spec: ModelSpec,
    embedded: Sequence[str] | None,
    width: int | None,
    *,
    label: str,
    missing_hint: str,
) -> tuple[str, ...]:
    """The feature names a backend serves: ``spec.features`` if given, else the model's own.

    The names decide which event fields land in which column, so a count that disagrees
    with the model, a duplicate or an empty name is refused at load time rather than
    producing silently shifted columns on the request path. ``width`` is the number of
    columns the model takes when the runtime knows it; ``label`` names the model in
    messages and ``missing_hint`` says how to supply names when neither source has them.
    """
    if spec.features is not None:
        names, origin = tuple(spec.features), "features given in the config"
    elif embedded is not None:
        names, origin = tuple(embedded), "feature names stored in the model"
    else:
        raise BackendError(
            f"{label} has no feature names and none are given in the config; {missing_hint}",
            model=str(spec.path),
        )
    if width is not None and len(names) != width:
        raise BackendError(
            f"{label} takes {width} feature(s) but the {origin} list {len(names)}: {names!r}; "
            f"list exactly {width} names in the model's column order",
            model=str(spec.path),
        )
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise BackendError(
            f"{label}: feature names must be non-empty strings, got {bad!r} in the {origin}",
            model=str(spec.path),
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BackendError(
            f"{label}: duplicate feature name(s) {duplicates!r} in the {origin}; "
            "each column needs its own name",
            model=str(spec.path),
        )
    return names


def reject_unknown_options(spec: ModelSpec, allowed: Sequence[str], *, label: str) -> None:
    """Refuse options a backend does not understand, so a typo is not silently ignored."""
    unknown = sorted({key for key, _ in spec.options} - set(allowed))
    if unknown:
        accepted = ", ".join(repr(a) for a in allowed) if allowed else "none"
        raise BackendError(
            f"{label}: unknown option(s) {unknown!r} for kind {spec.kind!r}; accepted: {accepted}",
            model=str(spec.path),
        )


def read_model(spec: ModelSpec, *, label: str) -> tuple[bytes, str]:
    """The bytes of ``spec.path`` and their digest, read once.

    Backends load the model from these very bytes: hashing the file and then letting the
    runtime open it again could pair the digest of one version with the model of another
    if the file is replaced in between, and the fingerprint check would then accept stale
    maps (ARCHITECTURE invariant 2). An unreadable file is a BackendError.
    """
    try:
        data = spec.path.read_bytes()
    except OSError as exc:
        raise BackendError(
            f"{label} could not be read: {exc.strerror or exc}; check the path and its permissions",
            model=str(spec.path),
        ) from exc
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


_XGBOOST_PREFIX = re.compile(r"^\[\d{2}:\d{2}:\d{2}\] \S+:\d+: ")


def describe_exception(exc: BaseException) -> str:
    """First line of a runtime's error: XGBoost and ONNX Runtime append C++ stack traces.

    XGBoost also prefixes a timestamp and its own source location, noise to an operator.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    first = _XGBOOST_PREFIX.sub("", text.splitlines()[0])
    return first.rstrip(".") or type(exc).__name__


class InProcessBackend:
    """What the in-process backends share: a loaded runtime object and its identity.

    Subclasses set ``kind``, build themselves in a ``load(spec)`` classmethod (all I/O
    there; ``__init__`` only wires loaded parts together) and implement ``predict``.
    """

    kind: ClassVar[str] = ""
    __slots__ = ("_digest", "_feature_names", "_model", "_path", "_threads")

    def __init__(
        self,
        model: Any,
        *,
        feature_names: tuple[str, ...],
        digest: str,
        path: Path,
        threads: int = 1,
    ) -> None:
        self._model = model
        self._feature_names = feature_names
        self._digest = digest
        self._path = path
        self._threads = threads

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._feature_names

    @property
    def digest(self) -> str:
        return self._digest

    def _scoring_error(self, features: FeatureMatrix, exc: BaseException) -> BackendError:
        """The error for a runtime that failed on a matrix, naming file, shape and cause."""
        return BackendError(
            f"{self._label} failed to score a matrix of shape {np.shape(features)!r} "
            f"(expected (n, {len(self._feature_names)})): {describe_exception(exc)}",
            model=str(self._path),
        )

    @property
    def _label(self) -> str:
        return f"{_LABELS.get(self.kind, self.kind)} model {str(self._path)!r}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self._path)!r}, features={len(self._feature_names)}, "
            f"threads={self._threads}, digest={self._digest[:19]!r})"
        )


_LABELS = {"lightgbm": "LightGBM", "onnx": "ONNX", "xgboost": "XGBoost"}
