"""The automated calibration refresh (paper §5): monitor, refit, validate, promote — one pass.

A pass takes the deployment store's active version and, for each predictor routing sends
traffic to:

1. **monitor** — every tenant it served in the last ``window_days`` is judged on the map it
   is served now (:func:`~muse.fitting.monitor_lake`): aligned, drifting, or too few events
   to tell — on its live rows, or on its shadow rows for a tenant it only shadows (a
   candidate predictor thus gets every tenant's map *before* it goes live);
2. **refit** — a drifting tenant, or one still on the cold-start default whose events can
   now be judged (the default is only a prior), is refitted: its raw aggregates of the last
   ``history_days`` (rows of the predictor's *current* fingerprint only: a retrained model's
   older aggregates are another model's) are split by time: the latest ``holdout`` share
   is held out, the rest grouped by day and handed to the refit policy
   (:func:`~muse.fitting.choose_refresh`), which picks what to fit on and never fits on
   fewer events than Eq. 5 asks;
3. **validate** — the candidate maps the held-out events: it must not be drifting there,
   and its mean relative alert-rate error over the levels judged must be below the map in
   service's (the gate of a repair is that it repairs; both errors are recorded, and, per
   threshold the tenant declared, the old and new alert rates and the share of events
   whose action changes — what the tenant will see);
4. **promote** — the candidates that passed are written as the tenants' next map versions
   into a copy of the active version, published and promoted through the store (two-phase,
   like ``muse promote``): every replica switches at once, or none does.

Every decision — tenant, predictor, old and new map version, drift figures, the policy's
choice, validation, promoted or not and why — goes into one audit record per pass in the
store (``refresh/<stamp>.json``), which ``muse refresh --history`` prints. A tenant pinned
to a map version in the config is never refitted (an operator decided).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from muse.artifacts import QuantileArtifact, reference_digest, scan_versions, write_artifact
from muse.config import LoadedConfig, load_config
from muse.errors import MuseError
from muse.evaluation.compare import assign_actions
from muse.fitting import (
    DriftVerdict,
    InsufficientSamplesError,
    choose_refresh,
    drift_verdict,
    monitor_lake,
    threshold_levels,
)
from muse.fleet import DeploymentStore
from muse.fleet.promotion import promote
from muse.fleet.publish import publish
from muse.fleet.store import actor, now_iso
from muse.scorelog import LakeReader, Window
from muse.transforms import Reference
from muse.types import ScoreArray

__all__ = ["Decision", "RefreshError", "RefreshPass", "refresh_history", "run_refresh"]


class RefreshError(MuseError, ValueError):
    """A refresh pass cannot run: no active version, no lake, an unknown tenant…"""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the pass decided for one (tenant, predictor), with the figures behind it."""

    tenant: str
    predictor: str
    role: str  # live | shadow: which rows were judged
    verdict: str
    reason: str
    action: str  # none | refit | skipped | failed
    old_version: str
    new_version: str | None = None
    policy: str | None = None
    n_fit: int = 0
    n_holdout: int = 0
    old_error: float | None = None
    new_error: float | None = None
    why: str = ""
    levels: list[dict[str, Any]] = field(default_factory=list)
    #: What the tenant will see change, per declared threshold, on the held-out events
    #: (the model-CI gate's view): the promised rate, the old and new map's alert rates,
    #: and the share of events whose action the new map changes.
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RefreshPass:
    """One pass: its decisions and, when it promoted, the version it made live."""

    at: str
    by: str
    from_version: str
    decisions: tuple[Decision, ...]
    published: str | None
    promoted: bool
    dry_run: bool
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["decisions"] = [asdict(d) for d in self.decisions]
        return doc


