"""What each console page shows, computed from a :class:`~muse.console.state.Snapshot`.

Pure functions of the snapshot (and, for a promotion, of two loaded configs): no I/O, so
pages are as fast as the snapshot is fresh, and every figure a page shows can be checked
against the library functions it comes from (the drift monitor's judgement, the alignment
report's bins, the store's versions).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from muse.config import LoadedConfig
from muse.console.summary import PERCENTS, BinCounts
from muse.errors import MuseError
from muse.evaluation.compare import GATE_LEVELS
from muse.evaluation.metrics import _wilson_bounds
from muse.fitting.drift import DriftVerdict, judge_alert_counts, level_threshold
from muse.fitting.monitor import threshold_levels

__all__ = [
    "AlignmentRow",
    "Change",
    "Days",
    "TenantRow",
    "alignment",
    "fleet",
    "judge",
    "last_days",
    "promotion_changes",
    "route_intent",
    "routing",
    "tenant_rows",
]

if TYPE_CHECKING:
    from muse.console.state import Snapshot

#: A replica whose heartbeat is older than this is shown as silent.
SILENT_S = 15.0
#: The tenants table's window unless a page asks for another: computed with each snapshot.
DEFAULT_DAYS = 7
#: Tenants per page of the tenants table.
PAGE_SIZE = 100


def age_s(iso: str | None) -> float | None:
    """Seconds since ``iso`` (None if absent or unreadable)."""
    if not iso:
        return None
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()
    except (ValueError, TypeError):  # unreadable, or without a time zone
        return None


@dataclass(frozen=True, slots=True)
class Days:
    """The days a tenants page judges: the last ``days`` days up to the lake's newest day
    (not today: a lake of replayed or historical events is judged where its events are)."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def last_days(snapshot: Snapshot, days: int) -> Days | None:
    """The window of ``days`` ending on the lake's newest day, None for an empty lake."""
    span = snapshot.summary.days() if snapshot.summary is not None else None
    if span is None:
        return None
    last = span[1]
    return Days(max(span[0], last - timedelta(days=max(days, 1) - 1)), last)


# -- fleet --------------------------------------------------------------------------------


def fleet(snapshot: Snapshot) -> dict[str, Any]:
    """Versions newest first, replicas from their heartbeats and from the probes."""
    versions = [
        {
            "id": v.record.id,
            "name": v.record.config_version,
            "state": v.state,
            "published_at": v.record.published_at,
            "published_by": v.record.published_by,
            "activated_at": v.activated_at,
            "activated_by": v.activated_by,
            "retired_at": v.retired_at,
        }
        for v in sorted(snapshot.versions, key=lambda v: v.record.published_at, reverse=True)
    ]
    replicas = []
    for beat in sorted(snapshot.heartbeats, key=lambda b: str(b.get("replica"))):
        age = age_s(str(beat.get("at", "")))
        replicas.append(
            {
                "name": beat.get("replica"),
                "version": beat.get("version"),
                "host": beat.get("host"),
                "last_contact": beat.get("at"),
                "age_s": age,
                "silent": age is None or age > SILENT_S,
            }
        )
    active = snapshot.active or {}
    return {
        "versions": versions,
        "active": active.get("version"),
        "previous": active.get("previous"),
        "replicas": replicas,
        "probes": snapshot.probes,
    }


@dataclass(frozen=True, slots=True)
class Change:
    """One difference a promotion makes: what (a route, a predictor, a tenant's map)."""

    kind: str
    name: str
    before: str
    after: str


