"""Experts on remote model servers over the Open Inference Protocol (KServe V2): ``kserve-v2``.

In the paper's production setup the orchestration layer stays light and inference runs on
dedicated model servers (Triton) behind the V2 protocol. A ``kserve-v2`` model is one such
remote model, shared like any other backend: one request per batch of events (chunked at
``max_batch_size``), over one pooled HTTP client or one gRPC channel per server.

Failure handling, in the order a call meets it:

* a **circuit breaker** per model server (shared by every model on it): after
  ``breaker_failures`` consecutive failures, calls fail at once — a dead server costs
  microseconds, not a timeout per event — and after ``breaker_reset_s`` one probe call is
  let through; its success closes the breaker, so recovery needs no reload;
* a **deadline** per call: ``timeout_ms``, cut to what remains of the request's latency
  budget (``server.request_budget_ms``, see :data:`~muse.backends.base.REQUEST_DEADLINE`),
  spanning its retries;
* **retries** on connection errors only (refused, reset: nothing reached the model), at
  most ``retries``; a timeout or a server error is not retried (the server may be
  overloaded, and a retry would double its load).

A failure raises :class:`~muse.errors.BackendError` naming the model and the server, which
the service turns into HTTP 503 ``model_unavailable`` for live predictors and a counted
failure for shadows; predictors that do not use the server keep serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from muse.backends.base import REQUEST_DEADLINE, ModelSpec, remote_digest
from muse.backends.v2_codec import (
    DATATYPES,
    HEADER_LENGTH,
    V2ProtocolError,
    decode_http_response,
    encode_http_request,
)
from muse.errors import BackendError
from muse.resilience import CircuitBreaker
from muse.types import FeatureMatrix, ScoreArray

__all__ = ["KIND", "KServeV2Backend", "RemoteSettings"]

KIND = "kserve-v2"


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Where a remote model is and how to call it (the model's config entry)."""

    url: str
    model: str
    version: str
    protocol: Literal["http", "grpc"] = "http"
    input_name: str = "input__0"
    datatype: str = "FP32"
    output_name: str = "probability"
    timeout_ms: float = 100.0
    retries: int = 1
    max_batch_size: int = 256
    binary: Literal["auto", "on", "off"] = "auto"
    breaker_failures: int = 3
    breaker_reset_s: float = 1.0

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> RemoteSettings:
        """Parse the string options of a :class:`ModelSpec` (ValueError naming the bad one)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for a {KIND} model")
        values: dict[str, Any] = {}
        for name, text in options.items():
            kind = known[name].type
            try:
                if kind in ("float", float):
                    values[name] = float(text)
                elif kind in ("int", int):
                    values[name] = int(text)
                else:
                    values[name] = text
            except ValueError:
                raise ValueError(f"option {name!r} must be a number, got {text!r}") from None
        for name in ("url", "model", "version"):
            if not values.get(name):
                raise ValueError(f"a {KIND} model needs option {name!r}")
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.protocol not in ("http", "grpc"):
            raise ValueError(f"protocol must be 'http' or 'grpc', got {self.protocol!r}")
        if self.protocol == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"an http model server url starts with http:// or https://, got {self.url!r}"
            )
        if self.datatype not in DATATYPES:
            raise ValueError(f"datatype must be one of {sorted(DATATYPES)}, got {self.datatype!r}")
        if self.binary not in ("auto", "on", "off"):
            raise ValueError(f"binary must be auto, on or off, got {self.binary!r}")
        for name in ("timeout_ms", "breaker_reset_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name, low in (("retries", 0), ("max_batch_size", 1), ("breaker_failures", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)!r}")

    @property
    def server(self) -> str:
        """The server's address, the key of its shared client and circuit breaker."""
        return f"{self.protocol}:{self.url.removeprefix('grpc://')}"


class _Server:
    """Client and breaker of one model server, shared by every model served from it."""

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s)
        self.binary: bool | None = {"on": True, "off": False}.get(settings.binary)
        self.http: httpx.Client | None = None
        self.grpc: Any = None
        if settings.protocol == "http":
            self.http = httpx.Client(
                base_url=settings.url,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
                timeout=settings.timeout_ms / 1e3,
            )
        else:
            from muse.backends.v2_grpc import GrpcV2Client

            self.grpc = GrpcV2Client(settings.url.removeprefix("grpc://"))

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.grpc is not None:
            self.grpc.close()


_SERVERS: dict[str, _Server] = {}
_SERVERS_LOCK = threading.Lock()


def _server(settings: RemoteSettings) -> _Server:
    with _SERVERS_LOCK:
        server = _SERVERS.get(settings.server)
        if server is None:
            server = _SERVERS[settings.server] = _Server(settings)
        return server


