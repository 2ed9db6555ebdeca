"""The generated world the demo runs in: four tenants and eleven weeks of their traffic.

One frame is generated for the whole timeline and sliced by week, rather than one frame per
week, for two reasons: drift then runs continuously across weeks as it does in production
(a map fitted on week 3 meets week 4's slightly different traffic), and event ids
(``evt-<seed>-<i>``) stay unique over the whole demo — the lake reader counts an event id
once per predictor and tenant, so two weeks must never share ids.

The timeline (one week each)::

    0-1  training      experts m1, m2, m3 are trained on the established tenants' first
                       ten days; the last four are validation data (cold start, Table 1)
    2    history       p1 goes live for the established tenants; their maps are fitted
    3    onboarding    newbank joins, served by p1's cold-start default map (paper §3.1)
    4    own map       newbank on its own map v1
    5    shadow        p2 (p1 + m3) shadows everyone on its default map (paper §3.2)
    6    gate          p2 shadows with its own tenant maps; the model-CI gate runs on it
    7    promoted      p2 is live
    8-9  drift         shop3's traffic shifts (riskier merchants and devices, twice the
                       fraud) on maps fitted before: its alert rates leave the contract
    10   refreshed     after one unattended `muse refresh` pass over weeks 8-9 (paper §5)

shop3's events from week 8 on come from a frame of their own (its shifted profile, ids
``evt-<seed + 1000>-<i>``), spliced into the timeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from muse.datasets import (
    FEATURE_NAMES,
    EventFrame,
    TenantProfile,
    generate_events,
    make_tenants,
)

__all__ = [
    "DRIFTING",
    "ESTABLISHED",
    "EVENTS_PER_TENANT_WEEK",
    "FOCUS",
    "NEW_TENANT",
    "START",
    "TENANTS",
    "Week",
    "World",
    "make_world",
    "week_start",
]

#: Tenants whose traffic the experts were trained on.
ESTABLISHED = ("bank1", "bank2", "shop3")
#: The tenant that joins after go-live (scenario 1).
NEW_TENANT = "newbank"
#: The tenant scenario 2 is told for (the paper follows "a single client" too).
FOCUS = "bank1"
TENANTS = (*ESTABLISHED, NEW_TENANT)
#: Fraud rates: bank1 sees enough fraud for recall and calibration to be measured on one
#: week; newbank more than the training pool, so the default map's tail is visibly off.
FRAUD_RATES = {"bank1": 0.02, "bank2": 0.006, "shop3": 0.01, "newbank": 0.02}
#: newbank's population is riskier than any training tenant's (latent sd units added to
#: its generated shift): riskier merchants and devices, faster card use. Its raw scores sit
#: higher, so the default map — fitted to the training tenants — over-alerts in the tail,
#: as the paper's Fig. 4 shows for its new client.
NEW_TENANT_SHIFT = {"merchant_risk": 0.4, "device_risk": 0.4, "velocity_1h": 0.3}
#: A Monday, so weeks read naturally as ISO dates in the commands.
START = datetime(2026, 1, 5, tzinfo=UTC)
N_WEEKS = 11
#: The tenant whose traffic drifts in scenario 4, and how: latent sd units added to its
#: features, and its fraud rate multiplied.
DRIFTING = "shop3"
DRIFT_SHIFT = {"merchant_risk": 0.5, "device_risk": 0.5, "velocity_1h": 0.3}
DRIFT_FRAUD_FACTOR = 2.0
#: Per tenant and week at scale 1. Eq. 5 at a = 0.5 %, δ = 20 % asks for 19,112 events to
#: fit on; ``muse fit`` holds out the latest 20 %, so a week needs 19,112 / 0.8 = 23,890
#: events — 25,000 leaves a margin of seven standard deviations of the weekly count.
EVENTS_PER_TENANT_WEEK = 25_000
#: Drift over the whole timeline (see :func:`muse.datasets.generate_events`): enough that
#: maps age, little enough that a week-old map still holds.
DRIFT = 0.3
#: The experts train on the first ten days; the four before go-live are validation data.
_VALIDATION_START = np.datetime64((START + timedelta(days=10)).replace(tzinfo=None), "ms")


class Week:
    """Indices of the timeline's weeks (see the module docstring)."""

    TRAINING_END = 2
    HISTORY = 2
    ONBOARDING = 3
    OWN_MAP = 4
    SHADOW = 5
    GATE = 6
    PROMOTED = 7
    DRIFT = 8
    REFRESHED = 10


def week_start(week: int) -> datetime:
    """Midnight UTC of the Monday that starts ``week``."""
    return START + timedelta(weeks=week)


def iso_day(week: int) -> str:
    """``week_start(week)`` as the ISO date an operator types (``2026-01-19``)."""
    return week_start(week).date().isoformat()


