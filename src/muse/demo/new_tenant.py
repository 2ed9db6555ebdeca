"""Scenario 1 (paper §3.1, Fig. 4): a new tenant, from the cold-start map to its own.

newbank's traffic was never seen in training and comes from a region none of the other
tenants is in, so p1's default map — a Beta mixture fitted to other tenants' scores —
describes it only roughly; the error shows in the tail, where thresholds live. After a week
on the default map the lake holds enough of newbank's events (Eq. 5) to fit its own map,
and the next week is aligned again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from muse.demo.deployment import REFERENCE
from muse.demo.operator import Operator
from muse.demo.summary import AlertRow, alert_row
from muse.demo.world import NEW_TENANT, Week, World, iso_day, week_start
from muse.evaluation import relative_error_by_bin, tail_edges
from muse.scorelog import Window

__all__ = ["NewTenantResult", "run"]

DEFAULT_MAP = "default-v0"
OWN_MAP = "v1"


@dataclass(frozen=True, slots=True)
class NewTenantResult:
    """``tail_error``: newbank's largest |relative error| over the tail bins (alert rates
    10 %, 5 %, 1 %, 0.5 %, 0.1 %) on the default map's week and on its own map's week."""

    tail_error: Mapping[str, float]
    rows: tuple[AlertRow, ...]


def run(op: Operator, world: World, fit_args: tuple[str, ...]) -> NewTenantResult:
    op.section("Scenario 1 — a new tenant: p1's default map, then its own (paper Fig. 4)")
    op.say(
        f"{NEW_TENANT} signs up. It has no map for p1, so p1 serves it through its cold-start "
        "default map T^Q_v0 from its first event; nothing to configure."
    )
    op.serve(Week.ONBOARDING, world.week(Week.ONBOARDING), f" — {NEW_TENANT}'s first week")
    op.muse(
        "fit",
        "quantiles",
        op.config,
        "-p",
        "p1",
        "-t",
        NEW_TENANT,
        "--since",
        iso_day(Week.ONBOARDING),
        "--until",
        iso_day(Week.OWN_MAP),
        *fit_args,
    )
    op.muse("validate", op.config)
    op.reload()
    op.serve(Week.OWN_MAP, world.week(Week.OWN_MAP), f" — {NEW_TENANT} on its own map")
    op.muse(
        "report",
        "alignment",
        op.config,
        "-p",
        f"p1@{DEFAULT_MAP}",
        "-p",
        f"p1@{OWN_MAP}",
        "-t",
        NEW_TENANT,
        "--since",
        iso_day(Week.ONBOARDING),
        "--until",
        iso_day(Week.OWN_MAP + 1),
        "--out",
        op.reports / "1-new-tenant",
    )

    window = Window(week_start(Week.ONBOARDING), week_start(Week.OWN_MAP + 1))
    with op.reader() as reader:
        table = reader.scores("p1", NEW_TENANT, window=window)
    scores = table.column("score").to_numpy()
    versions = np.asarray(table.column("tq_version").to_pylist())
    edges = tail_edges(REFERENCE)
    errors = {}
    for version in (DEFAULT_MAP, OWN_MAP):
        errors[version] = relative_error_by_bin(
            scores[versions == version], REFERENCE, edges
        ).max_abs_error
    op.say(
        f"{NEW_TENANT}'s largest tail error (bins at alert rates 10 %, 5 %, 1 %, 0.5 %, 0.1 %): "
        f"{errors[DEFAULT_MAP]:.0%} on the default map, {errors[OWN_MAP]:.0%} on its own map"
    )
    rows = (
        alert_row(
            NEW_TENANT,
            f"p1, cold-start default map ({DEFAULT_MAP})",
            Week.ONBOARDING,
            scores[versions == DEFAULT_MAP],
        ),
        alert_row(
            NEW_TENANT, f"p1, own map ({OWN_MAP})", Week.OWN_MAP, scores[versions == OWN_MAP]
        ),
    )
    return NewTenantResult(tail_error=errors, rows=rows)
