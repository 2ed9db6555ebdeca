"""The serving-side commands: validate, route, score, serve, auth keys."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from muse.cli import app
from muse.cli._common import ConfigArg, IntentOpt, err, fail, out, print_config_error
from muse.errors import MuseError

if TYPE_CHECKING:
    from muse.serving.server import ConnectionLimits


def _parse_intent(pairs: list[str]) -> dict[str, str]:
    intent: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--intent expects key=value, got {pair!r} (e.g. --intent tenant=bank1)")
        intent[key.strip()] = value.strip()
    return intent


def _parse_features(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as e:
            fail(f"cannot read features file {text[1:]!r}: {e.strerror}")
        except UnicodeDecodeError:
            fail(f"features file {text[1:]!r} is not UTF-8 text (expected a JSON object)")
    try:
        features = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"--features is not valid JSON: {e}")
    if not isinstance(features, dict):
        fail(f"--features must be a JSON object of feature → number, got {type(features).__name__}")
    return features


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config: schema, cross-references, artifacts, fingerprints, and that every
    model loads and declares its features. Exit 0, or 2 listing every problem."""
    from muse.deployment import check_config

    loaded, issues = check_config(config)
    if loaded is None:
        print_config_error(config, issues)
    # One unwrapped line, whatever the path's length: scripts grep for it.
    out.print(
        f"{escape(str(config))}: valid (version {escape(loaded.version)})",
        highlight=False,
        soft_wrap=True,
    )
    table = Table()
    for col in ("predictor", "experts", "fingerprint", "default map", "tenant maps"):
        table.add_column(col, min_width=19 if col == "fingerprint" else None)
    for name, p in loaded.spec.predictors.items():
        tq = loaded.transforms[name]
        table.add_row(
            name,
            ", ".join(e.model for e in p.experts),
            loaded.fingerprints[name],
            tq.default.label,
            ", ".join(f"{t}:{a.label}" for t, a in tq.tenants.items()) or "-",
        )
    out.print(table)


@app.command()
def route(
    config: ConfigArg,
    intent: IntentOpt,
    key: Annotated[
        str | None,
        typer.Option(
            help="For a canary split: the event's entity key (its stickyBy value) or event "
            "id, to show which arm serves it."
        ),
    ] = None,
) -> None:
    """Show which predictor serves an intent and which shadow it.

    A rule that splits traffic prints its arms; the live predictor is then the arm of
    ``--key``, or of the intent's own stickyBy attribute, else null (it depends on the event).
    """
    from muse.config import load_config

    try:
        parsed = _parse_intent(intent)
        r = load_config(config).router.route(parsed)
    except MuseError as e:
        fail(str(e))
    doc: dict[str, Any] = {"live": r.live, "shadows": list(r.shadows), "rule": r.rule}
    if r.split is not None:
        sticky = r.split.sticky_by
        key = key if key is not None else (parsed.get(sticky) if sticky is not None else None)
        doc["live"] = None if key is None else r.live_for(key)
        doc["shadows"] = [s for s in r.shadows if s != doc["live"]]
        doc["split"] = {
            "arms": [
                {"predictor": a.predictor, "weight": a.weight, "share": share}
                for a, share in zip(r.split.arms, r.split.shares, strict=True)
            ],
            "stickyBy": sticky,
            "salt": r.split.salt,
        }
    out.print_json(json.dumps(doc))


@app.command()
def score(
    config: ConfigArg,
    intent: IntentOpt,
    features: Annotated[
        str, typer.Option("--features", "-f", help="Features as a JSON object, or @file.json.")
    ],
    event_id: Annotated[str | None, typer.Option(help="Event id to echo back.")] = None,
    reasons: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Also print the live score's top N reasons: each feature's contribution to "
            "the final score (tree models' TreeSHAP, through T^C, A and T^Q).",
        ),
    ] = None,
) -> None:
    """Score one event through the deployment, printing live and shadow results as JSON."""
    from muse.service import ScoringService

    parsed_intent = _parse_intent(intent)
    parsed_features = _parse_features(features)
    explained = None
    # One id for both passes: an event a canary split places by its id (no sticky key)
    # must land on the same arm when it is explained as when it is scored.
    key = event_id if event_id is not None or reasons is None else f"cli-{uuid.uuid4().hex}"
    try:
        service = ScoringService.from_config(config)
        result = service.score(parsed_intent, parsed_features, event_id=key)
        if reasons is not None:
            explained = service.explain(parsed_intent, parsed_features, event_id=key, top=reasons)
    except MuseError as e:
        fail(str(e))

    def row(s: Any) -> dict[str, Any]:
        return {
            "predictor": s.predictor,
            "score": s.score,
            "raw": s.raw,
            "experts": dict(s.experts),
            "fingerprint": s.fingerprint,
            "tq_version": s.tq_version,
        }

    doc: dict[str, Any] = {
        "event_id": event_id,
        "score": result.score,
        "config_version": result.config_version,
        "live": row(result.live),
        "shadows": [row(s) for s in result.shadows],
        "shadow_errors": dict(result.shadow_errors),
    }
    if result.arm is not None:
        doc["arm"] = result.arm
    if explained is not None:
        doc["reasons"] = [
            {"feature": r.feature, "contribution": r.contribution} for r in explained.top
        ]
        doc["reasons_base"] = explained.base
        doc["reasons_predictor"] = explained.predictor
    out.print_json(json.dumps(doc))