def run_refresh(
    store: DeploymentStore,
    *,
    cache: Path,
    lake: str | None = None,
    tenants: Sequence[str] | None = None,
    predictors: Sequence[str] | None = None,
    window_days: float = 7.0,
    history_days: float = 28.0,
    holdout: float = 0.2,
    rel_error: float = 0.2,
    z: float = 1.96,
    dry_run: bool = False,
    now: datetime | None = None,
    by: str | None = None,
    promote_timeout_s: float = 120.0,
    switch_delay_s: float = 1.0,
    say: Callable[[str], None] | None = None,
) -> RefreshPass:
    """One refresh pass over the store's active version (see the module doc)."""
    say = say or (lambda _: None)
    who = by or actor()
    active = store.active()
    if active is None:
        raise RefreshError(f"{store.url} has no active version: nothing is served to refresh")
    vid = str(active["version"])
    config_path = store.materialize(vid, cache)
    loaded = load_config(config_path)
    lake_url = lake or _absolute_lake(loaded)
    end = now or datetime.now(UTC)
    recent = Window(end - timedelta(days=window_days), end)
    history = Window(end - timedelta(days=history_days), end)
    chosen = _predictors(loaded, predictors)
    decisions: list[Decision] = []
    refits: list[tuple[str, str, QuantileArtifact]] = []
    with LakeReader(lake_url) as reader:
        context = _Context(loaded, reader, history, end, holdout, rel_error, z)
        for predictor, role, served in _judged(reader, chosen, tenants, recent):
            reference = loaded.references[loaded.spec.predictors[predictor].reference]
            transforms = loaded.transforms[predictor]
            pinned = set(loaded.spec.predictors[predictor].pins or {})
            levels = {t: threshold_levels(_thresholds(loaded, t), reference) for t in served}
            for drift in monitor_lake(
                reader,
                predictor,
                reference,
                window=recent,
                tenants=served,
                role=role,
                levels=levels,
                served={t: transforms.tenants.get(t, transforms.default).label for t in served},
                rel_error=rel_error,
                z=z,
            ):
                t = drift.tenant
                current = transforms.tenants.get(t, transforms.default)
                old = f"{t}/v{current.version}" if t in transforms.tenants else "default"
                first = t not in transforms.tenants
                base = Decision(
                    tenant=t,
                    predictor=predictor,
                    role=role,
                    verdict=drift.verdict.verdict,
                    reason=drift.verdict.reason,
                    action="none",
                    old_version=old,
                    levels=_levels(drift.verdict),
                )
                # Refit a drifting map; fit a first map of its own for a tenant on the
                # cold-start default once its events can be judged (it is only a prior).
                wanted = drift.verdict.verdict == "drifting" or (
                    first and drift.verdict.verdict == "aligned"
                )
                if not wanted:
                    decisions.append(base)
                    continue
                if t in pinned:
                    decisions.append(
                        replace(base, action="skipped", why="pinned to a version in the config")
                    )
                    continue
                decision, artifact = _refit(context, predictor, role, base, current, levels[t])
                if artifact is None and first and drift.verdict.verdict == "aligned":
                    # The default already serves this tenant within tolerance: keeping it
                    # is no failure, and must not read as one every pass.
                    decision = replace(
                        decision, action="none", why=f"keeps the cold-start default: {decision.why}"
                    )
                decisions.append(decision)
                if artifact is not None:
                    refits.append((predictor, t, artifact))
                    what = "first map" if first else "refit"
                    say(f"{predictor}/{t} ({role}): {what} ({decision.policy}), {decision.why}")
                else:
                    say(f"{predictor}/{t} ({role}): not refitted: {decision.why}")
    published, promoted, outcome = None, False, "nothing to promote"
    if refits and dry_run:
        outcome = f"dry run: {len(refits)} map(s) would be promoted"
    elif refits:
        published, promoted, outcome = _publish(
            store, config_path, loaded, refits, who, promote_timeout_s, switch_delay_s, say
        )
    record = RefreshPass(
        at=now_iso(),
        by=who,
        from_version=vid,
        decisions=tuple(decisions),
        published=published,
        promoted=promoted,
        dry_run=dry_run,
        outcome=outcome,
    )
    if not dry_run:
        stamp = record.at.replace(":", "").replace("-", "").replace("+0000", "Z")
        store.write_json(_finite(record.to_dict()), "refresh", f"{stamp}.json")
    return record


def refresh_history(store: DeploymentStore, last: int = 20) -> list[dict[str, Any]]:
    """The ``last`` refresh passes recorded in the store, oldest first."""
    names = store.list_json("refresh")[-last:]
    docs = [store.read_json("refresh", f"{n}.json") for n in names]
    return [d for d in docs if d is not None]


# -- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What every refit of one pass shares."""

    loaded: LoadedConfig
    reader: LakeReader
    history: Window
    end: datetime
    holdout: float
    rel_error: float
    z: float


