"""How an API key travels over HTTP: ``Authorization: Bearer <key>``.

The rules (which key is which tenant, who may administer) are the deployment's
(:mod:`muse.auth`); this module only reads the header.
"""

from __future__ import annotations

from muse.auth import Authenticator, Principal
from muse.errors import UnauthenticatedError

__all__ = ["authenticate", "bearer_key"]


def bearer_key(authorization: bytes | None) -> str | None:
    """The key of an ``Authorization`` header value (None when absent or empty)."""
    if not authorization:
        return None
    scheme, _, key = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UnauthenticatedError("expected 'Authorization: Bearer <API key>'")
    return key.strip()


def authenticate(auth: Authenticator, authorization: bytes | None) -> Principal:
    """The principal of a request whose ``Authorization`` header is ``authorization``."""
    if not auth.enabled:
        return auth.principal(None)
    return auth.principal(bearer_key(authorization))
