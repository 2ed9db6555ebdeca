"""``run_demo``: the whole model lifecycle on generated data, paper §3's three scenarios and
§5's automated refresh.

Go-live, then scenario 1 (a new tenant, Fig. 4), scenario 2 (2 → 3 experts, Fig. 6),
scenario 3 (calibration, Table 1) and scenario 4 (drift repaired by the automated refresh,
§5), then the summary: what each tenant would have seen at
its thresholds. Everything lands in one folder — the deployment (config, models, maps,
lake, labels), the reports and ``summary.md`` — so the run can be inspected, and every
command it echoes can be re-run from that folder.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from muse.demo import calibration, drift, model_update, new_tenant
from muse.demo.calibration import CalibrationResult
from muse.demo.drift import DriftResult
from muse.demo.golive import go_live
from muse.demo.model_update import ModelUpdateResult
from muse.demo.new_tenant import NewTenantResult
from muse.demo.operator import CommandRunner, Operator
from muse.demo.p15 import FPR, P15
from muse.demo.summary import AlertRow, rich_table, write_summary
from muse.demo.world import FOCUS, NEW_TENANT, make_world
from muse.errors import MuseError
from muse.evaluation.calibration import ENSEMBLE
from muse.fitting import required_samples

__all__ = ["DemoResult", "OutputExistsError", "run_demo"]

#: What the demo writes into its folder; ``force`` removes these and nothing else.
OUTPUTS = ("deployment", "reports", "summary.md")
#: The sample-size target of every fit (``muse fit quantiles`` defaults): Eq. 5 at these.
ALERT_RATE, REL_ERROR, HOLDOUT = 0.005, 0.2, 0.2


class OutputExistsError(MuseError, FileExistsError):
    """The output folder holds files already; the demo does not mix runs."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What each scenario found, the summary rows and every command run, in order."""

    out: Path
    new_tenant: NewTenantResult
    model_update: ModelUpdateResult
    calibration: CalibrationResult
    drift: DriftResult
    rows: tuple[AlertRow, ...]
    commands: tuple[str, ...]
    forced_fits: bool
    seconds: float


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    force: bool = False,
    console: Console | None = None,
    commands: CommandRunner | None = None,
) -> DemoResult:
    """Run the demo into ``out``; deterministic given ``seed`` and ``scale``.

    ``scale`` multiplies every event count (1.0: each tenant sends 25,000 events a week,
    enough for Eq. 5 at a 0.5 % alert rate within ±20 %). Below that the fits are run with
    ``--force``, and the output says so. ``commands`` runs each ``muse`` command the demo
    types (default: the console script, in a subprocess; ``muse demo`` runs them in its
    own process with :func:`muse.cli.invoke`). Raises :class:`OutputExistsError` when ``out``
    holds files and ``force`` is false.
    """
    if not (math.isfinite(scale) and 0.0 < scale <= 10.0):
        raise ValueError(f"scale must be in (0, 10], got {scale!r}")
    started = time.monotonic()
    _prepare(out, force)
    console = console or Console()
    op = Operator(out.resolve(), console, commands)
    world = make_world(seed, scale)

    required = required_samples(ALERT_RATE, REL_ERROR)
    fit_part = world.events_per_tenant_week * (1.0 - HOLDOUT)
    # 2 % below the weekly mean leaves room for the week-to-week noise of a tenant's count.
    forced = fit_part * 0.98 < required
    fit_args = ("--force",) if forced else ()
    op.section(f"muse demo — seed {seed}, scale {scale:g}")
    op.say(f"every command below runs from {out} (cd there to re-run one)")
    op.say(
        f"{len(world.tenants)} tenants × {world.events_per_tenant_week:,} events a week. "
        + (
            f"At this scale a week is below the {required:,} events Eq. 5 asks for (a = "
            f"{ALERT_RATE:.1%}, δ = {REL_ERROR:.0%}), so every fit gets --force: its tail is noise."
            if forced
            else f"Every fit satisfies Eq. 5 ({required:,} events at a = {ALERT_RATE:.1%}, "
            f"δ = {REL_ERROR:.0%}) without --force."
        )
    )

    go_live(op, world, seed, fit_args)
    s1 = new_tenant.run(op, world, fit_args)
    s2 = model_update.run(op, world, seed, fit_args)
    s3 = calibration.run(op)
    s4 = drift.run(op, world)

    rows = (*s1.rows, *s2.rows, *s4.rows)
    seconds = time.monotonic() - started
    result = DemoResult(
        out=out,
        new_tenant=s1,
        model_update=s2,
        calibration=s3,
        drift=s4,
        rows=rows,
        commands=tuple(op.commands),
        forced_fits=forced,
        seconds=seconds,
    )
    op.section("Summary")
    console.print(rich_table(rows))
    lines = findings(result, seed, scale)
    for line in lines:
        op.say(f"- {line}")
    path = write_summary(out / "summary.md", rows, lines)
    op.say(f"wrote {op.rel(path.resolve())}; the demo took {seconds:.0f} s")
    return result


