"""The offline workflows as functions that return values: what ``muse fit quantiles`` and
``muse cold-start`` do, callable from Python (a notebook, a pipeline, the refresh), with the
CLI commands as thin shells.

:func:`fit_tenant_maps` reads one predictor's raw aggregates per tenant from the score lake,
fits each tenant's next map (guarded by Eq. 5, checked on the latest held-out events) and
writes it where the config finds it; a tenant with too few events is refused by name and
the others still get their maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy.typing as npt

from muse.artifacts import QuantileArtifact, list_versions, reference_digest, write_artifact
from muse.config import LoadedConfig
from muse.errors import MuseError
from muse.fitting import cold_start as _cold_start
from muse.fitting.cold_start import BetaMixture, cold_start_map
from muse.fitting.quantiles import InsufficientSamplesError, TenantFit, fit_tenant_map
from muse.scorelog import LakeReader, Window
from muse.transforms._checks import as_finite

__all__ = [
    "ColdStart",
    "FitRefusal",
    "FittedMap",
    "TenantMaps",
    "fit_cold_start",
    "fit_tenant_maps",
    "next_version",
]


@dataclass(frozen=True, slots=True)
class FittedMap:
    """A map written: which tenant, where, and the fit's evidence."""

    tenant: str
    path: Path
    fit: TenantFit


@dataclass(frozen=True, slots=True)
class FitRefusal:
    """A tenant left without a new map, and why (too few events for Eq. 5)."""

    tenant: str
    reason: str


@dataclass(frozen=True, slots=True)
class TenantMaps:
    """What :func:`fit_tenant_maps` did, tenant by tenant."""

    predictor: str
    written: tuple[FittedMap, ...]
    refused: tuple[FitRefusal, ...]


def next_version(folder: Path, tenant: str | None, first: int) -> int:
    """The version a new map gets: one above the highest present, else ``first``."""
    versions = list_versions(folder, tenant)
    return versions[-1] + 1 if versions else first


def fit_tenant_maps(
    loaded: LoadedConfig,
    predictor: str,
    *,
    tenants: Sequence[str] | None = None,
    lake: str | None = None,
    window: Window | None = None,
    role: str | None = None,
    alert_rate: float = 0.005,
    rel_error: float = 0.2,
    holdout: float = 0.2,
    force: bool = False,
    on_tenant: Callable[[str, str], None] | None = None,
) -> TenantMaps:
    """Fit and write the next map of each tenant of ``predictor`` (``tenants``, else every
    tenant with rows in ``window``) from the lake (``lake``, else the config's).

    ``role``: rows to fit on, ``"live"``, ``"shadow"`` or ``None`` for both (a shadow
    predictor's maps are fitted before it goes live). ``on_tenant(tenant, stage)`` reports
    progress (``reading``, ``fitting``, ``done``). Raises :class:`MuseError` (or
    ``ValueError`` for bad options) when nothing can be fitted at all: no lake, no rows.
    """
    if predictor not in loaded.spec.predictors:
        raise MuseError(
            f"no predictor {predictor!r} in {loaded.path}; predictors: "
            + ", ".join(sorted(loaded.spec.predictors))
        )
    if role not in (None, "live", "shadow"):
        raise ValueError(f"role must be live, shadow or None (both), got {role!r}")
    url = lake or loaded.lake_url
    if url is None:
        raise MuseError(f"{loaded.path} has no `lake` section; give the lake's URL")
    spec = loaded.spec.predictors[predictor]
    reference = loaded.references[spec.reference]
    folder = loaded.path.parent / spec.transforms
    report = on_tenant or (lambda _t, _s: None)
    written: list[FittedMap] = []
    refused: list[FitRefusal] = []
    with LakeReader(url) as reader:
        names = (
            list(tenants)
            if tenants is not None
            else reader.tenants(predictor, role=role, window=window)
        )
        if not names:
            raise MuseError(
                f"no rows of {predictor!r} in the lake at {url} for that window and role"
            )
        for name in names:
            report(name, "reading")
            raw = reader.raw_scores(predictor, name, role=role, window=window)
            report(name, "fitting")
            try:
                result = fit_tenant_map(
                    raw,
                    reference,
                    reference_name=spec.reference,
                    fingerprint=loaded.fingerprints[predictor],
                    predictor=predictor,
                    tenant=name,
                    version=next_version(folder, name, first=1),
                    window=_window_doc(window, role or "any", raw.size),
                    alert_rate=alert_rate,
                    rel_error=rel_error,
                    holdout=holdout,
                    force=force,
                )
            except InsufficientSamplesError as e:
                refused.append(FitRefusal(name, str(e)))
                report(name, "done")
                continue
            written.append(FittedMap(name, write_artifact(folder, result.artifact), result))
            report(name, "done")
    return TenantMaps(predictor, tuple(written), tuple(refused))


def _window_doc(window: Window | None, role: str, n: int) -> dict[str, str]:
    """What the artifact records of the sample it was fitted on."""
    doc = {"role": role, "events": str(n)}
    if window is not None:
        for bound in ("since", "until"):
            value = getattr(window, bound)
            if value is not None:
                doc[bound] = value.isoformat()
    return doc


@dataclass(frozen=True, slots=True)
class ColdStart:
    """A predictor's default map written, with the Beta mixture it came from."""

    path: Path
    artifact: QuantileArtifact
    mixture: BetaMixture


def fit_cold_start(
    loaded: LoadedConfig,
    predictor: str,
    training_scores: npt.ArrayLike,
    prior: float,
    *,
    trials: int = 5,
    seed: int = 0,
    source: str | None = None,
) -> ColdStart:
    """Fit the paper's Beta mixture (§2.4, Eqs. 6–8) to ``predictor``'s raw aggregates on
    its training data and write its next default map T^Q_v0 (every tenant without a map of
    its own is served by it). ``prior`` is the fraud share of that data; ``source`` names
    where the scores came from, for the artifact's record."""
    if predictor not in loaded.spec.predictors:
        raise MuseError(
            f"no predictor {predictor!r} in {loaded.path}; predictors: "
            + ", ".join(sorted(loaded.spec.predictors))
        )
    if not 0.0 < prior < 1.0:
        raise ValueError(
            f"prior must be in (0, 1) (the fraud share of the training data), got {prior!r}"
        )
    scores = as_finite(training_scores, "training_scores").ravel()
    spec = loaded.spec.predictors[predictor]
    reference = loaded.references[spec.reference]
    folder = loaded.path.parent / spec.transforms
    mixture = _cold_start.fit_beta_mixture(scores, prior, n_trials=trials, seed=seed)
    artifact = QuantileArtifact(
        quantile_map=cold_start_map(mixture, reference),
        fingerprint=loaded.fingerprints[predictor],
        reference=spec.reference,
        reference_digest=reference_digest(reference),
        version=next_version(folder, None, first=0),
        tenant=None,
        predictor=predictor,
        method="beta-mixture",
        fit={
            "mixture": mixture.to_dict(),
            "prior": prior,
            "training_scores": source or "",
            "trials": trials,
            "seed": seed,
        },
    )
    return ColdStart(write_artifact(folder, artifact), artifact, mixture)
