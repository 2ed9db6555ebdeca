"""The reports as library workflows: alignment, calibration and the model-CI comparison,
read from the score lake and returned as values.

``muse report alignment | calibration | compare`` are shells over these (they render the
values as tables, a ``report.md`` and PNGs); a notebook, a pipeline step or the console
calls them directly and acts on the numbers. Each takes a loaded config (for the
predictors, references, tenants' thresholds and model-CI limits) and an open
:class:`~muse.scorelog.LakeReader`, and raises :class:`ReportError` naming what is missing
— no rows for that tenant and window, predictors on different references — never a bare
KeyError from deep inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from muse.errors import MuseError
from muse.evaluation.alignment import BinAlignment, relative_error_by_bin
from muse.evaluation.calibration import CalibrationRow, calibration_table
from muse.evaluation.compare import GATE_LEVELS, Comparison, compare_arms, compare_predictors
from muse.transforms import Reference, posterior_correction, weighted_mean

if TYPE_CHECKING:
    from muse.config import LoadedConfig
    from muse.scorelog import LakeReader, Window

__all__ = [
    "AlignmentReport",
    "ArmsReport",
    "CalibrationReport",
    "ComparisonReport",
    "ReportError",
    "alignment_report",
    "arms_report",
    "calibration_report",
    "compare_report",
]

ROLES = ("live", "shadow", "any")


class ReportError(MuseError, ValueError):
    """A report cannot be made from what the lake and config hold (the message says why)."""


@dataclass(frozen=True, slots=True)
class AlignmentReport:
    """Per-bin alignment to the reference of each (predictor, T^Q version) on one tenant."""

    tenant: str
    reference: str
    #: ``predictor`` or ``predictor@version`` → its alignment (the paper's Fig. 4/6).
    series: dict[str, BinAlignment]


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """ECE and Brier per expert and for the ensemble, with and without posterior
    correction (paper Table 1), on one tenant's labelled events."""

    predictor: str
    tenant: str
    rows: list[CalibrationRow]
    labels: npt.NDArray[np.int64]
    #: The ensemble's aggregate of raw expert outputs and of T^C-corrected ones, per event.
    uncorrected: npt.NDArray[np.float64]
    corrected: npt.NDArray[np.float64]

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


@dataclass(frozen=True, slots=True)
class ComparisonReport:
    """The model-CI gate's result on the events both predictors scored, and those events."""

    comparison: Comparison
    event_ids: list[str]
    live_scores: npt.NDArray[np.float64]
    candidate_scores: npt.NDArray[np.float64]
    #: The candidate's T^Q versions among the paired rows.
    candidate_versions: list[str]

    @property
    def passed(self) -> bool:
        return self.comparison.passed


@dataclass(frozen=True, slots=True)
class ArmsReport:
    """The gate between the arms of a canary split, each on the events it served."""

    comparison: Comparison
    control_scores: npt.NDArray[np.float64]
    candidate_scores: npt.NDArray[np.float64]

    @property
    def passed(self) -> bool:
        return self.comparison.passed


def alignment_report(
    loaded: LoadedConfig,
    reader: LakeReader,
    predictors: Sequence[str],
    tenant: str,
    *,
    window: Window | None = None,
    role: str = "any",
    bins: int = 10,
) -> AlignmentReport:
    """Relative error to the reference per score bin — ``bins`` equal-probability bins of R
    plus the gate's tail levels — for each of ``predictors`` (``name`` or ``name@vN``: only
    the rows that T^Q version mapped) on ``tenant``'s rows of ``role``."""
    if role not in ROLES:
        raise ReportError(f"role must be live, shadow or any, got {role!r}")
    if bins < 1:
        raise ReportError(f"bins must be >= 1, got {bins}")
    if not predictors:
        raise ReportError("give at least one predictor")
    _known(loaded, *(p.partition("@")[0] for p in predictors))
    references = {loaded.spec.predictors[p.partition("@")[0]].reference for p in predictors}
    if len(references) > 1:
        raise ReportError(
            f"the predictors target different references {sorted(references)}: not comparable"
        )
    reference_name = references.pop()
    reference = loaded.references[reference_name]
    levels = np.union1d(np.linspace(0.0, 1.0, bins + 1), [*GATE_LEVELS[-5:]])
    edges = reference.ppf(levels)
    edges[0], edges[-1] = 0.0, 1.0
    series = {}
    for item in predictors:
        name, _, version = item.partition("@")
        table = reader.scores(name, tenant, role=None if role == "any" else role, window=window)
        scores = table.column("score").to_numpy()
        if version:
            scores = scores[np.asarray(table.column("tq_version").to_pylist()) == version]
        if scores.size == 0:
            found = sorted(set(table.column("tq_version").to_pylist()))
            raise ReportError(
                f"no rows of {item!r} for tenant {tenant!r} in that window"
                + (f"; T^Q versions present: {found}" if found else "")
            )
        series[item] = relative_error_by_bin(scores, reference, np.unique(edges))
    return AlignmentReport(tenant=tenant, reference=reference_name, series=series)