class KServeV2Backend:
    """A model on a V2 model server. Thread-safe; see the module docstring for failures."""

    kind = KIND

    def __init__(
        self,
        settings: RemoteSettings,
        feature_names: tuple[str, ...],
        digest: str,
        path: Path,
    ) -> None:
        self.settings = settings
        self._features = feature_names
        self._digest = digest
        self.path = path
        self._server = _server(settings)
        self.calls = 0

    @classmethod
    def load(cls, spec: ModelSpec) -> KServeV2Backend:
        """Build the client; no network (readiness is :meth:`ready`'s job, at startup)."""
        options = dict(spec.options)
        file = options.pop("file_digest", None)
        label = f"{KIND} model {options.get('model', '?')!r} at {options.get('url', '?')}"
        try:
            settings = RemoteSettings.from_options(options)
        except ValueError as e:
            raise BackendError(f"{label}: {e}", model=options.get("model")) from None
        if not spec.features:
            raise BackendError(
                f"{label}: a remote model must list its `features` in the config (the "
                "server does not say which feature each input column is)",
                model=settings.model,
            )
        return cls(
            settings,
            tuple(spec.features),
            remote_digest(settings.model, settings.version, spec.features, file),
            spec.path,
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._features

    @property
    def digest(self) -> str:
        return self._digest

    @property
    def breaker(self) -> CircuitBreaker:
        return self._server.breaker

    def describe(self) -> str:
        s = self.settings
        return f"model {s.model!r} (version {s.version}) on {s.protocol} server {s.url}"

    # -- readiness ----------------------------------------------------------------------

    def ready(self, timeout_s: float = 2.0) -> bool:
        """Whether the server and this model answer ready (V2 health endpoints)."""
        s = self.settings
        server = self._server
        try:
            if server.grpc is not None:
                return bool(
                    server.grpc.server_ready(timeout_s)
                    and server.grpc.model_ready(s.model, s.version, timeout_s)
                )
            assert server.http is not None
            ok = server.http.get("/v2/health/ready", timeout=timeout_s).status_code == 200
            ok = (
                ok
                and server.http.get(self._model_path("ready"), timeout=timeout_s).status_code == 200
            )
            if ok and server.binary is None:
                meta = server.http.get("/v2", timeout=timeout_s)
                extensions = meta.json().get("extensions", []) if meta.status_code == 200 else []
                server.binary = "binary_tensor_data" in extensions
            return ok
        except Exception:  # any failure to answer is "not ready"; the caller waits or reports
            return False

    # -- scoring ------------------------------------------------------------------------

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        """Probabilities from the server: one request per ``max_batch_size`` rows."""
        n = features.shape[0]
        size = self.settings.max_batch_size
        if n <= size:
            return self._call(features)
        return np.concatenate([self._call(features[i : i + size]) for i in range(0, n, size)])

    def _call(self, x: FeatureMatrix) -> ScoreArray:
        server = self._server
        s = self.settings
        if not server.breaker.allow():
            raise BackendError(
                f"{self.describe()} is unavailable: its circuit breaker is open after "
                f"{server.breaker.failures} consecutive failures; retrying in up to "
                f"{s.breaker_reset_s:g} s",
                model=s.model,
            )
        now = time.perf_counter()
        deadline = now + s.timeout_ms / 1e3
        budget = REQUEST_DEADLINE.get()
        if budget is not None and budget < deadline:
            deadline = budget
            if deadline <= now:
                # The request's budget is spent before the call: not the server's fault,
                # so the breaker is not told.
                raise BackendError(
                    f"{self.describe()} not called: the request's latency budget is spent",
                    model=s.model,
                )
        attempts = 1 + s.retries
        last: str = "no attempt"
        for attempt in range(attempts):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                last = f"deadline passed ({s.timeout_ms:g} ms per call, or the request's budget)"
                break
            try:
                self.calls += 1
                y = self._once(x, remaining)
            except _RetryableError as e:
                last = str(e)
                if attempt + 1 < attempts:
                    continue
                break
            except _FinalError as e:
                last = str(e)
                break
            server.breaker.record_success()
            return y
        server.breaker.record_failure()
        raise BackendError(f"{self.describe()} failed: {last}", model=s.model)

    def _once(self, x: FeatureMatrix, timeout: float) -> ScoreArray:
        s = self.settings
        server = self._server
        if server.grpc is not None:
            import grpc

            try:
                return server.grpc.infer(  # type: ignore[no-any-return]
                    x,
                    model=s.model,
                    version=s.version,
                    input_name=s.input_name,
                    datatype=s.datatype,
                    output_name=s.output_name,
                    timeout=timeout,
                )
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                message = f"gRPC {getattr(code, 'name', code)}: {e.details() if hasattr(e, 'details') else e}"
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise _RetryableError(message) from None
                raise _FinalError(message) from None
            except V2ProtocolError as e:
                raise _FinalError(str(e)) from None
        assert server.http is not None
        binary = bool(server.binary)
        body, header_length = encode_http_request(
            x,
            input_name=s.input_name,
            datatype=s.datatype,
            output_name=s.output_name,
            binary=binary,
        )
        headers = {"content-type": "application/json"}
        if header_length is not None:
            headers = {
                "content-type": "application/octet-stream",
                HEADER_LENGTH: str(header_length),
            }
        try:
            response = server.http.post(
                self._model_path("infer"), content=body, headers=headers, timeout=timeout
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            raise _RetryableError(f"connection failed: {e}") from None
        except httpx.TimeoutException:
            raise _FinalError(f"no answer within {timeout * 1e3:.0f} ms") from None
        except httpx.HTTPError as e:
            raise _FinalError(f"HTTP error: {e}") from None
        if response.status_code != 200:
            raise _FinalError(f"HTTP {response.status_code}: {response.text[:300]}")
        length = response.headers.get(HEADER_LENGTH)
        try:
            return decode_http_response(
                response.content, int(length) if length else None, s.output_name, x.shape[0]
            )
        except (V2ProtocolError, ValueError) as e:
            raise _FinalError(str(e)) from None

    def _model_path(self, what: str) -> str:
        s = self.settings
        return f"/v2/models/{s.model}/versions/{s.version}/{what}"


class _RetryableError(Exception):
    """Nothing reached the model: safe to try again."""


class _FinalError(Exception):
    """The call reached the server (or ran out of time): not retried."""