def promotion_changes(old: LoadedConfig | None, new: LoadedConfig) -> list[Change]:
    """Every route, predictor and tenant map that differs between ``old`` and ``new``:
    what the confirmation of a promotion or a rollback shows before anything moves."""
    sides: list[tuple[str, dict[str, str], dict[str, str]]] = [
        ("route", _rules(old) if old else {}, _rules(new)),
        ("predictor", dict(old.fingerprints) if old else {}, dict(new.fingerprints)),
        ("map", _maps(old) if old else {}, _maps(new)),
    ]
    # Fingerprints compare whole and show short.
    show = {"predictor": _short}
    return [
        Change(
            kind,
            key,
            show.get(kind, str)(before.get(key, "—")),
            show.get(kind, str)(after.get(key, "—")),
        )
        for kind, before, after in sides
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def _rules(config: LoadedConfig) -> dict[str, str]:
    doc = config.router.to_config()
    out = {}
    for i, rule in enumerate(doc.get("scoringRules", [])):
        name = f"scoring #{i + 1} {rule.get('description') or ''}".strip()
        out[name] = (
            f"{_condition(rule.get('condition'))} → {rule.get('targetPredictorName') or _split_text(rule)}"
        )
    for i, rule in enumerate(doc.get("shadowRules", [])):
        name = f"shadow #{i + 1} {rule.get('description') or ''}".strip()
        targets = ", ".join(rule.get("targetPredictorNames", []))
        out[name] = f"{_condition(rule.get('condition'))} → {targets}"
    return out


def _condition(condition: Mapping[str, Any] | None) -> str:
    if not condition:
        return "every intent"
    return "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in condition.items())


def _maps(config: LoadedConfig) -> dict[str, str]:
    out = {}
    for predictor, transforms in config.transforms.items():
        out[f"{predictor} default"] = transforms.default.label
        for tenant, artifact in transforms.tenants.items():
            out[f"{predictor} / {tenant}"] = artifact.label
    return out


def _short(fingerprint: str) -> str:
    return fingerprint if fingerprint == "—" else fingerprint.removeprefix("sha256:")[:12]


# -- routing ------------------------------------------------------------------------------


def routing(config: LoadedConfig) -> dict[str, Any]:
    """The scoring and shadow rules as rows, and the intent attributes the tester takes."""
    doc = config.router.to_config()
    return {
        "scoring": [
            {
                "n": i + 1,
                "description": rule.get("description") or "",
                "condition": _condition(rule.get("condition")),
                "target": rule.get("targetPredictorName") or _split_text(rule),
            }
            for i, rule in enumerate(doc.get("scoringRules", []))
        ],
        "shadow": [
            {
                "n": i + 1,
                "description": rule.get("description") or "",
                "condition": _condition(rule.get("condition")),
                "targets": ", ".join(rule.get("targetPredictorNames", [])),
            }
            for i, rule in enumerate(doc.get("shadowRules", []))
        ],
        "attributes": list(config.router.attributes),
    }


def route_intent(config: LoadedConfig, intent: Mapping[str, str]) -> dict[str, Any]:
    """Where ``intent`` goes under ``config``: the live predictor, the shadows and the rule,
    or the error a scoring request would get."""
    clean = {k: v for k, v in intent.items() if v}
    try:
        route = config.router.route(clean)
    except MuseError as e:
        return {"intent": clean, "error": str(e)}
    if route.split is not None:
        arms = ", ".join(
            f"{a.predictor} {share:.0%}"
            for a, share in zip(route.split.arms, route.split.shares, strict=True)
        )
        by = route.split.sticky_by or "event id"
        return {
            "intent": clean,
            "live": f"split by {by}: {arms}",
            "shadows": list(route.shadows),
            "rule": route.rule,
        }
    return {
        "intent": clean,
        "live": route.live,
        "shadows": list(route.shadows),
        "rule": route.rule,
    }


def _split_text(rule: Mapping[str, Any]) -> str:
    """A split rule's target as one line: each arm with its share, and what it sticks by."""
    arms = rule.get("targets") or []
    total = sum(float(a["weight"]) for a in arms) or 1.0
    text = ", ".join(f"{a['predictor']} {float(a['weight']) / total:.0%}" for a in arms)
    return f"split: {text} (sticky by {rule.get('stickyBy') or 'event id'})"


# -- tenants ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantRow:
    """One tenant in the tenants table."""

    tenant: str
    predictor: str | None
    map_version: str | None
    map_created: str | None
    events: int
    events_per_day: float
    verdict: DriftVerdict | None
    route_error: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


def tenant_rows(snapshot: Snapshot, win: Days | None, only: str | None = None) -> list[TenantRow]:
    """One row per tenant the config names or the lake saw in the window (or ``only``'s)."""
    config = snapshot.loaded
    if config is None:
        return []
    summary = snapshot.summary
    totals = (
        summary.totals(role="live", first=win.first, last=win.last, tenant=only)
        if summary is not None and win is not None
        else {}
    )
    tenants = set(config.spec.tenants) | {t for t, _ in totals}
    for transforms in config.transforms.values():
        tenants.update(transforms.tenants)
    seen_by: dict[str, dict[str, dict[str, Any]]] = {}
    for (t, p), total in totals.items():
        seen_by.setdefault(t, {})[p] = total
    rows = []
    cache: dict[tuple[str, tuple[float, ...]], dict[float, float]] = {}
    for tenant in sorted(tenants if only is None else tenants & {only}):
        thresholds = (
            dict(config.spec.tenants[tenant].thresholds) if tenant in config.spec.tenants else {}
        )
        live = route_intent(config, {"tenant": tenant})
        predictor = live.get("live")
        seen = seen_by.get(tenant, {})
        if predictor is None and seen:  # no route by tenant alone: the one that served it most
            predictor = max(seen, key=lambda p: seen[p]["events"])
        artifact = None
        if predictor is not None and predictor in config.transforms:
            transforms = config.transforms[predictor]
            artifact = transforms.tenants.get(tenant, transforms.default)
        events = int(seen[predictor]["events"]) if predictor in seen else 0
        verdict = None
        if summary is not None and win is not None and predictor in summary.edges and artifact:
            hist = summary.counts(
                predictor,
                tenant=tenant,
                role="live",
                tq_version=artifact.label,
                first=win.first,
                last=win.last,
            )
            verdict = judge(config, predictor, thresholds, hist, cache)
        rows.append(
            TenantRow(
                tenant=tenant,
                predictor=predictor,
                map_version=artifact.label if artifact else None,
                map_created=artifact.created_at if artifact else None,
                events=events,
                events_per_day=events / win.days if win else 0.0,
                verdict=verdict,
                route_error=live.get("error"),
                thresholds=thresholds,
            )
        )
    return rows


def judge(
    config: LoadedConfig,
    predictor: str,
    thresholds: Mapping[str, float],
    hist: BinCounts,
    cache: dict[tuple[str, tuple[float, ...]], dict[float, float]] | None = None,
) -> DriftVerdict:
    """The drift monitor's verdict on one tenant's histogram (as ``muse refresh`` judges).

    ``cache`` keeps each level's threshold per (predictor, levels) across tenants: most
    tenants share their levels, and R's quantile function is the costly part."""
    reference = config.references[config.spec.predictors[predictor].reference]
    levels = threshold_levels(thresholds, reference)
    key = (predictor, levels)
    at = cache.get(key) if cache is not None else None
    if at is None:
        at = {a: level_threshold(reference, a) for a in levels}
        if cache is not None:
            cache[key] = at
    alerts = {a: hist.above(at[a]) for a in levels}
    return judge_alert_counts(hist.n, alerts, reference, ks=hist.ks(reference), thresholds=at)


@dataclass(frozen=True, slots=True)
class AlignmentRow:
    """One score bin of the alignment chart (paper Fig. 4/6)."""

    lower: float
    upper: float
    expected_share: float
    count: int
    observed_share: float
    relative_error: float
    error_low: float
    error_high: float


def alignment(hist: BinCounts, config: LoadedConfig, predictor: str) -> list[AlignmentRow]:
    """Relative error to R per decile of R and per tail bin of the model-CI gate's levels,
    with Wilson intervals (paper Fig. 4/6): the histogram's bins merged, exactly, since
    every cut is one of its edges (:func:`~muse.console.summary.score_edges`)."""
    reference = config.references[config.spec.predictors[predictor].reference]
    n = hist.n
    if n == 0:
        return []
    u = np.union1d(PERCENTS[::10], np.asarray(GATE_LEVELS[-5:], dtype=np.float64))
    cut = np.asarray(reference.ppf(u[1:-1]), dtype=np.float64)
    index = np.searchsorted(hist.edges, cut)
    if not np.array_equal(hist.edges[np.minimum(index, hist.edges.size - 1)], cut):
        raise ValueError("alignment cuts must be edges of the histograms")
    bounds = [0, *(int(i) + 1 for i in index), hist.counts.size]
    counts = np.array([hist.counts[a:b].sum() for a, b in itertools.pairwise(bounds)])
    expected = np.diff(u)
    low, high = _wilson_bounds(counts, np.full(counts.size, n), 1.96)
    lowers = np.concatenate([[0.0], cut])
    uppers = np.concatenate([cut, [1.0]])
    return [
        AlignmentRow(
            lower=float(lowers[i]),
            upper=float(uppers[i]),
            expected_share=float(expected[i]),
            count=int(counts[i]),
            observed_share=float(counts[i] / n),
            relative_error=float(counts[i] / n / expected[i] - 1.0),
            error_low=float(low[i] / expected[i] - 1.0),
            error_high=float(high[i] / expected[i] - 1.0),
        )
        for i in range(counts.size)
    ]
