"""The exception tree of muse.

Every error muse raises on purpose derives from :class:`MuseError`, and also from the
builtin that best describes it, so callers can catch either (``except ValueError`` keeps
working for code that knows nothing about muse). Messages name the subject, what was
expected and the actual value; HTTP status codes are chosen only in the serving layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "AuthError",
    "BackendError",
    "ConfigError",
    "ConfigIssue",
    "FeatureError",
    "FeatureStoreError",
    "ForbiddenError",
    "IntentError",
    "MuseError",
    "NoRouteError",
    "ReasonsUnavailableError",
    "UnauthenticatedError",
]


class MuseError(Exception):
    """Root of every error raised by muse on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a deployment config, located by its YAML path (``predictors.p1.experts[0].weight``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(MuseError, ValueError):
    """A deployment config (or part of it) is invalid.

    Carries *every* issue found, not just the first, so an operator fixes a config in one
    round trip; ``str()`` lists them one per line.
    """

    def __init__(self, issues: Sequence[ConfigIssue] | str, *, source: str | None = None) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue("", issues)]
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        self.source = source
        head = f"invalid config {source}" if source else "invalid config"
        lines = [f"{head}: {len(self.issues)} problem(s)"] + [f"  - {i}" for i in self.issues]
        super().__init__("\n".join(lines))

    def prefixed(self, prefix: str) -> ConfigError:
        """The same issues located under ``prefix`` (used when a block is validated on its own)."""
        return ConfigError(
            [ConfigIssue(_join(prefix, i.path), i.message) for i in self.issues], source=self.source
        )


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    if not prefix:
        return path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


class IntentError(MuseError, ValueError):
    """An intent names an attribute the deployment does not declare, or gives it a non-string value."""

    def __init__(
        self, message: str, *, attribute: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.index = index


class NoRouteError(MuseError, LookupError):
    """No scoring rule matches an intent (the config has no catch-all rule)."""

    def __init__(self, intent: Mapping[str, object], *, index: int | None = None) -> None:
        self.intent = dict(intent)
        self.index = index
        super().__init__(
            f"no scoring rule matches intent {self.intent!r}; add a rule for it or a catch-all "
            "rule with condition {}"
        )


class FeatureError(MuseError, ValueError):
    """Features of an event are missing, unknown, non-numeric or non-finite.

    ``feature`` names the offending feature and ``index`` the event within a batch, so the
    serving layer can point the client at the exact field.
    """

    def __init__(
        self, message: str, *, feature: str | None = None, index: int | None = None
    ) -> None:
        super().__init__(message)
        self.feature = feature
        self.index = index


class BackendError(MuseError, RuntimeError):
    """A model backend could not be loaded or failed to score (model file, runtime, output layout)."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class FeatureStoreError(MuseError, RuntimeError):
    """The feature store could not answer: down, timed out, or its circuit breaker is open.

    Not the client's fault (unlike a :class:`FeatureError`): the events that needed the
    store's features can be retried, or sent with those features. ``store`` describes the
    store (kind and address, for logs), ``features`` the features that could not be filled.
    """

    def __init__(
        self, message: str, *, store: str | None = None, features: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.store = store
        self.features: tuple[str, ...] = tuple(features)


class AuthError(MuseError, PermissionError):
    """A caller may not do what it asked: no or unknown credentials, or not its tenant's.

    ``field`` and ``index`` locate the offending part of a request (``intent.tenant`` of
    event 3), as for :class:`FeatureError`.
    """

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index = index


class UnauthenticatedError(AuthError):
    """No credentials, malformed ones, or a key the deployment does not know."""


class ForbiddenError(AuthError):
    """Known credentials that do not allow this: another tenant's events, an admin action."""


class ReasonsUnavailableError(MuseError, ValueError):
    """Reasons were asked of a predictor that cannot give them: one of its models has no
    contribution method and no ``explain`` model, or its explaining model failed its checks
    (the message names the model and the fix)."""
