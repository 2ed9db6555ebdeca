"""Mapping muse's exceptions to HTTP answers: the only place status codes are chosen.

Every error body is ``{"error": {"code", "message", "field", "index"}}``: ``field`` names
the offending request field (``features.amount``, ``intent.channel``) and ``index`` the
event of a batch, so a client can fix its request without reading server logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from muse.errors import (
    AuthError,
    BackendError,
    ConfigError,
    FeatureError,
    FeatureStoreError,
    IntentError,
    MuseError,
    NoRouteError,
    UnauthenticatedError,
)

__all__ = ["HTTPError", "error_body", "from_exception"]


@dataclass(frozen=True, slots=True)
class HTTPError(Exception):
    """An answer other than 200: status, stable ``code``, human ``message``, and where."""

    status: int
    code: str
    message: str
    field: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class _Body(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    index: int | None = None


class _Envelope(msgspec.Struct):
    error: _Body


_encode = msgspec.json.Encoder().encode


def error_body(err: HTTPError) -> bytes:
    """The JSON body of ``err``."""
    return _encode(_Envelope(_Body(err.code, err.message, err.field, err.index)))


def from_exception(exc: BaseException, *, batch: bool = False) -> HTTPError:
    """The HTTP answer for an exception raised while scoring a request.

    Anything that is not a :class:`MuseError` is a server fault (500): the caller logs it;
    a client can never cause one, since every check on its input raises a MuseError.
    """
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, AuthError):
        if isinstance(exc, UnauthenticatedError):
            return HTTPError(401, "unauthenticated", str(exc))
        return HTTPError(403, "forbidden", str(exc), exc.field, exc.index)
    if isinstance(exc, FeatureError):
        index = exc.index if batch else None
        field = f"features.{exc.feature}" if exc.feature else "features"
        return HTTPError(422, "invalid_features", str(exc), field, index)
    if isinstance(exc, IntentError):
        field = f"intent.{exc.attribute}" if exc.attribute else "intent"
        return HTTPError(422, "invalid_intent", str(exc), field, exc.index if batch else None)
    if isinstance(exc, NoRouteError):
        return HTTPError(404, "no_route", str(exc), "intent", exc.index if batch else None)
    if isinstance(exc, FeatureStoreError):
        # The store's address and cause are for operators (metrics, logs); the client
        # learns which features it could send instead of waiting for the store.
        names = list(exc.features)
        return HTTPError(
            503,
            "feature_store_unavailable",
            f"feature(s) {names} are not in the request and the feature store that provides "
            "them is unavailable; send them, or retry later",
            f"features.{names[0]}" if names else "features",
        )
    if isinstance(exc, BackendError):
        # Clients request intents, not models: the details (model, file, cause) are logged.
        return HTTPError(
            503, "model_unavailable", "a model needed for this intent is unavailable; retry later"
        )
    if isinstance(exc, ConfigError):
        return HTTPError(422, "invalid_config", str(exc))
    if isinstance(exc, MuseError):
        return HTTPError(422, "invalid_request", str(exc))
    return HTTPError(500, "internal", "internal error; the server logged the details")
