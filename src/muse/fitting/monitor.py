"""The drift monitor over the score lake: every live (tenant, predictor) of a window, judged.

For one predictor, the tenants it served live in the window are listed and each one's
final scores read back with DuckDB (:class:`~muse.scorelog.LakeReader`); the rows of the
map version the tenant is served *now* (the deployed map's label, else the latest
``tq_version`` of the window) are judged by :func:`~muse.fitting.drift.drift_verdict` at the tenant's alert levels — the
reference alert rates ``1 − F_R(t)`` of its configured thresholds ``t``
(``tenants.<name>.thresholds``), else :data:`~muse.fitting.drift.DEFAULT_LEVELS`. Rows of
an older map are left out: a refit that went live mid-window must not be blamed for the
drift it repaired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from muse.fitting.drift import DEFAULT_LEVELS, DriftVerdict, drift_verdict
from muse.scorelog import LakeReader, Window
from muse.transforms.reference import Reference

__all__ = ["TenantDrift", "monitor_lake", "threshold_levels"]


@dataclass(frozen=True, slots=True)
class TenantDrift:
    """One (tenant, predictor) of the window: the map version judged and the verdict."""

    predictor: str
    tenant: str
    tq_version: str
    verdict: DriftVerdict


def threshold_levels(thresholds: Mapping[str, float], reference: Reference) -> tuple[float, ...]:
    """The reference alert rates of a tenant's thresholds (``1 − F_R(t)``), largest first;
    :data:`DEFAULT_LEVELS` for a tenant without thresholds (or only degenerate ones)."""
    if not thresholds:
        return DEFAULT_LEVELS
    rates = 1.0 - reference.cdf(np.array(sorted(thresholds.values()), dtype=np.float64))
    levels = sorted({float(a) for a in rates if 0.0 < a < 1.0}, reverse=True)
    return tuple(levels) or DEFAULT_LEVELS


def monitor_lake(
    reader: LakeReader,
    predictor: str,
    reference: Reference,
    *,
    window: Window | None = None,
    tenants: Sequence[str] | None = None,
    role: str = "live",
    levels: Mapping[str, Sequence[float]] | None = None,
    served: Mapping[str, str] | None = None,
    rel_error: float = 0.2,
    z: float = 1.96,
) -> list[TenantDrift]:
    """Judge each tenant ``predictor`` served in ``window`` (or those of ``tenants``) on its
    ``role`` rows: ``live``, or ``shadow`` for a candidate predictor not live yet.

    ``levels`` maps a tenant to its alert levels (see :func:`threshold_levels`); tenants
    absent from it get :data:`DEFAULT_LEVELS`. ``served`` maps a tenant to the ``tq_version``
    it is deployed with now (a map's ``label``): only rows of that map are judged, so a map
    just promoted is not blamed for its predecessor's rows; without it, the latest version
    seen in the window is judged. A tenant with no such rows gets a ``too_few_events``
    verdict on 0 events.
    """
    names = (
        list(tenants)
        if tenants is not None
        else reader.tenants(predictor, role=role, window=window)
    )
    out = []
    for tenant in names:
        table = reader.scores(predictor, tenant, role=role, window=window)
        version = ""
        scores = np.empty(0, dtype=np.float64)
        if served is not None and tenant in served:
            version = served[tenant]
        elif table.num_rows:
            version = str(table.column("tq_version")[-1].as_py())
        if table.num_rows and version:
            current = table.filter(pc.equal(table.column("tq_version"), version))
            scores = current.column("score").to_numpy()
        tenant_levels = (levels or {}).get(tenant, DEFAULT_LEVELS)
        verdict = drift_verdict(scores, reference, tenant_levels, rel_error=rel_error, z=z)
        out.append(TenantDrift(predictor, tenant, version, verdict))
    return out