@app.command()
def serve(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Deployment config (muse.yaml); or give --store instead.", show_default=False
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Serve this deployment store's active version and follow it (a folder, or "
            "an fsspec URL): promotions reach this server by `muse promote`.",
            envvar="MUSE_STORE",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes: each loads the models and is a replica of its own; "
            "they prepare and switch versions together.",
            min=1,
        ),
    ] = 1,
    lake: Annotated[
        str | None,
        typer.Option(
            help="With --store: the score lake every version writes to (folder or fsspec "
            "URL); needed when the versions' lake is a relative folder.",
            show_default=False,
            envvar="MUSE_LAKE",
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="With --store: local folder versions are unpacked into "
            "(default: $MUSE_CACHE, else ~/.cache/muse/versions).",
            show_default=False,
        ),
    ] = None,
    replica: Annotated[
        str | None,
        typer.Option(
            help="With --store: this replica's name in the store (default: <host>-<pid>; "
            "with several workers each is <name>-<pid>).",
            show_default=False,
            envvar="MUSE_REPLICA",
        ),
    ] = None,
    poll: Annotated[
        float,
        typer.Option(
            help="With --store: seconds between two polls of the store (below the "
            "promoters' --switch-delay).",
            min=0.01,
            max=60.0,
        ),
    ] = 0.25,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a request may take to arrive, headers and body, from its first "
            "byte (a connection's opening, for its first): slower ones get 408 and the "
            "connection is closed (slowloris).",
            min=0.1,
            max=600.0,
            envvar="MUSE_REQUEST_TIMEOUT",
        ),
    ] = 10.0,
    keep_alive: Annotated[
        float,
        typer.Option(help="Seconds an idle connection is kept between requests.", min=0.1),
    ] = 5.0,
    max_connections: Annotated[
        int | None,
        typer.Option(
            help="Open connections at most; beyond, requests get 503 (default: no limit "
            "but the OS's: idle connections close by --request-timeout).",
            min=1,
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve over HTTP until SIGTERM/SIGINT: a config file (SIGHUP reloads it), or a
    deployment store's active version, following its promotions (--store)."""
    import logging

    from muse.backends import ModelPool
    from muse.deployment import check_config
    from muse.serving.server import ConnectionLimits, curl_example
    from muse.serving.server import serve as run_server

    limits = ConnectionLimits(request_timeout, keep_alive, max_connections)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if (config is None) == (store is None):
        fail("give a config file (muse serve muse.yaml) or a deployment store (--store URL)")
    if config is None:
        assert store is not None
        _serve_store(store, host, port, workers, lake, cache, replica, poll, log_level, limits)
        return
    for flag, env, value in (
        ("--lake", "MUSE_LAKE", lake),
        ("--cache", None, cache),
        ("--replica", "MUSE_REPLICA", replica),
    ):
        if value is not None:
            given = f"{flag} (or ${env})" if env else flag
            fail(f"{given} goes with --store (a config file names its own lake)")
    pool = ModelPool()
    # Fail fast, with every problem, before binding: the checks the server's start repeats.
    loaded, issues = check_config(config, pool)
    if loaded is None:
        print_config_error(config, issues)
    if loaded.spec.auth is None:
        fail("the config has no `auth` section: give API key hashes, or `auth: none` for local use")
    if loaded.spec.auth == "none":
        err.print(
            "[bold yellow]WARNING: auth: none — authentication is OFF. Anyone who can reach "
            f"{escape(host)}:{port} can score as any tenant and reload the config.[/]",
            soft_wrap=True,
        )
    out.print(
        f"muse: serving {escape(str(config))} on http://{host}:{port} — try:", highlight=False
    )
    out.print(curl_example(config, host, port), highlight=False, markup=False, soft_wrap=True)
    run_server(
        config,
        host,
        port,
        workers,
        log_level,
        pool=pool if workers == 1 else None,
        limits=limits,
    )


def _serve_store(
    url: str,
    host: str,
    port: int,
    workers: int,
    lake: str | None,
    cache: Path | None,
    replica: str | None,
    poll: float,
    log_level: str,
    limits: ConnectionLimits,
) -> None:
    import os

    from muse.fleet import DeploymentStore
    from muse.serving.app import StoreSource
    from muse.serving.server import serve as run_server

    store = DeploymentStore(url)
    try:
        active = store.active()
    except MuseError as e:
        fail(str(e))
    if active is None:
        fail(
            f"{url} has no active version yet: `muse publish CONFIG --store {url}`, then "
            f"`muse promote VERSION --store {url}`"
        )
    folder = cache or Path(
        os.environ.get("MUSE_CACHE") or Path.home() / ".cache" / "muse" / "versions"
    )
    source = StoreSource(url=url, cache=folder, lake=lake, replica=replica, poll_s=poll)
    out.print(
        f"muse: serving {escape(url)} (active: {escape(str(active.get('version')))}) on "
        f"http://{host}:{port}",
        highlight=False,
        soft_wrap=True,
    )
    run_server(None, host, port, workers, log_level, source=source, limits=limits)


auth_app = typer.Typer(
    help="API keys: make them and hash them for the config.", no_args_is_help=True
)
app.add_typer(auth_app, name="auth")


@auth_app.command("new-key")
def new_key() -> None:
    """Print a new random API key and the hash to put in the config's `auth` section."""
    import secrets

    from muse.serving_config import hash_api_key

    key = "muse_" + secrets.token_urlsafe(32)
    out.print(f"key:  {key}", highlight=False)
    out.print(f"hash: {hash_api_key(key)}", highlight=False)


@auth_app.command("hash-key")
def hash_key(
    key: Annotated[str, typer.Argument(help="The API key, or - to read it from standard input.")],
) -> None:
    """Print the hash of an existing API key (what the config stores)."""
    from muse.serving_config import hash_api_key

    if key == "-":
        key = sys.stdin.readline().strip()
    if not key:
        fail("empty API key")
    out.print(hash_api_key(key), highlight=False)
