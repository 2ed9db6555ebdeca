"""``muse refresh``: the automated calibration refresh, one pass or in a loop.

A pass (:func:`muse.refresh.run_refresh`) judges every live tenant of the store's active
version on the lake, refits the drifting ones, validates the candidates on held-out events
and promotes those that pass; this command prints one line per decision and how the pass
ended. ``--history`` prints the passes recorded in the store instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from muse.cli import app
from muse.cli._common import err, fail, out
from muse.cli.fleet import ByOpt, StoreOpt
from muse.errors import MuseError


@app.command()
def refresh(
    store: StoreOpt,
    lake: Annotated[
        str | None,
        typer.Option(
            help="The score lake replicas write to (default: the active version's own, when "
            "absolute).",
            envvar="MUSE_LAKE",
            show_default=False,
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Where versions are unpacked (default: $MUSE_CACHE, else a temp dir).",
            show_default=False,
        ),
    ] = None,
    tenant: Annotated[
        list[str] | None, typer.Option("--tenant", "-t", help="Only this tenant (repeatable).")
    ] = None,
    predictor: Annotated[
        list[str] | None,
        typer.Option("--predictor", "-p", help="Only this live predictor (repeatable)."),
    ] = None,
    window_days: Annotated[
        float, typer.Option(help="Days of live traffic the monitor judges.", min=0.01)
    ] = 7.0,
    history_days: Annotated[
        float, typer.Option(help="Days of raw aggregates a refit may use.", min=0.01)
    ] = 28.0,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Judge as of this moment (ISO date or datetime, UTC): the windows end there "
            "(replaying a past pass, a backfilled lake).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print; publish and promote nothing.")
    ] = False,
    watch: Annotated[
        float | None,
        typer.Option(
            help="Run a pass every WATCH seconds until stopped.", min=0.01, show_default=False
        ),
    ] = None,
    max_passes: Annotated[
        int | None,
        typer.Option(help="With --watch: stop after this many passes.", min=1, show_default=False),
    ] = None,
    history: Annotated[
        int | None,
        typer.Option(
            help="Print the last N passes recorded in the store, and do nothing else.",
            min=1,
            show_default=False,
        ),
    ] = None,
    by: ByOpt = None,
) -> None:
    """Judge every live tenant on the lake, refit the drifting ones, validate, promote.
    Exit 1 when a promotion did not go through, 2 on bad input."""
    import os

    from muse.fleet import DeploymentStore
    from muse.refresh import refresh_history, run_refresh

    now = None
    if as_of is not None:
        try:
            now = datetime.fromisoformat(as_of)
        except ValueError:
            fail(f"--as-of must be an ISO date or datetime (2026-12-01T06:00), got {as_of!r}")
        now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    try:
        s = DeploymentStore(store)
        if history is not None:
            _print_history(refresh_history(s, history))
            return
        folder = cache or Path(
            os.environ.get("MUSE_CACHE") or Path.home() / ".cache" / "muse" / "versions"
        )
        passes = 0
        while True:
            result = run_refresh(
                s,
                cache=folder,
                lake=lake,
                tenants=tenant or None,
                predictors=predictor or None,
                window_days=window_days,
                history_days=history_days,
                dry_run=dry_run,
                now=now,
                by=by,
                say=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True),
            )
            _print_pass(result.to_dict())
            passes += 1
            if watch is None or (max_passes is not None and passes >= max_passes):
                break
            time.sleep(watch)
    except MuseError as e:
        fail(str(e))
    if result.published and not result.promoted:
        raise typer.Exit(1)


def _print_pass(doc: dict[str, Any]) -> None:
    """One line per decision (plain columns: scripts read them), then the outcome."""
    out.print(
        f"{'PREDICTOR':<14}  {'TENANT':<12}  {'VERDICT':<14}  {'ACTION':<7}  "
        f"{'MAP':<20}  {'POLICY':<20}  HELD-OUT ERROR  WHY",
        highlight=False,
        soft_wrap=True,
    )
    for d in doc["decisions"]:
        maps = d["old_version"] + (f" -> {d['new_version']}" if d["new_version"] else "")
        errs = (
            f"{d['old_error']:.1%} -> {d['new_error']:.1%}"
            if d["old_error"] is not None and d["new_error"] is not None
            else "-"
        )
        why = d["why"] or d["reason"]
        out.print(
            f"{d['predictor']:<14}  {d['tenant']:<12}  {d['verdict']:<14}  {d['action']:<7}  "
            f"{maps:<20}  {d['policy'] or '-':<20}  {errs:<14}  {why}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    out.print(
        f"{doc['at'][:19]} pass over {doc['from_version']}: {doc['outcome']}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _print_history(passes: list[dict[str, Any]]) -> None:
    if not passes:
        out.print("no refresh pass recorded yet", highlight=False)
        return
    for doc in passes:
        refits = [d for d in doc["decisions"] if d["action"] == "refit"]
        failed = [d for d in doc["decisions"] if d["action"] == "failed"]
        drifting = [d for d in doc["decisions"] if d["verdict"] == "drifting"]
        out.print(
            f"{doc['at'][:19]}  by {doc['by']}  over {doc['from_version']}: "
            f"{len(doc['decisions'])} judged, {len(drifting)} drifting, {len(refits)} refitted, "
            f"{len(failed)} failed — {doc['outcome']}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        for d in drifting:
            out.print(
                f"  {d['predictor']}/{d['tenant']}: {d['action']}"
                + (f" {d['old_version']} -> {d['new_version']}" if d["new_version"] else "")
                + f" ({d['why'] or d['reason']})",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