def findings(result: DemoResult, seed: int, scale: float) -> list[str]:
    """One line per scenario result, for the terminal and ``summary.md`` (which holds no
    timing or absolute path, so two runs with the same seed write the same file)."""
    s1, s2, s3, s4 = result.new_tenant, result.model_update, result.calibration, result.drift
    fig6 = s2.fig6
    refusal = next(
        (ln.strip(" -") for ln in s2.refusal.splitlines() if "fingerprint mismatch" in ln),
        s2.refusal,
    ).replace(f"{result.out.resolve()}/", "")
    ensemble = {r.name: r for r in s3.live}[ENSEMBLE]
    gate = "passed" if s2.gate_exit == 0 else "FAILED"
    return [
        f"Scenario 1 (Fig. 4): {NEW_TENANT}'s largest tail error "
        f"{s1.tail_error['default-v0']:.0%} on p1's cold-start map, "
        f"{s1.tail_error['v1']:.0%} on its own map (reports/1-new-tenant/).",
        f"Scenario 2 (Fig. 6), {FOCUS}: the p1.5 config is refused — {refusal}",
        "Scenario 2: largest |rel. error| per bin (proven beyond noise): "
        + ", ".join(
            f"{k} {fig6.max_error[k]:.0%} ({fig6.proven_error[k]:.0%})" for k in ("p1", P15, "p2")
        )
        + f"; recall at {FPR:.0%} FPR: "
        + ", ".join(f"{k} {fig6.recall[k]:.4f}" for k in ("p1", P15, "p2"))
        + " (reports/2-model-update/).",
        f"Scenario 2: the model-CI gate {gate} for {FOCUS}"
        + ("; p2 was promoted." if s2.promoted else "; p2 was not promoted."),
        f"Scenario 3 (Table 1), {FOCUS} live data: ensemble ECE {ensemble.ece_raw:.4f} → "
        f"{ensemble.ece_corrected:.4f}, Brier {ensemble.brier_raw:.5f} → "
        f"{ensemble.brier_corrected:.5f} with posterior correction (reports/3-calibration/).",
        f"Scenario 4 (§5, drift): {s4.tenant}'s alert rate at its review threshold "
        f"{s4.before.observed['review']:.2%} in weeks {s4.before.week}-{s4.after.week - 1} (contract "
        f"{s4.before.expected['review']:.2%}); one unattended refresh pass: {s4.action}"
        + (f" ({s4.policy})" if s4.policy else "")
        + f"; week {s4.after.week}: {s4.after.observed['review']:.2%}.",
        f"Reproduce: muse demo --seed {seed} --scale {scale:g}"
        + (" (fits forced: below Eq. 5's sample size)" if result.forced_fits else "")
        + f"; {len(result.commands)} muse commands, echoed above as run from the output folder.",
    ]


def _prepare(out: Path, force: bool) -> None:
    """Refuse a folder holding files unless ``force``; then clear the demo's own outputs."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(
                f"--out {out} is not empty; choose another folder or pass --force to replace "
                f"the demo's outputs in it ({', '.join(OUTPUTS)})"
            )
        for name in OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
