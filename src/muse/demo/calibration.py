"""Scenario 3 (paper §3.3, Table 1): posterior correction, per expert and for the ensemble.

The experts were trained on undersampled data (β = 0.18, 0.18, 0.02), so their raw outputs
overstate the fraud probability — m3's by about fifty-fold. Table 1 measures what Eq. 3's
correction buys, on two datasets: the held-out validation days (in distribution) and a
tenant's live traffic with the labels it sent back (out of distribution: later weeks,
drift). The live rows come from ``muse report calibration``; the validation rows from the
expert outputs ``muse score-batch`` wrote during p2's cold start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from muse.demo.operator import Operator
from muse.demo.world import FOCUS, Week, iso_day, week_start
from muse.evaluation.calibration import CalibrationRow, calibration_table
from muse.evaluation.render import Report, calibration_table_view
from muse.scorelog import Window

__all__ = ["CalibrationResult", "run"]

PREDICTOR = "p2"


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """Table 1's rows: on the validation days, and on the focus tenant's live data."""

    validation: tuple[CalibrationRow, ...]
    live: tuple[CalibrationRow, ...]


def run(op: Operator) -> CalibrationResult:
    op.section("Scenario 3 — calibration with and without posterior correction (Table 1)")
    folder = op.reports / "3-calibration"
    op.muse(
        "report",
        "calibration",
        op.config,
        "-p",
        PREDICTOR,
        "-t",
        FOCUS,
        "--labels",
        op.labels,
        "--since",
        iso_day(Week.GATE),
        "--out",
        folder,
    )
    spec = op.service.snapshot.config.spec
    experts_of = spec.predictors[PREDICTOR].experts
    betas = {e.model: spec.models[e.model].undersampling for e in experts_of}
    weights = {e.model: e.weight for e in experts_of}

    with op.reader() as reader:
        table = reader.scores(
            PREDICTOR, FOCUS, window=Window(since=week_start(Week.GATE)), with_labels=True
        )
    experts = table.column("experts").to_pylist()
    live = calibration_table(
        {m: np.array([dict(row)[m] for row in experts]) for m in betas},
        betas,
        table.column("label").to_numpy(),
        weights,
    )

    scored = pq.read_table(op.deployment / "training" / f"{PREDICTOR}-validation.parquet")
    validation = calibration_table(
        {m: scored.column(f"expert_{m}").to_numpy() for m in betas},
        betas,
        scored.column("label").to_numpy(),
        weights,
    )
    report = Report(f"Calibration of {PREDICTOR}'s experts on the validation days (Table 1, top)")
    report.notes.append(
        f"{scored.num_rows:,} held-out events of the training tenants, "
        f"{int(np.sum(scored.column('label').to_numpy())):,} frauds; ECE is ECE_SWEEP^EM (p = 1)"
    )
    header, body = calibration_table_view(validation)
    report.add("with and without posterior correction", header, body)
    path = report.write(folder, "validation.md")
    for t in report.tables():
        op.console.print(t)
    op.say(f"wrote {op.rel(path)}")
    return CalibrationResult(validation=tuple(validation), live=tuple(live))