def _refit(
    ctx: _Context,
    predictor: str,
    role: str,
    base: Decision,
    current: QuantileArtifact,
    levels: Sequence[float],
) -> tuple[Decision, QuantileArtifact | None]:
    """Refit one tenant: its current-fingerprint raw aggregates of the history split by time
    (the latest ``holdout`` share held out, the rest by day), the policy's choice, and the
    validation on the held-out events. The decision, and the artifact when it passed."""
    loaded, t = ctx.loaded, base.tenant
    reference_name = loaded.spec.predictors[predictor].reference
    reference = loaded.references[reference_name]
    table = ctx.reader.scores(predictor, t, role=role, window=ctx.history)
    table = table.filter(pc.equal(table.column("fingerprint"), loaded.fingerprints[predictor]))
    raw = table.column("raw").to_numpy()
    days = _day_numbers(table.column("timestamp").to_pylist())
    cut = raw.size - round(raw.size * ctx.holdout)
    fit_raw, fit_days, held = raw[:cut], days[:cut], raw[cut:]
    periods = [fit_raw[fit_days == d] for d in np.unique(fit_days)]
    try:
        choice = choose_refresh(periods, reference, levels=levels, rel_error=ctx.rel_error, z=ctx.z)
    except (InsufficientSamplesError, ValueError) as e:
        return replace(base, action="failed", why=str(e), n_fit=int(cut)), None
    judge = {"rel_error": ctx.rel_error, "z": ctx.z}
    new_v = drift_verdict(choice.quantile_map(held), reference, levels, **judge)
    old_v = drift_verdict(current.quantile_map(held), reference, levels, **judge)
    ok, why, old_err, new_err = _validate(old_v, new_v)
    actions = _action_changes(
        current.quantile_map(held), choice.quantile_map(held), _thresholds(loaded, t), reference
    )
    version = max(scan_versions(_transforms_dir(loaded, predictor)).get(t, [0])) + 1
    decision = replace(
        base,
        action="refit" if ok else "failed",
        new_version=f"{t}/v{version}" if ok else None,
        policy=choice.policy,
        n_fit=int(cut),
        n_holdout=int(held.size),
        old_error=old_err,
        new_error=new_err,
        why=why,
        actions=actions,
    )
    if not ok:
        return decision, None
    return decision, QuantileArtifact(
        quantile_map=choice.quantile_map,
        fingerprint=loaded.fingerprints[predictor],
        reference=reference_name,
        reference_digest=reference_digest(reference),
        version=version,
        tenant=t,
        predictor=predictor,
        method=f"refresh:{choice.policy}",
        window={"since": _iso(ctx.history.since), "until": ctx.end.isoformat()},
    )


def _absolute_lake(loaded: LoadedConfig) -> str:
    url = loaded.spec.lake.url if loaded.spec.lake is not None else None
    if url is None:
        raise RefreshError("the active version has no lake: give --lake")
    if "://" not in url and not os.path.isabs(url):
        raise RefreshError(
            f"the active version's lake {url!r} is relative to wherever it is served: give "
            "--lake (the URL every replica writes to)"
        )
    return url


def _predictors(loaded: LoadedConfig, only: Sequence[str] | None) -> list[str]:
    """The predictors routing sends traffic to, live or in shadow (or those asked for)."""
    routed = sorted(
        {p for rule in loaded.router.scoring_rules for p in rule.predictors}
        | {p for rule in loaded.router.shadow_rules for p in rule.targets}
    )
    if only is None:
        return routed
    unknown = [p for p in only if p not in routed]
    if unknown:
        raise RefreshError(f"not a routed predictor: {unknown}; routed predictors: {routed}")
    return list(only)


def _judged(
    reader: LakeReader,
    predictors: Sequence[str],
    tenants: Sequence[str] | None,
    window: Window,
) -> list[tuple[str, str, list[str]]]:
    """(predictor, role, tenants) to judge: each predictor's live tenants on its live rows,
    and the tenants it only shadows on its shadow rows — so a candidate predictor gets every
    tenant's map before it goes live."""
    out = []
    seen: set[str] = set()
    for p in predictors:
        live = reader.tenants(p, role="live", window=window)
        shadow = [t for t in reader.tenants(p, role="shadow", window=window) if t not in live]
        if tenants is not None:
            live = [t for t in tenants if t in live]
            shadow = [t for t in tenants if t in shadow]
        seen.update(live, shadow)
        if live:
            out.append((p, "live", live))
        if shadow:
            out.append((p, "shadow", shadow))
    missing = [t for t in tenants or () if t not in seen]
    if missing:
        raise RefreshError(
            f"no rows of tenant(s) {missing} in the lake's window "
            f"[{_iso(window.since)}, {_iso(window.until)}) for {list(predictors)}"
        )
    return out


