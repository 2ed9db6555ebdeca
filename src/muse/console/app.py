"""The operator console's web app: server-rendered pages over a :class:`ConsoleState`.

A separate Starlette app for the control plane — it never runs on a scoring replica's event
loop. Pages are HTML rendered by Jinja2 from :mod:`muse.console.views`; the only script is
vega-embed drawing the charts the server wrote as Vega-Lite JSON, so every page works with
the keyboard and without JavaScript except for its charts.

Who may use it: the admins of the active version (its ``auth.admins`` keys). An operator
signs in with an admin API key once; the console keeps a signed session cookie (HttpOnly,
SameSite=Strict) holding the key's digest and a CSRF token that every form posts back. A
deployment with ``auth: none`` is open, and every page says so. Scripts may send
``Authorization: Bearer <admin key>`` instead of the cookie.

Promote and rollback are the very operations of ``muse promote`` / ``muse rollback``
(:func:`muse.fleet.promote`): a confirmation page lists what changes — routes, predictors'
fingerprints, tenants' maps — and only its form's POST moves the fleet.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from muse.auth import Authenticator
from muse.console import charts, views
from muse.console.assets import missing_assets
from muse.console.state import ConsoleState, Snapshot
from muse.errors import MuseError
from muse.fitting.drift import DEFAULT_LEVELS, level_threshold
from muse.fleet.promotion import promote, rollback
from muse.fleet.store import StoreError
from muse.serving.auth import bearer_key
from muse.serving_config import hash_api_key

__all__ = ["create_app"]

SESSION_COOKIE = "muse_console"
SESSION_MAX_AGE_S = 8 * 3600
STATIC = Path(__file__).parent / "static"
Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    state: ConsoleState,
    *,
    secret: str | None = None,
    promote_timeout_s: float = 120.0,
    start_state: bool = True,
) -> Starlette:
    """The console app over ``state``; ``secret`` signs session cookies (a random one per
    process if None: sessions then end with the process, and several console replicas
    need a shared one)."""
    signer = URLSafeTimedSerializer(secret or secrets.token_urlsafe(32), salt="muse-console")
    # An open console (auth: none) has no session, but its forms still carry a token a
    # page of another site cannot read: no cross-site POST promotes through a browser.
    open_csrf = secrets.token_urlsafe(24)
    env = Environment(
        loader=PackageLoader("muse.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x, d=2: "—" if x is None else f"{x:.{d}%}"
    env.filters["num"] = lambda x: "—" if x is None else f"{x:,.0f}"
    env.filters["age"] = _age

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        if start_state:
            await asyncio.to_thread(state.start)
        yield
        if start_state:
            await asyncio.to_thread(state.stop)

    # -- sessions --------------------------------------------------------------------

    def authenticator(snap: Snapshot) -> Authenticator | None:
        """The active version's admin keys; None until a config was loaded (fail closed:
        a store that cannot be read never makes the console open)."""
        return Authenticator.from_config(snap.auth) if snap.auth_known else None

    def session(request: Request) -> dict[str, str] | None:
        """The signed-in operator (``who``, ``csrf``), or an open console's anonymous one."""
        snap = state.snapshot()
        auth = authenticator(snap)
        if auth is None:
            return None
        if not auth.enabled:
            return {"who": "anyone (auth: none)", "csrf": open_csrf, "open": "1"}
        try:
            key = bearer_key(request.headers.get("authorization", "").encode() or None)
        except MuseError:  # another scheme (a proxy's basic auth): not an API key
            key = None
        if key is not None:
            if auth.is_admin_digest(hash_api_key(key)):
                return {"who": f"key {hash_api_key(key)[7:19]}", "csrf": "", "bearer": "1"}
            return None
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            doc = signer.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(doc, dict) or not auth.is_admin_digest(str(doc.get("digest"))):
            return None  # the key was removed from the active version's admins
        return {"who": str(doc.get("who")), "csrf": str(doc.get("csrf"))}

    def page(handler: Callable[[Request, dict[str, str]], Awaitable[Response]]) -> Handler:
        async def guarded(request: Request) -> Response:
            if authenticator(state.snapshot()) is None:
                return render(request, None, "error.html", status=503, message=_no_keys(state))
            who = session(request)
            if who is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
            if request.method == "POST" and not who.get("bearer"):
                form = await request.form()
                token = str(form.get("csrf", "")).encode()
                if not who["csrf"] or not hmac.compare_digest(token, who["csrf"].encode()):
                    return render(request, who, "error.html", status=403, message=(
                        "This form is stale or did not come from this console (CSRF token "
                        "mismatch). Reload the page and try again."
                    ))  # fmt: skip
            return await handler(request, who)

        return guarded

    def render(
        request: Request, who: dict[str, str] | None, template: str, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        snap = state.snapshot()
        html = env.get_template(template).render(
            who=who,
            snap=snap,
            path=request.url.path,
            missing_assets=missing_assets(),
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)

    # -- sign in ---------------------------------------------------------------------

    async def login(request: Request) -> Response:
        nxt = _safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return render(request, None, "login.html", next=nxt, error=None)
        form = await request.form()
        key = str(form.get("key", "")).strip()
        nxt = _safe_next(str(form.get("next", "/")))
        auth = authenticator(state.snapshot())
        if auth is None:
            return render(request, None, "error.html", status=503, message=_no_keys(state))
        if not auth.enabled:
            return RedirectResponse(nxt, status_code=303)
        if not key or not auth.is_admin_digest(hash_api_key(key)):
            return render(
                request,
                None,
                "login.html",
                status=401,
                next=nxt,
                error="That is not an admin key of the active version.",
            )
        digest = hash_api_key(key)
        cookie = signer.dumps(
            {"digest": digest, "who": f"key {digest[7:19]}", "csrf": secrets.token_urlsafe(24)}
        )
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- pages -----------------------------------------------------------------------

    async def fleet_page(request: Request, who: dict[str, str]) -> Response:
        return render(request, who, "fleet.html", fleet=views.fleet(state.snapshot()))

    async def confirm(request: Request, who: dict[str, str]) -> Response:
        """What a promotion (``?version=``) or the rollback would change, and its form."""
        snap = state.snapshot()
        active = (snap.active or {}).get("version")
        is_rollback = request.url.path == "/rollback"
        target = (
            (snap.active or {}).get("previous")
            if is_rollback
            else request.query_params.get("version")
        )
        if not target:
            message = (
                "There is no previous version to roll back to."
                if is_rollback
                else "Choose a version to promote."
            )
            return render(request, who, "error.html", status=400, message=message)
        try:
            new = await asyncio.to_thread(state.config, str(target))
            old = await asyncio.to_thread(state.config, str(active)) if active else None
        except StoreError as e:
            return render(request, who, "error.html", status=404, message=str(e))
        except MuseError as e:  # published, but it does not load here: say why
            return render(request, who, "error.html", status=409, message=f"{target}: {e}")
        changes = views.promotion_changes(old, new)
        return render(
            request,
            who,
            "confirm.html",
            target=target,
            active=active,
            changes=changes,
            rollback=is_rollback,
        )

    async def run_promotion(request: Request, who: dict[str, str]) -> Response:
        form = await request.form()
        is_rollback = request.url.path == "/rollback"
        version = str(form.get("version", ""))
        by = f"console ({who['who']})"
        try:
            if is_rollback:
                previous = (state.store.active() or {}).get("previous")
                if version and version != previous:
                    return render(request, who, "error.html", status=409, message=(
                        f"The version to roll back to is now {previous!r}, not {version!r} "
                        "as confirmed: the active version changed meanwhile. Look again."
                    ))  # fmt: skip
                result = await asyncio.to_thread(
                    rollback, state.store, timeout_s=promote_timeout_s, by=by
                )
            else:
                if not version:
                    return render(
                        request, who, "error.html", status=400, message="No version given."
                    )
                result = await asyncio.to_thread(
                    promote, state.store, version, timeout_s=promote_timeout_s, by=by
                )
        except StoreError as e:
            return render(request, who, "error.html", status=409, message=str(e))
        await asyncio.to_thread(state.refresh)
        return render(request, who, "promoted.html", result=result, rollback=is_rollback)

    async def routing_page(request: Request, who: dict[str, str]) -> Response:
        snap = state.snapshot()
        if snap.loaded is None:
            return render(request, who, "error.html", status=503, message=_no_config(snap))
        table = views.routing(snap.loaded)
        asked = {a: request.query_params.get(a, "") for a in table["attributes"]}
        tested = views.route_intent(snap.loaded, asked) if any(asked.values()) else None
        return render(request, who, "routing.html", routing=table, asked=asked, tested=tested)

    async def tenants_page(request: Request, who: dict[str, str]) -> Response:
        snap = state.snapshot()
        days = _int(request.query_params.get("days"), views.DEFAULT_DAYS, 1, 366)
        if days == views.DEFAULT_DAYS and snap.tenants is not None:
            rows, win = snap.tenants, snap.tenants_window  # computed with the snapshot
        else:
            win = views.last_days(snap, days)
            rows = await asyncio.to_thread(views.tenant_rows, snap, win)
        counts: dict[str, int] = {}
        for r in rows:
            key = r.verdict.verdict if r.verdict else "no_data"
            counts[key] = counts.get(key, 0) + 1
        verdict = request.query_params.get("verdict", "")
        if verdict:
            rows = [r for r in rows if (r.verdict.verdict if r.verdict else "no_data") == verdict]
        pages = max(1, -(-len(rows) // views.PAGE_SIZE))
        number = _int(request.query_params.get("page"), 1, 1, pages)
        shown = rows[(number - 1) * views.PAGE_SIZE : number * views.PAGE_SIZE]
        return render(
            request,
            who,
            "tenants.html",
            rows=shown,
            total=len(rows),
            first=(number - 1) * views.PAGE_SIZE + 1,
            counts=counts,
            page=number,
            pages=pages,
            win=win,
            days=days,
            verdict=verdict,
        )

    async def tenant_page(request: Request, who: dict[str, str]) -> Response:
        snap = state.snapshot()
        tenant = request.path_params["tenant"]
        days = _int(request.query_params.get("days"), 7, 1, 366)
        win = views.last_days(snap, days)
        found = views.tenant_rows(snap, win, only=tenant)
        row = found[0] if found else None
        if row is None or snap.loaded is None:
            return render(request, who, "error.html", status=404, message=f"No tenant {tenant!r}.")
        config = snap.loaded
        predictor = request.query_params.get("predictor") or row.predictor
        align, align_spec, rate_spec, per_day = [], None, None, []
        if predictor and snap.summary is not None and predictor in snap.summary.edges and win:
            # The map served now, as the verdict judges (older maps' rows would blur it).
            served = row.map_version if predictor == row.predictor else None
            hist = snap.summary.counts(
                predictor,
                tenant=tenant,
                role="live",
                tq_version=served,
                first=win.first,
                last=win.last,
            )
            align = views.alignment(hist, config, predictor)
            if align:
                align_spec = charts.alignment_chart(
                    align, f"{tenant} on {predictor}: relative error to R per score bin"
                )
            reference = config.references[config.spec.predictors[predictor].reference]
            # A tenant without thresholds is judged at the monitor's default levels: its
            # alert rate is shown there (R's thresholds of 5 %, 1 %, 0.5 %, 0.1 %).
            thresholds = row.thresholds or {
                f"R's top {a:.1%}": level_threshold(reference, a) for a in DEFAULT_LEVELS
            }
            per_day = [
                d
                for d in snap.summary.per_day(predictor, tenant, thresholds)
                if win.first <= d["day"] <= win.last
            ]
            promised = {name: float(1.0 - reference.cdf([t])[0]) for name, t in thresholds.items()}
            rate_spec = charts.alert_rate_chart(
                per_day, promised, f"{tenant}: alert rate per day at its thresholds"
            )
        return render(
            request,
            who,
            "tenant.html",
            row=row,
            predictor=predictor,
            align=align,
            align_spec=align_spec,
            rate_spec=rate_spec,
            per_day=per_day,
            days=days,
            win=win,
            predictors=sorted(snap.summary.edges) if snap.summary else [],
        )

    async def candidates_page(request: Request, who: dict[str, str]) -> Response:
        snap = state.snapshot()
        promotable: dict[str, list[str]] = {}
        newest = sorted(snap.versions, key=lambda v: v.record.published_at, reverse=True)
        for v in newest[:PROMOTABLE_VERSIONS]:
            if v.state in ("published", "retired"):
                try:
                    cfg = await asyncio.to_thread(state.config, v.record.id)
                except Exception:  # an unreadable version offers no promotion
                    continue
                for predictor in {p for r in cfg.router.scoring_rules for p in r.predictors}:
                    promotable.setdefault(predictor, []).append(v.record.id)
        return render(
            request, who, "candidates.html", results=snap.candidates, promotable=promotable
        )

    async def refresh_page(request: Request, who: dict[str, str]) -> Response:
        from muse.refresh import refresh_history

        last = _int(request.query_params.get("last"), 20, 1, 500)
        try:
            passes = await asyncio.to_thread(refresh_history, state.store, last)
        except StoreError as e:
            return render(request, who, "error.html", status=503, message=str(e))
        return render(request, who, "refresh.html", passes=list(reversed(passes)), last=last)

    async def health(request: Request) -> Response:
        """For probes: alive, and how fresh the snapshot is (its errors only signed in)."""
        snap = state.snapshot()
        return JSONResponse({"status": "ok", "as_of": snap.at, "errors": len(snap.errors)})

    async def root(request: Request) -> Response:
        return RedirectResponse("/fleet", status_code=303)

    routes = [
        Route("/", root),
        Route("/health", health),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/fleet", page(fleet_page)),
        Route("/promote", page(confirm), methods=["GET"]),
        Route("/promote", page(run_promotion), methods=["POST"]),
        Route("/rollback", page(confirm), methods=["GET"]),
        Route("/rollback", page(run_promotion), methods=["POST"]),
        Route("/routing", page(routing_page)),
        Route("/tenants", page(tenants_page)),
        Route("/tenants/{tenant}", page(tenant_page)),
        Route("/candidates", page(candidates_page)),
        Route("/refresh", page(refresh_page)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


#: No third-party origin is ever contacted; Vega compiles its expressions with
#: ``new Function`` (hence ``unsafe-eval``) and vega-embed injects its own styles.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _safe_next(target: str | None) -> str:
    """Only a path on this console (no open redirect to another site)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/fleet"
    return target


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(raw), low), high) if raw else default
    except ValueError:
        return default


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86_400:.0f} days ago"


#: Published versions the candidates page looks through for one where a candidate is live.
PROMOTABLE_VERSIONS = 5


def _no_keys(state: ConsoleState) -> str:
    snap = state.snapshot()
    why = "; ".join(snap.errors) if snap.errors else "no version is active yet"
    return (
        "Sign-in is unavailable: operators sign in with the active version's admin keys, and "
        f"no active version could be read ({why}). Promote one with `muse promote`, or fix "
        "the store; the console answers again at its next refresh."
    )


def _no_config(snap: Snapshot) -> str:
    return "No active version yet" + (f": {'; '.join(snap.errors)}" if snap.errors else ".")
