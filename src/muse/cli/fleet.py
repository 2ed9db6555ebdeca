"""The fleet commands: publish a version, list versions, promote, roll back.

``muse publish`` prints the new version's id as the last line of its standard output, so
scripts capture it (``V=$(muse publish muse.yaml --store s3://… | tail -n1)``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from muse.cli import app
from muse.cli._common import ConfigArg, err, fail, out, print_config_error
from muse.errors import ConfigError, MuseError

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        help="Deployment store: a folder, or an fsspec URL (s3://bucket/muse, gs://…).",
        envvar="MUSE_STORE",
        show_default=False,
    ),
]
ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by", help="Who acts, for the audit log (default: $MUSE_ACTOR, else user@host)."
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(help="Seconds to wait for every replica to prepare the version.", min=0.1),
]
DelayOpt = Annotated[
    float,
    typer.Option(
        help="Seconds between the decision and the fleet's switch (longer than the replicas' "
        "poll interval).",
        min=0.0,
    ),
]


@app.command()
def publish(config: ConfigArg, store: StoreOpt, by: ByOpt = None) -> None:
    """Validate CONFIG as a server would and store it, with every file it names, as an
    immutable version. Prints the version id last. Exit 2 listing every problem."""
    from muse.fleet import DeploymentStore
    from muse.fleet.publish import publish as run

    try:
        done = run(config, DeploymentStore(store), by=by)
    except ConfigError as e:
        print_config_error(config, e.issues)
    except MuseError as e:
        fail(str(e))
    v = done.version
    if done.new:
        err.print(
            f"published {escape(str(config))} (config version {escape(v.config_version)}): "
            f"{len(v.files)} files, {done.uploaded_files} new ({done.uploaded_bytes:,} bytes)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err.print(
            f"already published on {v.published_at} by {escape(v.published_by)}", highlight=False
        )
    out.print(v.id, highlight=False, soft_wrap=True)


@app.command()
def versions(
    store: StoreOpt,
    replicas_too: Annotated[
        bool,
        typer.Option(
            "--replicas",
            help="Also one line per live replica: the version it serves, when it was last "
            "heard from, its last refusal.",
        ),
    ] = False,
) -> None:
    """Every published version and its state: published, preparing, active, retired."""
    from muse.fleet import DeploymentStore
    from muse.fleet.promotion import live_replicas, version_states

    try:
        s = DeploymentStore(store)
        states = version_states(s)
        replicas = live_replicas(s)
    except MuseError as e:
        fail(str(e))
    # Plain columns, one line per version, never wrapped or cut: scripts read them too.
    width = max([len(st.record.config_version) for st in states] + [6])
    out.print(
        f"{'VERSION':<18}  {'STATE':<9}  {'CONFIG':<{width}}  PUBLISHED (BY)  ACTIVATED (BY)  RETIRED",
        highlight=False,
        soft_wrap=True,
    )
    for st in states:
        r = st.record
        activated = f"{st.activated_at[:19]} ({st.activated_by})" if st.activated_at else "-"
        out.print(
            f"{r.id:<18}  {st.state:<9}  {r.config_version:<{width}}  "
            f"{r.published_at[:19]} ({r.published_by})  {activated}  {(st.retired_at or '-')[:19]}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    serving: dict[str, int] = {}
    for doc in replicas.values():
        v = str(doc.get("version"))
        serving[v] = serving.get(v, 0) + 1
    out.print(
        f"{len(replicas)} live replica(s)"
        + (": " + ", ".join(f"{n} on {v}" for v, n in sorted(serving.items())) if serving else ""),
        highlight=False,
    )
    if replicas_too:
        for name, doc in sorted(replicas.items()):
            refusal = doc.get("last_refusal") or {}
            refused = (
                f"  last refused {refusal.get('version')} at {str(refusal.get('at'))[:19]}: "
                + " ".join(str(refusal.get("detail", "")).split())[:240]
                if refusal
                else ""
            )
            out.print(
                f"  {name}  {doc.get('version')}  heard {str(doc.get('at'))[:19]}{refused}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def _run_promotion(
    store: str, version: str | None, by: str | None, timeout: float, delay: float
) -> None:
    """Promote ``version`` (None: roll back), print how it ended; exit 1 unless activated."""
    from muse.fleet import DeploymentStore
    from muse.fleet.promotion import promote, rollback

    options: dict[str, Any] = {
        "by": by,
        "timeout_s": timeout,
        "switch_delay_s": delay,
        "on_progress": lambda m: err.print(escape(m), highlight=False),
    }
    try:
        s = DeploymentStore(store)
        result = rollback(s, **options) if version is None else promote(s, version, **options)
    except MuseError as e:
        fail(str(e))
    if result.activated:
        out.print(
            f"activated {result.version} at {result.activate_at} "
            f"({len(result.prepared)} replica(s) prepared in {result.seconds:.2f} s)",
            highlight=False,
        )
        return
    for replica, why in sorted(result.refused.items()):
        err.print(f"  - {escape(replica)} refused: {escape(why)}", highlight=False, soft_wrap=True)
    for replica in result.missing:
        err.print(f"  - {escape(replica)} did not answer in time", highlight=False)
    fail(
        f"{result.version} was not activated ({result.state}); every replica still serves the "
        "active version",
        code=1,
    )


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Version id (muse versions).", show_default=False)],
    store: StoreOpt,
    by: ByOpt = None,
    timeout: TimeoutOpt = 120.0,
    switch_delay: DelayOpt = 1.0,
) -> None:
    """Make VERSION active on every replica: all prepare it beside their live version, then
    all switch together. Exit 1 (nothing switched) if any replica refuses or times out."""
    _run_promotion(store, version, by, timeout, switch_delay)


@app.command()
def rollback(
    store: StoreOpt,
    by: ByOpt = None,
    timeout: TimeoutOpt = 120.0,
    switch_delay: DelayOpt = 1.0,
) -> None:
    """Promote the version that was active before the current one (same two phases)."""
    _run_promotion(store, None, by, timeout, switch_delay)