@dataclass(frozen=True, slots=True)
class World:
    """The tenants and every event of the timeline, with each event's week."""

    tenants: tuple[TenantProfile, ...]
    frame: EventFrame
    week_of: npt.NDArray[np.int64]
    events_per_tenant_week: int

    drifted: EventFrame | None = None
    drifted_week_of: npt.NDArray[np.int64] | None = None

    def week(self, week: int, tenants: Sequence[str] = TENANTS) -> EventFrame:
        """Events of ``week`` from ``tenants`` (a tenant not yet onboarded sends none)."""
        if week < Week.DRIFT or self.drifted is None or self.drifted_week_of is None:
            return self.frame.select((self.week_of == week) & np.isin(self.frame.tenant, tenants))
        others = [t for t in tenants if t != DRIFTING]
        base = self.frame.select((self.week_of == week) & np.isin(self.frame.tenant, others))
        if DRIFTING not in tenants:
            return base
        shifted = self.drifted.select(self.drifted_week_of == week)
        return _concat(base, shifted)

    def training(self) -> EventFrame:
        """The experts' training data: the established tenants' first ten days."""
        return self._before_go_live(self.frame.timestamp < _VALIDATION_START)

    def validation(self) -> EventFrame:
        """Held-out labelled data at the natural fraud rate: the four days before go-live.

        Cold start fits its Beta mixture to a predictor's raw aggregates here (§2.4), and
        Table 1's "validation data" rows are measured here.
        """
        return self._before_go_live(self.frame.timestamp >= _VALIDATION_START)

    def _before_go_live(self, mask: npt.NDArray[np.bool_]) -> EventFrame:
        established = np.isin(self.frame.tenant, ESTABLISHED)
        return self.frame.select(mask & established & (self.week_of < Week.TRAINING_END))


def _shift(profile: TenantProfile) -> tuple[float, ...]:
    if profile.name != NEW_TENANT:
        return profile.shift
    return tuple(
        s + NEW_TENANT_SHIFT.get(name, 0.0)
        for s, name in zip(profile.shift, FEATURE_NAMES, strict=True)
    )


def _concat(a: EventFrame, b: EventFrame) -> EventFrame:
    """Two frames as one, in timestamp order."""
    order = np.argsort(np.concatenate([a.timestamp, b.timestamp]), kind="stable")

    def both(x: npt.NDArray[Any], y: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.concatenate([x, y])[order]

    return EventFrame(
        features={k: both(a.features[k], b.features[k]) for k in a.features},
        label=both(a.label, b.label),
        tenant=both(a.tenant, b.tenant),
        geography=both(a.geography, b.geography),
        channel=both(a.channel, b.channel),
        schema=both(a.schema, b.schema),
        timestamp=both(a.timestamp, b.timestamp),
        event_id=both(a.event_id, b.event_id),
    )


def _drifted(profiles: Sequence[TenantProfile], seed: int, per_week: int) -> EventFrame:
    """The drifting tenant's traffic of the last two weeks, from its shifted profile."""
    (base,) = [p for p in profiles if p.name == DRIFTING]
    shifted = dataclasses.replace(
        base,
        fraud_rate=base.fraud_rate * DRIFT_FRAUD_FACTOR,
        shift=tuple(
            s + DRIFT_SHIFT.get(name, 0.0)
            for s, name in zip(base.shift, FEATURE_NAMES, strict=True)
        ),
    )
    return generate_events(
        [shifted],
        per_week * (N_WEEKS - Week.DRIFT),
        seed=seed + 1000,
        start=week_start(Week.DRIFT),
        days=7.0 * (N_WEEKS - Week.DRIFT),
        drift=0.0,
    )


def _weeks(frame: EventFrame) -> npt.NDArray[np.int64]:
    ms = frame.timestamp.astype(np.int64) - int(START.timestamp() * 1000)
    return np.asarray(ms // (7 * 86_400_000), dtype=np.int64)


def make_world(seed: int, scale: float) -> World:
    """Tenants and traffic for ``seed``; ``scale`` multiplies every event count."""
    per_week = max(200, round(EVENTS_PER_TENANT_WEEK * scale))
    profiles = tuple(
        dataclasses.replace(p, fraud_rate=FRAUD_RATES[p.name], shift=_shift(p))
        for p in make_tenants(len(TENANTS), seed=seed, names=TENANTS)
    )
    frame = generate_events(
        profiles,
        per_week * len(TENANTS) * N_WEEKS,
        seed=seed,
        start=START,
        days=7.0 * N_WEEKS,
        drift=DRIFT,
    )
    drifted = _drifted(profiles, seed, per_week)
    return World(
        tenants=profiles,
        frame=frame,
        week_of=_weeks(frame),
        events_per_tenant_week=per_week,
        drifted=drifted,
        drifted_week_of=_weeks(drifted),
    )
