"""Scenario 4 (paper §5, its future work): drift on one tenant, repaired unattended.

From week 8 shop3's traffic shifts — riskier merchants and devices, twice the fraud — while
its map was fitted before. The deployment moves to a deployment store (as a fleet serves
it), weeks 8 and 9 are served, and one ``muse refresh`` pass, with no operator choosing
anything, finds shop3 drifting, refits its map on the policy's choice of days, validates it
on held-out events and promotes the new version; week 10 is served by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from muse.demo.operator import Operator
from muse.demo.summary import AlertRow, alert_row
from muse.demo.world import DRIFTING, Week, World, iso_day, week_start
from muse.fleet import DeploymentStore
from muse.scorelog import Window

__all__ = ["DriftResult", "run"]


@dataclass(frozen=True, slots=True)
class DriftResult:
    """The drifting tenant's alert-rate rows before and after the pass, and what the pass
    decided for it (the audit record's decision)."""

    tenant: str
    before: AlertRow
    after: AlertRow
    action: str
    policy: str | None

    @property
    def rows(self) -> tuple[AlertRow, ...]:
        return (self.before, self.after)


def run(op: Operator, world: World) -> DriftResult:
    op.section("Scenario 4 — drift on one tenant, repaired unattended (paper §5)")
    op.say(
        f"from week {Week.DRIFT} {DRIFTING}'s traffic shifts (riskier merchants and devices, "
        "twice the fraud) while its map was fitted before: its alert rates leave the contract"
    )
    store_path = op.deployment / "store"
    cache = op.deployment / "store-cache"
    op.say("the deployment moves to a deployment store, as a fleet of replicas serves it")
    op.muse("publish", op.config, "--store", store_path)
    store = DeploymentStore(store_path)
    op.muse("promote", store.versions()[-1].id, "--store", store_path)
    for week in range(Week.DRIFT, Week.REFRESHED):
        op.serve(week, world.week(week), f" — {DRIFTING}'s traffic has shifted")
    op.say("one refresh pass, as the chart's CronJob runs it: no operator picks anything")
    op.muse(
        "refresh",
        "--store",
        store_path,
        "--lake",
        op.deployment / "lake",
        "--cache",
        cache,
        "--as-of",
        iso_day(Week.REFRESHED),
        "--window-days",
        "14",
        "--history-days",
        "14",
    )
    active = store.active()
    assert active is not None  # promoted above
    op.reload(store.materialize(str(active["version"]), cache))
    op.serve(
        Week.REFRESHED,
        world.week(Week.REFRESHED),
        " — the refreshed version",
        lake=op.deployment / "lake",
    )
    op.muse("refresh", "--store", store_path, "--history", "1")
    history = store.read_json("refresh", f"{store.list_json('refresh')[-1]}.json") or {}
    decision = next(
        (
            d
            for d in history.get("decisions", [])
            if d["tenant"] == DRIFTING and d["predictor"] == "p2"
        ),
        {"action": "none", "policy": None},
    )
    rows = []
    with op.reader() as reader:
        for first, last, case in (
            (Week.DRIFT, Week.REFRESHED, "p2, drifted"),
            (Week.REFRESHED, Week.REFRESHED + 1, "p2, refreshed"),
        ):
            window = Window(week_start(first), week_start(last))
            scores = reader.scores("p2", DRIFTING, role="live", window=window)
            rows.append(alert_row(DRIFTING, case, first, scores.column("score").to_numpy()))
    return DriftResult(DRIFTING, rows[0], rows[1], str(decision["action"]), decision["policy"])