def calibration_report(
    loaded: LoadedConfig,
    reader: LakeReader,
    predictor: str,
    tenant: str,
    *,
    window: Window | None = None,
) -> CalibrationReport:
    """Calibration of ``predictor``'s experts and ensemble on ``tenant``'s labelled lake
    rows (the reader must have been opened with labels)."""
    _known(loaded, predictor)
    spec = loaded.spec.predictors[predictor]
    table = reader.scores(predictor, tenant, window=window, with_labels=True)
    if table.num_rows == 0:
        raise ReportError(f"no labelled rows of {predictor!r} for tenant {tenant!r} in that window")
    names = [e.model for e in spec.experts]
    experts = [dict(row) for row in table.column("experts").to_pylist()]
    missing = sorted({n for n in names for row in experts if n not in row})
    if missing:
        raise ReportError(
            f"lake rows of {predictor!r} lack the outputs of expert(s) {missing}: written by "
            "another version of the predictor?"
        )
    outputs = {n: np.array([row[n] for row in experts], dtype=np.float64) for n in names}
    betas = {n: loaded.spec.models[n].undersampling for n in names}
    weights = {e.model: e.weight for e in spec.experts}
    labels = np.asarray(table.column("label").to_numpy(), dtype=np.int64)
    w = np.array([weights[n] for n in names])
    raw = np.column_stack([outputs[n] for n in names])
    corrected = np.column_stack([posterior_correction(outputs[n], betas[n]) for n in names])
    return CalibrationReport(
        predictor=predictor,
        tenant=tenant,
        rows=calibration_table(outputs, betas, labels, weights),
        labels=labels,
        uncorrected=weighted_mean(raw, w),
        corrected=weighted_mean(corrected, w),
    )


def compare_report(
    loaded: LoadedConfig,
    reader: LakeReader,
    live: str,
    candidate: str,
    tenant: str,
    *,
    window: Window | None = None,
    with_labels: bool = False,
) -> ComparisonReport:
    """The model-CI gate — ``candidate`` against ``live`` on the events both scored for
    ``tenant``, at the tenant's thresholds, against the config's ``model_ci`` limits (with
    labels, the ranking checks too)."""
    reference, thresholds = _gate_inputs(loaded, live, candidate, tenant)
    paired = reader.paired(live, candidate, tenant, window=window, with_labels=with_labels)
    if paired.num_rows == 0:
        raise ReportError(
            f"no events scored by both {live!r} (live) and {candidate!r} for tenant "
            f"{tenant!r} in that window: is {candidate!r} in a shadow rule for it?"
        )
    a = np.asarray(paired.column("live_score").to_numpy(), dtype=np.float64)
    b = np.asarray(paired.column("candidate_score").to_numpy(), dtype=np.float64)
    comparison = compare_predictors(
        a,
        b,
        reference=reference,
        thresholds=thresholds,
        limits=loaded.spec.model_ci,
        labels=paired.column("label").to_numpy() if with_labels else None,
        tenant=tenant,
        live=live,
        candidate=candidate,
    )
    return ComparisonReport(
        comparison=comparison,
        event_ids=[str(i) for i in paired.column("event_id").to_pylist()],
        live_scores=a,
        candidate_scores=b,
        candidate_versions=sorted(set(paired.column("candidate_tq_version").to_pylist())),
    )


def arms_report(
    loaded: LoadedConfig,
    reader: LakeReader,
    control: str,
    candidate: str,
    tenant: str,
    *,
    window: Window | None = None,
    with_labels: bool = False,
) -> ArmsReport:
    """The model-CI gate between two arms of a canary split for ``tenant``: each arm's live
    rows on the events the split sent it (the lake's ``arm`` column), at the tenant's
    thresholds, against the config's ``model_ci`` limits (see
    :func:`~muse.evaluation.compare.compare_arms`)."""
    reference, thresholds = _gate_inputs(loaded, control, candidate, tenant)
    tables = {
        p: reader.scores(p, tenant, window=window, with_labels=with_labels, as_arm=True)
        for p in (control, candidate)
    }
    empty = [p for p, t in tables.items() if t.num_rows == 0]
    if empty:
        raise ReportError(
            f"no events a canary split sent to {' or '.join(map(repr, empty))} for tenant "
            f"{tenant!r} in that window: are both arms of one split rule for it (targets: "
            "[{predictor, weight}, ...])?"
        )
    a = np.asarray(tables[control].column("score").to_numpy(), dtype=np.float64)
    b = np.asarray(tables[candidate].column("score").to_numpy(), dtype=np.float64)
    comparison = compare_arms(
        a,
        b,
        reference=reference,
        thresholds=thresholds,
        limits=loaded.spec.model_ci,
        control_labels=tables[control].column("label").to_numpy() if with_labels else None,
        candidate_labels=tables[candidate].column("label").to_numpy() if with_labels else None,
        tenant=tenant,
        control=control,
        candidate=candidate,
    )
    return ArmsReport(comparison, a, b)


def _gate_inputs(
    loaded: LoadedConfig, live: str, candidate: str, tenant: str
) -> tuple[Reference, dict[str, float]]:
    """The reference both predictors map onto and the tenant's thresholds, for the gate."""
    _known(loaded, live, candidate)
    refs = {loaded.spec.predictors[p].reference for p in (live, candidate)}
    if len(refs) > 1:
        raise ReportError(
            f"{live} and {candidate} target different references {sorted(refs)}: not comparable"
        )
    tenant_cfg = loaded.spec.tenants.get(tenant)
    thresholds = dict(tenant_cfg.thresholds) if tenant_cfg is not None else {}
    return loaded.references[refs.pop()], thresholds


def _known(loaded: LoadedConfig, *predictors: str) -> None:
    for name in predictors:
        if name not in loaded.spec.predictors:
            raise ReportError(
                f"no predictor {name!r} in the config; predictors: "
                + ", ".join(sorted(loaded.spec.predictors))
            )
