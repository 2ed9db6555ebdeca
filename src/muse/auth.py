"""API-key authentication rules: a key is a tenant's (or an admin's) identity.

The intent's tenant *is* the key's tenant: a client never chooses whose thresholds and
maps its events are scored with. Keys are looked up by their SHA-256 hash, so plain keys
exist only on the client side. The rules belong to a deployment version (its ``auth``
section) and change with it; how a key travels (an HTTP header) is the serving layer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from muse.errors import ForbiddenError, UnauthenticatedError
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
    """Resolves an API key to a :class:`Principal` and says what it may do."""

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

    def principal(self, key: str | None) -> Principal:
        """The principal of API key ``key`` (None: the request carried none)."""
        if not self.enabled:
            return _ANYONE
        if not key:
            raise UnauthenticatedError("missing 'Authorization: Bearer <API key>' header")
        digest = hash_api_key(key)
        tenant = self._tenants.get(digest)
        if tenant is not None:
            return Principal(tenant=tenant)
        if digest in self._admins:
            return Principal(admin=True)
        raise UnauthenticatedError("unknown API key")

    def is_admin_digest(self, digest: str) -> bool:
        """Whether ``digest`` (:func:`~muse.serving_config.hash_api_key` of a key) is an
        admin's: a session that stored the digest is checked again on every request, so
        removing a key from the active version ends its sessions."""
        return digest in self._admins

    def require_tenant(self, principal: Principal, tenant: object, index: int | None) -> None:
        """Raise :class:`ForbiddenError` unless ``principal`` may score events of ``tenant``."""
        if principal.anonymous or principal.tenant == tenant:
            return
        who = "an admin key" if principal.admin else f"the key of tenant {principal.tenant!r}"
        raise ForbiddenError(
            f"{who} cannot score events of tenant {tenant!r}; use that tenant's own key",
            field="intent.tenant",
            index=index,
        )

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.admin:
            raise ForbiddenError("this endpoint needs an admin API key")