def _action_changes(
    old: ScoreArray, new: ScoreArray, thresholds: Mapping[str, float], reference: Reference
) -> list[dict[str, Any]]:
    """Per declared threshold (lowest first): the rate R promises above it, the old and
    new scores' alert rates, and the share of events whose action differs between them
    (:func:`~muse.evaluation.compare.assign_actions`: the highest threshold reached)."""
    if not thresholds or old.size == 0:
        return []
    old_actions, new_actions = assign_actions(old, thresholds), assign_actions(new, thresholds)
    changed = float(np.mean(old_actions != new_actions))
    return [
        {
            "action": action,
            "threshold": t,
            "promised": float(1.0 - reference.cdf(np.array([t]))[0]),
            "old_rate": float(np.mean(old >= t)),
            "new_rate": float(np.mean(new >= t)),
            "actions_changed": changed,
        }
        for action, t in sorted(thresholds.items(), key=lambda kv: kv[1])
    ]


def _thresholds(loaded: LoadedConfig, tenant: str) -> dict[str, float]:
    t = loaded.spec.tenants.get(tenant)
    return dict(t.thresholds) if t is not None else {}


def _transforms_dir(loaded: LoadedConfig, predictor: str) -> Path:
    return loaded.path.parent / loaded.spec.predictors[predictor].transforms


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _day_numbers(stamps: Sequence[datetime]) -> ScoreArray:
    return np.array([s.toordinal() for s in stamps], dtype=np.float64)


def _levels(verdict: DriftVerdict) -> list[dict[str, Any]]:
    return [
        {
            "level": c.level,
            "observed": c.observed,
            "low": c.low,
            "high": c.high,
            "n": c.n,
            "judged": c.judged,
            "drifting": c.drifting,
        }
        for c in verdict.levels
    ]


def _validate(old: DriftVerdict, new: DriftVerdict) -> tuple[bool, str, float | None, float | None]:
    """The candidate repairs: on the held-out events it drifts at no level (no level is off
    by more than the tolerance beyond noise), and its mean |relative error| over the levels
    judged there is below the map in service's. Not "better at every level": a level the old
    map already met is met again within noise, and noise must not veto a repair."""
    judged = [(o, n) for o, n in zip(old.levels, new.levels, strict=True) if n.judged]
    if not judged:
        return False, f"cannot validate: {new.reason}", None, None
    old_err = float(np.mean([abs(o.relative_error) for o, _ in judged]))
    new_err = float(np.mean([abs(n.relative_error) for _, n in judged]))
    if new.verdict == "drifting":
        return False, f"the candidate drifts on held-out events: {new.reason}", old_err, new_err
    if new_err >= old_err:
        return (
            False,
            f"not closer to R than the map in service ({old_err:.1%} -> {new_err:.1%})",
            old_err,
            new_err,
        )
    return True, f"held-out error {old_err:.1%} -> {new_err:.1%}", old_err, new_err


def _publish(
    store: DeploymentStore,
    config_path: Path,
    loaded: LoadedConfig,
    refits: list[tuple[str, str, QuantileArtifact]],
    who: str,
    timeout_s: float,
    switch_delay_s: float,
    say: Callable[[str], None],
) -> tuple[str | None, bool, str]:
    """The active version plus the new maps, published and promoted."""
    with tempfile.TemporaryDirectory(prefix="muse-refresh-") as tmp:
        work = Path(tmp) / "version"
        # Links, not copies: files are only added, never changed (versions are immutable).
        shutil.copytree(config_path.parent, work, copy_function=_link_or_copy)
        copy = work / config_path.name
        for predictor, _, artifact in refits:
            folder = work / loaded.spec.predictors[predictor].transforms
            write_artifact(folder, artifact)
        done = publish(copy, store, by=who)
    vid = done.version.id
    say(f"published {vid} with {len(refits)} new map(s)")
    result = promote(
        store, vid, timeout_s=timeout_s, switch_delay_s=switch_delay_s, by=who, event="refresh"
    )
    if result.activated:
        return vid, True, f"promoted {vid}"
    detail = "; ".join(f"{r}: {why}" for r, why in result.refused.items()) or (
        f"no answer from {list(result.missing)}" if result.missing else ""
    )
    return vid, False, f"promotion {result.state}" + (f" ({detail})" if detail else "")


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _finite(doc: Any) -> Any:
    """JSON has no NaN: figures that could not be computed are written as null."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc
