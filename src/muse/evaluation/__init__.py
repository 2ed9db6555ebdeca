"""Offline evaluation for reports and model CI (paper §3): alignment to R, calibration, ranking.

Reads arrays, never the request path: the scores come from the score lake or batch
scoring, and the numbers feed ``muse report`` and its pass/fail gates.
"""

from muse.evaluation.alignment import AlignmentBin, BinAlignment, relative_error_by_bin, tail_edges
from muse.evaluation.metrics import (
    brier_score,
    ece_sweep_em,
    pr_auc,
    recall_at_fpr,
    wilson_interval,
)

__all__ = [
    "AlignmentBin",
    "BinAlignment",
    "brier_score",
    "ece_sweep_em",
    "pr_auc",
    "recall_at_fpr",
    "relative_error_by_bin",
    "tail_edges",
    "wilson_interval",
]
