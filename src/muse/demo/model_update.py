"""Scenario 2 (paper §3.2, Fig. 6): p1 = {m1, m2} becomes p2 = {m1, m2, m3}, live.

The lifecycle of docs/lifecycle.md, steps 1–8, for every tenant at once: train m3, add p2
in shadow with its cold-start map, fit p2's tenant maps from its shadow rows, show that the
shortcut (p1.5) is refused and why, let p2 shadow a week on its own maps, run the model-CI
gate on that week, and promote p2 with a config change and a reload. No tenant changes a
threshold; the alert rates at its thresholds stay where the contract puts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from muse.demo.deployment import Stage
from muse.demo.golive import cold_start, train
from muse.demo.operator import Operator
from muse.demo.p15 import Fig6, figure6, refuse
from muse.demo.summary import AlertRow, alert_row
from muse.demo.world import FOCUS, TENANTS, Week, World, iso_day, week_start
from muse.scorelog import Window

__all__ = ["ModelUpdateResult", "run"]


@dataclass(frozen=True, slots=True)
class ModelUpdateResult:
    """``refusal``: the reload error of the p1.5 config. ``gate_exit``: the exit code of
    ``muse report compare`` (0 = pass). ``promoted``: p2 went live (only after a pass)."""

    refusal: str
    fig6: Fig6
    gate_exit: int
    promoted: bool
    rows: tuple[AlertRow, ...]


def run(op: Operator, world: World, seed: int, fit_args: tuple[str, ...]) -> ModelUpdateResult:
    op.section("Scenario 2 — from 2 experts to 3: p1 → p2, via shadow (paper Fig. 6)")
    op.say(
        "account takeover grows; m1 and m2 never see distance, device risk or e-mail age. "
        "m3 does, and p2 = p1's experts + m3 shares m1 and m2 with p1 (loaded once, run once)."
    )
    train(op, world, ("m3",), seed)
    op.write_config(Stage.P2_SHADOW)
    cold_start(op, world, "p2")
    op.muse("validate", op.config)
    op.reload()
    op.serve(Week.SHADOW, world.week(Week.SHADOW), " — p2 in shadow on its default map")
    op.muse(
        "fit",
        "quantiles",
        op.config,
        "-p",
        "p2",
        "--all-tenants",
        "--role",
        "shadow",
        "--since",
        iso_day(Week.SHADOW),
        "--until",
        iso_day(Week.GATE),
        *fit_args,
    )
    refusal = refuse(op)
    op.say("the right way: p2 keeps its own, freshly fitted maps")
    op.muse("validate", op.config)
    op.reload()
    op.serve(Week.GATE, world.week(Week.GATE), " — p2 in shadow on its own maps")
    fig6 = figure6(op, Week.GATE)

    op.say("the model-CI gate, on the week p2 shadowed with its own maps:")
    gate = op.muse(
        "report",
        "compare",
        op.config,
        "--live",
        "p1",
        "--candidate",
        "p2",
        "-t",
        FOCUS,
        "--labels",
        op.labels,
        "--since",
        iso_day(Week.GATE),
        "--until",
        iso_day(Week.GATE + 1),
        "--out",
        op.reports / "2-model-update" / "gate",
        expect=(0, 1),
    )
    if gate != 0:
        op.say("the gate failed: p2 is not promoted, p1 keeps serving")
        return ModelUpdateResult(refusal, fig6, gate, False, fig6.rows)

    op.say("the gate passed: promote p2 — one scoring rule changes, no tenant does anything")
    op.write_config(Stage.PROMOTED)
    op.muse("validate", op.config)
    op.reload()
    op.serve(Week.PROMOTED, world.week(Week.PROMOTED), " — p2 live")
    op.muse(
        "report",
        "alignment",
        op.config,
        "-p",
        "p2",
        "-t",
        FOCUS,
        "--since",
        iso_day(Week.PROMOTED),
        "--out",
        op.reports / "2-model-update" / "after-promotion",
    )
    window = Window(week_start(Week.PROMOTED), week_start(Week.PROMOTED + 1))
    with op.reader() as reader:
        after = tuple(
            alert_row(
                tenant,
                "p2 (live) after promotion",
                Week.PROMOTED,
                reader.scores("p2", tenant, role="live", window=window).column("score").to_numpy(),
            )
            for tenant in TENANTS
        )
    return ModelUpdateResult(refusal, fig6, gate, True, fig6.rows + after)
