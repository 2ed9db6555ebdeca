"""API-key authentication over real HTTP: the tenant matrix, admin endpoints, start checks.

Keys: ``bank1`` and ``bank2`` have one key each, ``fintech3`` none, plus one admin key.
A tenant key scores exactly its own tenant's events; an admin key scores nobody's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Running
from tests.e2e.support import (
    Deployment,
    MuseProcess,
    event,
    features,
    free_port,
)

BANK1_KEY = "e2e-bank1-Qm9vIHRoaXMgaXMgYSB0ZXN0IGtleQ"
BANK2_KEY = "e2e-bank2-c2Vjb25kIHRlc3Qga2V5IGZvciBiYW5rMg"
ADMIN_KEY = "e2e-admin-YWRtaW4ga2V5IGZvciB0aGUgZTJlIHRlc3Rz"
UNKNOWN_KEY = "e2e-nobody-bm90IGEga2V5IGFueWJvZHkgaGFz"
KEYS = {"bank1": BANK1_KEY, "bank2": BANK2_KEY, "admin": ADMIN_KEY, "unknown": UNKNOWN_KEY}


def bearer(key: str | None) -> dict[str, str]:
    return {} if key is None else {"authorization": f"Bearer {key}"}


def with_keys(d: Deployment) -> Deployment:
    d.set_auth({"bank1": [BANK1_KEY], "bank2": [BANK2_KEY]}, admins=[ADMIN_KEY])
    return d


@dataclass(frozen=True)
class Authed:
    deployment: Deployment
    server: MuseProcess
    client: httpx.Client

    def score(self, body: Any, key: str | None, **headers: str) -> httpx.Response:
        return self.client.post("/v1/score", json=body, headers={**bearer(key), **headers})


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authed]:
    d = with_keys(Deployment.copy_quickstart(tmp_path_factory.mktemp("auth")))
    server = MuseProcess(d.config, d.root / "serve.log").start()
    try:
        with server.client() as client:
            yield Authed(d, server, client)
    finally:
        server.stop_gracefully()


def error_of(r: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    return err


# -- scoring ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param(f"Bearer {UNKNOWN_KEY}", id="unknown-key"),
        pytest.param("Bearer", id="bearer-without-key"),
        pytest.param(BANK1_KEY, id="key-without-scheme"),
        pytest.param(f"Basic {BANK1_KEY}", id="basic-scheme"),
        pytest.param(f"Bearer {BANK1_KEY[:-1]}", id="truncated-key"),
    ],
)
def test_scoring_without_a_valid_key_is_401(authed: Authed, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    r = authed.client.post("/v1/score", json=event("e", "bank1"), headers=headers)
    assert r.status_code == 401, r.text
    assert error_of(r)["code"] == "unauthenticated"
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert BANK1_KEY[10:] not in r.text  # a presented key is never echoed back
    assert UNKNOWN_KEY[10:] not in r.text


@pytest.mark.parametrize(("tenant", "key"), [("bank1", BANK1_KEY), ("bank2", BANK2_KEY)])
def test_a_tenant_key_scores_its_own_tenant(authed: Authed, tenant: str, key: str) -> None:
    r = authed.score(event("own", tenant), key)
    assert r.status_code == 200, r.text
    assert r.headers["x-muse-config-version"] == "quickstart-1"
    batch = {"events": [event(f"own-{i}", tenant, features(i)) for i in range(3)]}
    r = authed.score(batch, key)
    assert r.status_code == 200, r.text
    assert [x["event_id"] for x in r.json()] == ["own-0", "own-1", "own-2"]


@pytest.mark.parametrize(
    ("key", "tenant"),
    [(BANK1_KEY, "bank2"), (BANK1_KEY, "fintech3"), (BANK2_KEY, "bank1"), (ADMIN_KEY, "bank1")],
    ids=["bank1-as-bank2", "bank1-as-fintech3", "bank2-as-bank1", "admin-as-bank1"],
)
def test_a_key_cannot_score_another_tenant(authed: Authed, key: str, tenant: str) -> None:
    r = authed.score(event("theirs", tenant), key)
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["code"], err.get("field"), err.get("index")) == ("forbidden", "intent.tenant", None)


def test_one_foreign_event_forbids_the_whole_batch_naming_its_index(authed: Authed) -> None:
    tenants = ("bank1", "bank1", "bank2", "bank1")
    batch = {"events": [event(f"b{i}", t, features(i)) for i, t in enumerate(tenants)]}
    r = authed.score(batch, BANK1_KEY)
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert (err["code"], err.get("field"), err.get("index")) == ("forbidden", "intent.tenant", 2)


def test_authentication_comes_before_reading_the_body(authed: Authed) -> None:
    """An anonymous client learns nothing about the request format or limits."""
    for body in (b"{bad", b'{"events": []}', b'{"colour": "red"}'):
        r = authed.client.post("/v1/score", content=body)
        assert r.status_code == 401, r.text
    r = authed.client.post("/v1/score", content=b"{bad", headers=bearer(BANK1_KEY))
    assert r.status_code == 400, r.text


# -- admin endpoints -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/admin/config"), ("POST", "/admin/reload")])
@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 401), ("unknown", 401), ("bank1", 403), ("bank2", 403), ("admin", 200)],
)
def test_admin_endpoints_need_an_admin_key(
    authed: Authed, method: str, path: str, who: str | None, status: int
) -> None:
    r = authed.client.request(method, path, headers=bearer(None if who is None else KEYS[who]))
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["config_version"] == "quickstart-1"
    else:
        assert error_of(r)["code"] == ("unauthenticated" if status == 401 else "forbidden")


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/openapi.json", "/metrics"])
def test_probes_docs_and_metrics_need_no_key(authed: Authed, path: str) -> None:
    assert authed.client.get(path).status_code == 200


# -- start checks ----------------------------------------------------------------------


def test_auth_none_warns_loudly_at_start(open_server: Running) -> None:
    assert open_server.deployment.doc()["auth"] == "none"
    out = open_server.server.output()
    assert "WARNING: auth: none" in out, out
    assert "authentication is OFF" in out, out
    # ... and it really is off: anyone scores any tenant.
    with open_server.server.client() as client:
        assert client.post("/v1/score", json=event("anon", "bank2")).status_code == 200


def run_serve(d: Deployment) -> subprocess.CompletedProcess[str]:
    cmd = MuseProcess.command("serve", str(d.config), "--port", str(free_port()))
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        env=MuseProcess.environment(),
        check=False,
    )


def test_plain_keys_in_the_config_are_rejected_at_start(deployment: Deployment) -> None:
    plain = "plain-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    deployment.set_auth({"bank1": [plain]}, admins=[plain.upper()], hashed=False)
    done = run_serve(deployment)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "auth.tenants" in out, out  # every problem, each at its YAML path
    assert "auth.admins" in out, out
    assert "sha256:" in out, out
    assert plain not in out, "the plain key was printed in full"
    assert plain.upper() not in out, "the plain key was printed in full"
    assert "Traceback" not in out


def test_a_config_without_auth_is_rejected_at_start(deployment: Deployment) -> None:
    with deployment.editing() as doc:
        del doc["auth"]
    done = run_serve(deployment)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "`auth`" in out, out
    assert "Traceback" not in out


# -- reload ----------------------------------------------------------------------------


def test_reload_applies_new_keys_and_never_drops_authentication(authed: Authed) -> None:
    """Runs on the module's server and puts its config back, whatever happens."""
    d, client = authed.deployment, authed.client
    original = d.doc()
    new_key = "e2e-bank1-rotated-bmV3IGtleSBmb3IgYmFuazE"

    def score(key: str | None) -> int:
        return client.post("/v1/score", json=event("e", "bank1"), headers=bearer(key)).status_code

    def reload() -> httpx.Response:
        return client.post("/admin/reload", headers=bearer(ADMIN_KEY))

    try:
        assert score(BANK1_KEY) == 200
        # 1. Rotate bank1's key: the old one stops working at once, the new one works.
        d.set_auth({"bank1": [new_key], "bank2": [BANK2_KEY]}, admins=[ADMIN_KEY])
        r = reload()
        assert r.status_code == 200, r.text
        assert (score(BANK1_KEY), score(new_key)) == (401, 200)
        # 2. A config without `auth` (which `muse serve` refuses to start with) must not
        #    switch authentication off when reloaded.
        with d.editing() as doc:
            del doc["auth"]
        r = reload()
        assert score(None) == 401, (
            f"a reload switched authentication off ({r.status_code} {r.text})"
        )
        assert r.status_code >= 400, r.text
        assert score(new_key) == 200
    finally:
        d.write(original)
        assert reload().status_code == 200
        assert (score(BANK1_KEY), score(None)) == (200, 401)
