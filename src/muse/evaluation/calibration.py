"""Calibration of experts and their ensemble, with and without posterior correction (Table 1).

Experts are trained on undersampled data (β of the negatives kept, paper §2.3.1), so their
raw outputs overstate the fraud probability; T^C undoes it. The paper's Table 1 shows the
effect on ECE and Brier score per expert and for the ensemble: averaging uncorrected
experts trained with different β mixes differently biased probabilities, which is why
every expert is corrected *before* aggregation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from muse.evaluation.metrics import brier_score, ece_sweep_em
from muse.transforms import posterior_correction, weighted_mean

__all__ = ["ENSEMBLE", "CalibrationRow", "calibration_table"]

#: Name of the ensemble's row.
ENSEMBLE = "ensemble"


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """ECE (ECE_SWEEP^EM, p = 1) and Brier score of one expert or the ensemble."""

    name: str
    beta: float | None
    ece_raw: float
    ece_corrected: float
    brier_raw: float
    brier_corrected: float


def calibration_table(
    experts: Mapping[str, npt.ArrayLike],
    betas: Mapping[str, float],
    labels: npt.ArrayLike,
    weights: Mapping[str, float] | None = None,
) -> list[CalibrationRow]:
    """One row per expert (raw model output vs T^C-corrected) and one for the ensemble
    (weighted mean of raw outputs vs of corrected ones — what muse serves as ``a``).

    ``experts`` maps each model name to its raw outputs on the labelled events, in the
    same order as ``labels``; ``betas`` and ``weights`` (default equal) come from the config.
    """
    if not experts:
        raise ValueError("experts is empty: nothing to evaluate")
    missing = sorted(set(experts) - set(betas))
    if missing:
        raise ValueError(f"no undersampling β given for expert(s) {missing}")
    y = np.asarray(labels)
    names = list(experts)
    raw = {k: np.asarray(experts[k], dtype=np.float64) for k in names}
    corrected = {k: posterior_correction(raw[k], betas[k]) for k in names}
    rows = [
        CalibrationRow(
            name=k,
            beta=float(betas[k]),
            ece_raw=ece_sweep_em(raw[k], y),
            ece_corrected=ece_sweep_em(corrected[k], y),
            brier_raw=brier_score(raw[k], y),
            brier_corrected=brier_score(corrected[k], y),
        )
        for k in names
    ]
    if len(names) > 1:
        w = np.array([1.0 if weights is None else weights[k] for k in names], dtype=np.float64)
        ens_raw = weighted_mean(np.column_stack([raw[k] for k in names]), w)
        ens_cor = weighted_mean(np.column_stack([corrected[k] for k in names]), w)
        rows.append(
            CalibrationRow(
                name=ENSEMBLE,
                beta=None,
                ece_raw=ece_sweep_em(ens_raw, y),
                ece_corrected=ece_sweep_em(ens_cor, y),
                brier_raw=brier_score(ens_raw, y),
                brier_corrected=brier_score(ens_cor, y),
            )
        )
    return rows
