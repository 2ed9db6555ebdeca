"""The console's pages over HTTP (in process): what each shows, sign-in, CSRF, promote and
rollback through the fleet's own operations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.console.conftest import ADMIN_KEY, TENANT_KEY, Fleet, console_client, make_fleet

client = console_client


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """A console with admin keys (its tests may promote and roll back)."""
    return make_fleet(tmp_path_factory.mktemp("guarded"), auth=True)


def csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_every_page_answers_and_says_the_console_is_open(fleet: Fleet) -> None:
    with client(fleet) as c:
        for path in ("/fleet", "/routing", "/tenants", "/tenants/bank1", "/candidates", "/refresh"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[:500])
            assert "auth: none" in r.text
            assert "default-src 'self'" in r.headers["content-security-policy"]
        assert c.get("/", follow_redirects=False).headers["location"] == "/fleet"
        assert c.get("/health").json()["status"] == "ok"


def test_the_fleet_page_offers_to_promote_the_published_version(fleet: Fleet) -> None:
    with client(fleet) as c:
        html = c.get("/fleet").text
    assert f'data-version="{fleet.first}" data-state="active"' in html
    assert f'data-version="{fleet.second}" data-state="published"' in html
    assert f"/promote?version={fleet.second}" in html


def test_the_confirmation_shows_what_a_promotion_changes(fleet: Fleet) -> None:
    with client(fleet) as c:
        html = c.get(f"/promote?version={fleet.second}").text
        assert "single-v1 / bank1" in html
        assert c.get("/promote?version=nope").status_code == 404
        assert c.get("/promote").status_code == 400
        assert c.get("/rollback").status_code == 400  # the first activation has no previous


def test_tenants_pages_show_counts_and_charts(fleet: Fleet) -> None:
    with client(fleet) as c:
        table = c.get("/tenants?days=366").text
        one = c.get("/tenants/bank1?days=366").text
        drifting = c.get("/tenants?days=366&verdict=drifting").text
        missing = c.get("/tenants/nobody")
    assert re.search(r'data-tenant="bank1" data-events="\d+"', table)
    assert 'id="alignment-table"' in one
    assert 'id="alignment-spec"' in one
    assert "/static/vendor/vega-embed.min.js" in one
    shown = re.findall(
        r'<tr data-tenant="[^"]+" data-events="\d+" data-verdict="([a-z_]+)"', drifting
    )
    assert all(v == "drifting" for v in shown), shown
    assert missing.status_code == 404


def test_the_intent_tester(fleet: Fleet) -> None:
    with client(fleet) as c:
        ok = c.get("/routing?tenant=bank2").text
        other = c.get("/routing?tenant=nobody-routes-me").text
    assert '<strong id="route-live">single-v1</strong>' in ok
    assert 'id="route-shadows">ensemble-v1<' in ok
    # A tenant no rule names falls to the quickstart's catch-all rule.
    assert '<strong id="route-live">single-v1</strong>' in other
    assert "Default DAG for every other tenant" in other


def test_candidates_are_compared_against_live(fleet: Fleet) -> None:
    with client(fleet) as c:
        html = c.get("/candidates").text
    assert 'data-candidate="ensemble-v1" data-tenant="bank2"' in html
    assert "events scored by both" in html
    assert "recall at" in html  # the labels add the ranking checks


def test_vendored_charts_are_served_locally(fleet: Fleet) -> None:
    with client(fleet) as c:
        r = c.get("/static/vendor/vega.min.js")
    assert r.status_code == 200
    assert len(r.content) > 100_000


# -- signing in ---------------------------------------------------------------------------


def test_pages_need_an_admin_key(guarded: Fleet) -> None:
    with client(guarded) as c:
        r = c.get("/tenants?days=3", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Ftenants%3Fdays%3D3"
        for key in ("wrong", TENANT_KEY, ""):
            answer = c.post("/login", data={"key": key, "next": "/fleet"})
            assert answer.status_code in (401, 422) or "not an admin key" in answer.text
            assert "muse_console" not in c.cookies
        signed = c.post("/login", data={"key": ADMIN_KEY, "next": "/tenants"})
        assert signed.status_code == 200
        assert signed.url.path == "/tenants"
        assert "auth: none" not in signed.text


def test_a_bearer_admin_key_works_without_a_session(guarded: Fleet) -> None:
    with client(guarded) as c:
        assert c.get("/fleet", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        r = c.get(
            "/fleet", headers={"Authorization": f"Bearer {TENANT_KEY}"}, follow_redirects=False
        )
        assert r.status_code == 303


def test_a_forged_cookie_or_an_outside_next_is_refused(guarded: Fleet) -> None:
    with client(guarded) as c:
        c.cookies.set("muse_console", "forged.value.here")
        assert c.get("/fleet", follow_redirects=False).status_code == 303
        r = c.post(
            "/login", data={"key": ADMIN_KEY, "next": "//evil.example/x"}, follow_redirects=False
        )
        assert r.headers["location"] == "/fleet"


def test_promote_and_roll_back_from_the_console(guarded: Fleet) -> None:
    with client(guarded) as c:
        c.post("/login", data={"key": ADMIN_KEY, "next": "/fleet"})
        confirm = c.get(f"/promote?version={guarded.second}").text
        token = csrf(confirm)
        refused = c.post("/promote", data={"version": guarded.second, "csrf": "stale"})
        assert refused.status_code == 403
        assert guarded.store.active()["version"] == guarded.first  # type: ignore[index]
        done = c.post("/promote", data={"version": guarded.second, "csrf": token})
        assert done.status_code == 200
        assert 'data-state="activated"' in done.text
        assert guarded.store.active()["version"] == guarded.second  # type: ignore[index]
        assert any(
            e.get("event") == "activated" and str(e.get("by", "")).startswith("console")
            for e in guarded.store.history()
        )
        back = c.get("/rollback").text
        assert guarded.first in back
        rolled = c.post("/rollback", data={"csrf": csrf(back)})
        assert 'data-state="activated"' in rolled.text
        assert guarded.store.active()["version"] == guarded.first  # type: ignore[index]


def test_signing_out_ends_the_session(guarded: Fleet) -> None:
    with client(guarded) as c:
        c.post("/login", data={"key": ADMIN_KEY})
        assert c.get("/fleet", follow_redirects=False).status_code == 200
        c.post("/logout")
        assert c.get("/fleet", follow_redirects=False).status_code == 303


def test_missing_labels_are_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from muse.cli import invoke

    code = invoke(["console", "--store", str(tmp_path), "--labels", str(tmp_path / "nope.pq")])
    assert code == 2
    assert "nope.pq do not exist" in capsys.readouterr().err


def test_the_tenants_table_pages_and_counts_verdicts(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from muse.console import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    with client(fleet) as c:
        first = c.get("/tenants?days=366").text
        second = c.get("/tenants?days=366&page=2").text
        beyond = c.get("/tenants?days=366&page=99").text
    assert first.count('<tr data-tenant="') == 2
    assert "tenants 1–2 of 3 (page 1 of 2)" in first
    assert second.count('<tr data-tenant="') == 1
    assert 'data-tenant="fintech3"' in second
    assert "page 2 of 2" in beyond  # a page past the end shows the last
    rows = views.tenant_rows(fleet.state.snapshot(), views.last_days(fleet.state.snapshot(), 366))
    for verdict in {r.verdict.verdict for r in rows if r.verdict}:
        n = sum(1 for r in rows if r.verdict and r.verdict.verdict == verdict)
        assert f'<span class="verdict {verdict}">{verdict}</span> {n}</a>' in first


def test_an_open_console_still_refuses_a_form_it_did_not_serve(fleet: Fleet) -> None:
    """With auth: none there is no session, but a cross-site POST must not promote."""
    with client(fleet) as c:
        forged = c.post("/promote", data={"version": fleet.second})
        assert forged.status_code == 403
        assert fleet.store.active()["version"] == fleet.first  # type: ignore[index]
        odd = c.get("/promote?version=../../etc")
        assert odd.status_code == 404
        assert "not a version id" in odd.text


def test_an_empty_store_fails_closed(tmp_path: Path) -> None:
    """Before any version is active there are no admin keys to check: nothing is open."""
    from muse.console import ConsoleState
    from muse.fleet import DeploymentStore

    state = ConsoleState(DeploymentStore(tmp_path / "store"), tmp_path / "cache", refresh_s=3600)
    state.refresh()
    empty = Fleet(tmp_path, state.store, tmp_path / "lake", "", "", state)
    with client(empty) as c:
        for path in ("/fleet", "/routing", "/tenants", "/tenants/bank1", "/candidates"):
            r = c.get(path)
            assert r.status_code == 503, path
            assert "Sign-in is unavailable" in r.text
        assert c.post("/promote", data={"version": "v-1"}).status_code == 503
        assert c.post("/login", data={"key": "anything"}).status_code == 503
        assert c.get("/health").json()["status"] == "ok"


def test_odd_requests_get_answers_not_server_errors(guarded: Fleet) -> None:
    with client(guarded) as c:
        basic = c.get("/fleet", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.url.path == "/login"  # another scheme is no key, not a crash
        c.post("/login", data={"key": ADMIN_KEY})
        assert c.get("/promote?version=v-%00x").status_code == 404
        assert c.get("/tenants?days=abc&page=-3").status_code == 200
        assert (
            c.post("/promote", data={"version": guarded.second, "csrf": "ünï"}).status_code == 403
        )


def test_a_rollback_is_refused_when_its_target_changed_since_the_confirmation(
    guarded: Fleet,
) -> None:
    with client(guarded) as c:
        c.post("/login", data={"key": ADMIN_KEY})
        confirm = c.get(f"/promote?version={guarded.second}").text
        token = csrf(confirm)
        stale = c.post("/rollback", data={"csrf": token, "version": "v-somethingelse"})
        assert stale.status_code == 409
        assert "changed meanwhile" in stale.text
        assert guarded.store.active()["version"] == guarded.first  # type: ignore[index]
