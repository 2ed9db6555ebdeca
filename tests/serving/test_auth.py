"""API-key authentication and the tenant rule: the intent's tenant is the key's tenant."""

from __future__ import annotations

import pytest

from muse.auth import Authenticator
from muse.errors import AuthError
from muse.serving.auth import authenticate
from muse.serving.errors import HTTPError, from_exception
from muse.serving_config import AuthConfig, hash_api_key

AUTH = Authenticator.from_config(
    AuthConfig(
        tenants={"bank1": (hash_api_key("k-bank1"),), "bank2": (hash_api_key("k-bank2"),)},
        admins=(hash_api_key("k-admin"),),
    )
)


def _http(exc: BaseException) -> HTTPError:
    return from_exception(exc, batch=True)


def test_tenant_keys_resolve_to_their_tenant() -> None:
    p = authenticate(AUTH, b"Bearer k-bank1")
    assert p.tenant == "bank1"
    assert not p.admin
    AUTH.require_tenant(p, "bank1", None)
    with pytest.raises(AuthError) as info:
        AUTH.require_tenant(p, "bank2", 4)
    err = _http(info.value)
    assert (err.status, err.field, err.index) == (403, "intent.tenant", 4)


@pytest.mark.parametrize("header", [None, b"", b"Bearer", b"Basic abc", b"Bearer nope"])
def test_missing_malformed_or_unknown_keys_are_401(header: bytes | None) -> None:
    with pytest.raises(AuthError) as info:
        authenticate(AUTH, header)
    assert _http(info.value).status == 401


def test_admin_keys_administer_but_do_not_score_as_a_tenant() -> None:
    admin = authenticate(AUTH, b"bearer k-admin")
    Authenticator.require_admin(admin)
    with pytest.raises(AuthError):
        AUTH.require_tenant(admin, "bank1", None)
    with pytest.raises(AuthError) as info:
        Authenticator.require_admin(authenticate(AUTH, b"Bearer k-bank2"))
    assert _http(info.value).status == 403


def test_auth_none_lets_anyone_do_anything() -> None:
    open_door = Authenticator.from_config("none")
    p = authenticate(open_door, None)
    open_door.require_tenant(p, "any", None)
    Authenticator.require_admin(p)


def test_config_refuses_plain_keys() -> None:
    with pytest.raises(ValueError, match="sha256"):
        AuthConfig(tenants={"bank1": ("my-secret-key",)})
