"""Fitting a tenant's own T^Q from its raw aggregates (paper §2.3.3), guarded by Eq. 5.

A tenant map is only as good as the tail of the sample it was fitted on: at a 0.5 % alert
rate a sample of 4,000 events holds 20 alerts, and the fitted threshold's alert rate
wanders by ±45 %. :func:`fit_tenant_map` therefore refuses a sample smaller than
:func:`~muse.fitting.required_samples` asks for (unless forced), and holds out the most
recent part of the window so the new map is checked on events it has not seen — the same
direction in time in which it will be used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from muse.artifacts import QuantileArtifact, reference_digest
from muse.errors import MuseError
from muse.fitting.sample_size import required_samples
from muse.transforms.quantile import QuantileMap
from muse.transforms.reference import Reference
from muse.types import ScoreArray

__all__ = ["InsufficientSamplesError", "TenantFit", "fit_tenant_map", "split_holdout"]


class InsufficientSamplesError(MuseError, ValueError):
    """Fewer events than Eq. 5 asks for: the map's tail would be noise."""

    def __init__(self, n: int, required: int, *, alert_rate: float, rel_error: float) -> None:
        self.n = n
        self.required = required
        super().__init__(
            f"{n:,} events to fit on, but Eq. 5 requires {required:,} to keep the alert rate "
            f"at {alert_rate:.3%} within ±{rel_error:.0%} (z = 1.96); collect more events, "
            "widen the window, relax --alert-rate/--rel-error, or pass --force"
        )


@dataclass(frozen=True, slots=True)
class TenantFit:
    """A fitted tenant map and the evidence for it.

    ``holdout_scores`` are the *mapped* scores of the held-out events: they should follow
    the reference, which is what the caller checks (``muse.evaluation``) and prints.
    """

    artifact: QuantileArtifact
    n_fit: int
    n_holdout: int
    required: int
    holdout_scores: ScoreArray


def split_holdout(raw: npt.ArrayLike, holdout: float) -> tuple[ScoreArray, ScoreArray]:
    """Split time-ordered scores into (fit, held-out): the held-out part is the *latest*.

    Held out by time rather than at random because a map is used on the events that come
    after its window; a random split would hide a drift the map is about to meet.
    """
    x = np.asarray(raw, dtype=np.float64).ravel()
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout!r}")
    cut = x.size - round(x.size * holdout)
    return x[:cut], x[cut:]


def fit_tenant_map(
    raw: npt.ArrayLike,
    reference: Reference,
    *,
    reference_name: str,
    fingerprint: str,
    predictor: str,
    tenant: str,
    version: int,
    window: Mapping[str, str] | None = None,
    alert_rate: float = 0.005,
    rel_error: float = 0.2,
    z: float = 1.96,
    holdout: float = 0.2,
    force: bool = False,
    n_quantiles: int = 1000,
) -> TenantFit:
    """Fit ``tenant``'s map for ``predictor`` on time-ordered raw aggregates ``raw``.

    The first ``1 - holdout`` of ``raw`` is fitted, the rest mapped as the check. Raises
    :class:`InsufficientSamplesError` when the fitting part is smaller than Eq. 5 asks for
    at (``alert_rate``, ``rel_error``, ``z``) and ``force`` is false.
    """
    fit_part, held = split_holdout(raw, holdout)
    required = required_samples(alert_rate, rel_error, z)
    if fit_part.size == 0:
        raise InsufficientSamplesError(0, required, alert_rate=alert_rate, rel_error=rel_error)
    if fit_part.size < required and not force:
        raise InsufficientSamplesError(
            int(fit_part.size), required, alert_rate=alert_rate, rel_error=rel_error
        )
    qmap = QuantileMap.fit(fit_part, reference, n_quantiles)
    artifact = QuantileArtifact(
        quantile_map=qmap,
        fingerprint=fingerprint,
        reference=reference_name,
        reference_digest=reference_digest(reference),
        version=version,
        tenant=tenant,
        predictor=predictor,
        method="empirical",
        window=dict(window) if window is not None else None,
    )
    return TenantFit(
        artifact=artifact,
        n_fit=int(fit_part.size),
        n_holdout=int(held.size),
        required=required,
        holdout_scores=qmap(held) if held.size else np.empty(0),
    )
