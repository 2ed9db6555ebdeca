"""API-key authentication: a key is a tenant's (or an admin's) identity.

The intent's tenant *is* the key's tenant: a client never chooses whose thresholds and
maps its events are scored with. Keys are looked up by their SHA-256 hash, so plain keys
exist only on the client side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from muse.serving.errors import HTTPError
from muse.serving_config import AuthConfig, hash_api_key

__all__ = ["Authenticator", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: a tenant, an admin, or anyone (``auth: none``)."""

    tenant: str | None = None
    admin: bool = False
    anonymous: bool = False


_ANYONE = Principal(anonymous=True, admin=True)


class Authenticator:
    """Resolves ``Authorization: Bearer <key>`` to a :class:`Principal`."""

    def __init__(self, tenants: Mapping[str, str], admins: frozenset[str], enabled: bool) -> None:
        self._tenants = dict(tenants)  # key hash → tenant
        self._admins = admins
        self.enabled = enabled

    @classmethod
    def from_config(cls, auth: AuthConfig | str | None) -> Authenticator:
        if auth is None or auth == "none":
            return cls({}, frozenset(), enabled=False)
        assert isinstance(auth, AuthConfig)
        by_hash = {h: tenant for tenant, hashes in auth.tenants.items() for h in hashes}
        return cls(by_hash, frozenset(auth.admins), enabled=True)

    def authenticate(self, authorization: bytes | None) -> Principal:
        """The principal of a request's ``Authorization`` header value; 401 if none."""
        if not self.enabled:
            return _ANYONE
        if not authorization:
            raise HTTPError(
                401, "unauthenticated", "missing 'Authorization: Bearer <API key>' header"
            )
        scheme, _, key = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HTTPError(401, "unauthenticated", "expected 'Authorization: Bearer <API key>'")
        digest = hash_api_key(key.strip())
        tenant = self._tenants.get(digest)
        if tenant is not None:
            return Principal(tenant=tenant)
        if digest in self._admins:
            return Principal(admin=True)
        raise HTTPError(401, "unauthenticated", "unknown API key")

    def require_tenant(self, principal: Principal, tenant: object, index: int | None) -> None:
        """403 unless ``principal`` may score events of ``tenant``."""
        if principal.anonymous or principal.tenant == tenant:
            return
        who = "an admin key" if principal.admin else f"the key of tenant {principal.tenant!r}"
        raise HTTPError(
            403,
            "forbidden",
            f"{who} cannot score events of tenant {tenant!r}; use that tenant's own key",
            "intent.tenant",
            index,
        )

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.admin:
            raise HTTPError(403, "forbidden", "this endpoint needs an admin API key")
