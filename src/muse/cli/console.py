"""``muse console``: the operator console, a web app of the control plane."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from muse.cli import app
from muse.cli._common import err, fail, out
from muse.errors import MuseError
from muse.extras import require


@app.command()
def console(
    store: Annotated[
        str,
        typer.Option(
            "--store",
            help="Deployment store: a folder, or an fsspec URL.",
            envvar="MUSE_STORE",
            show_default=False,
        ),
    ],
    lake: Annotated[
        str | None,
        typer.Option(
            help="Score lake (default: the active version's lake.url).", envvar="MUSE_LAKE"
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels (Parquet file, folder or glob: event_id, label, labelled_at): adds "
            "the ranking checks (recall at FPR) to the candidates' comparisons.",
            show_default=False,
        ),
    ] = None,
    replica: Annotated[
        list[str] | None,
        typer.Option(
            "--replica",
            help="A replica's base URL to probe (repeat for each; they also report to the "
            "store by themselves).",
        ),
    ] = None,
    replica_key: Annotated[
        str | None,
        typer.Option(
            help="Admin API key the probed replicas take.",
            envvar="MUSE_CONSOLE_REPLICA_KEY",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8080,
    cache: Annotated[
        Path | None,
        typer.Option(help="Folder versions are unpacked into (default: a temporary one)."),
    ] = None,
    refresh: Annotated[
        float, typer.Option(help="Seconds between reads of the store, lake and replicas.", min=0.5)
    ] = 5.0,
    secret: Annotated[
        str | None,
        typer.Option(
            help="Signs session cookies; give every console replica the same one (default: "
            "random, sessions end with the process).",
            envvar="MUSE_CONSOLE_SECRET",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the operator console: versions and replicas (promote, roll back), routes and an
    intent tester, tenants' alignment and drift, candidates against live, the refresh log.
    Sign in with an admin API key of the active version."""
    for module in ("jinja2", "itsdangerous", "python_multipart", "duckdb"):
        require(module, "muse console")
    import uvicorn

    from muse.console import ConsoleState
    from muse.console.app import create_app
    from muse.fleet import DeploymentStore

    if labels is not None and not labels.exists():
        fail(f"labels {labels} do not exist")
    folder = cache or Path(tempfile.mkdtemp(prefix="muse-console-"))
    try:
        state = ConsoleState(
            DeploymentStore(store),
            folder,
            lake=lake,
            labels=None if labels is None else str(labels),
            replicas=replica or (),
            replica_key=replica_key,
            refresh_s=refresh,
        )
    except MuseError as e:
        fail(str(e))
    application = create_app(state, secret=secret or secrets.token_urlsafe(32))
    out.print(f"muse console on http://{host}:{port}/ (store {store})", highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print("warning: the console listens beyond this machine: serve it behind TLS")
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
