"""Reason codes: why an event scored what it scored, as its live predictor's top features.

Each expert's TreeSHAP contributions (its own model's, or those of the tree model it was
exported from: ``models.<m>.explain``) are carried through T^C, A and the tenant's T^Q by
:func:`muse.transforms.attribution.attribute`, so an event's reasons and its base add up to
the score it was served. Off the scoring path: nothing here runs unless reasons are asked for.

What is possible where: LightGBM and XGBoost models explain themselves (``pred_contrib``,
``pred_contribs``); an ONNX file holds no contribution method, nor does the Open Inference
Protocol of a remote model (Triton, MLServer) — such a model gives reasons only through
the tree model it was exported from, checked at load to answer as it does (in process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from muse.errors import ReasonsUnavailableError
from muse.features.table import FeatureTable
from muse.scoring import Features, enrich, prepare, run_models
from muse.snapshot import Snapshot
from muse.transforms.attribution import ExpertContributions, attribute
from muse.types import Intent, ScoreArray

__all__ = ["Reason", "Reasons", "ReasonsUnavailableError", "explain_batch"]

#: How many reasons an event gets unless asked otherwise.
DEFAULT_TOP = 3


@dataclass(frozen=True, slots=True)
class Reason:
    """One feature's contribution to an event's final score."""

    feature: str
    contribution: float


@dataclass(frozen=True, slots=True)
class Reasons:
    """An event's live score, the base its contributions start from, and its top reasons
    (largest |contribution| first): ``base`` + every feature's contribution = ``score``."""

    event_id: str | None
    predictor: str
    score: float
    base: float
    top: tuple[Reason, ...]


def explain_batch(
    snap: Snapshot,
    intents: Sequence[Intent],
    features: Features,
    *,
    event_ids: Sequence[str] | None = None,
    top: int = DEFAULT_TOP,
) -> list[Reasons]:
    """The reasons of each event's live score, routed as :func:`muse.scoring.score_batch`
    routes it (canary splits by the same key). Raises what scoring raises for bad input,
    and :class:`ReasonsUnavailableError` when a live predictor cannot explain itself."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive number of reasons, got {top!r}")
    table, plan = prepare(snap, intents, features, event_ids, False)
    outputs: dict[str, ScoreArray] = {}
    live = plan.live_model_events
    table, enrichment = enrich(snap, plan, table, live)
    run_models(snap, table, live, live, outputs, {}, enrichment)
    out: list[Reasons | None] = [None] * plan.n
    for (name, tenant), idx_list in plan.live_groups.items():
        predictor = snap.predictors[name]
        idx = np.array(idx_list, dtype=np.intp)
        sub = table.take(idx)
        experts = [
            _contributions(snap, name, e.model, sub, outputs[e.model][idx])
            for e in predictor.experts
        ]
        served = predictor._score_checked({m: outputs[m][idx] for m in predictor.models}, tenant)
        found = attribute(
            experts,
            [e.beta for e in predictor.experts],
            [e.weight for e in predictor.experts],
            predictor.tenant_map(tenant).quantile_map,
            final=served.score,
        )
        for row, i in enumerate(idx_list):
            out[i] = Reasons(
                event_id=None if event_ids is None else event_ids[i],
                predictor=name,
                score=float(served.score[row]),
                base=float(found.base[row]),
                top=tuple(Reason(f, c) for f, c in found.top(row, top)),
            )
    return [r for r in out if r is not None]


def _contributions(
    snap: Snapshot, predictor: str, model: str, table: FeatureTable, output: ScoreArray
) -> ExpertContributions:
    try:
        explainer = snap.explainer(model)
    except ReasonsUnavailableError as e:
        raise ReasonsUnavailableError(f"predictor {predictor!r}: {e}") from None
    names = explainer.feature_names
    values, bias = explainer.contributions(table.matrix(names))
    return ExpertContributions(names, values, bias, output)
