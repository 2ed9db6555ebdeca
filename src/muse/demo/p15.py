"""The paper's "p1.5" (§3.2, Fig. 6): the new ensemble served through the old ensemble's map.

Adding m3 to p1 changes the distribution of the raw aggregate ``a`` — a third, differently
calibrated expert enters the mean — so p1's tenant maps, fitted to {m1, m2}'s aggregates,
no longer send a tenant's traffic to R: the alert rate at every threshold moves. muse makes
that mistake undeployable (a map records the fingerprint of the predictor it was fitted
for), so the demo shows it twice: the config that would deploy it is refused, and the
scores it *would* have served are computed offline — p2's raw aggregates from the lake
through p1's map — to show why. Ranking is untouched (T^Q is monotone), so p1.5's recall is
p2's to the last digit: the damage is all in the alert rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from muse.demo.deployment import REFERENCE, Stage
from muse.demo.operator import DemoError, Operator
from muse.demo.summary import AlertRow, alert_row
from muse.demo.world import FOCUS, week_start
from muse.errors import ConfigError
from muse.evaluation import recall_at_fpr, relative_error_by_bin
from muse.evaluation.compare import GATE_LEVELS, proven_error
from muse.evaluation.render import Report, alignment_table, plot_alignment
from muse.scorelog import Window

__all__ = ["FPR", "P15", "Fig6", "figure6", "refuse"]

P15 = "p1.5"
#: Recall is compared at the false-positive rate the paper reports (1 %).
FPR = 0.01


def refuse(op: Operator) -> str:
    """Write the p1.5 config, show that ``muse validate`` and a reload both refuse it;
    return the reload's error message."""
    variant = op.deployment / "muse-p1.5.yaml"
    op.say("what if m3 were simply added to p1, keeping p1's maps (the paper's p1.5)?")
    op.write_config(Stage.P15, variant)
    op.muse("validate", variant, expect=(2,))
    try:
        op.reload(variant)
    except ConfigError as e:
        message = str(e)
    else:
        raise DemoError(f"{variant} was accepted: a map fitted for p1 served another ensemble")
    if "fingerprint mismatch" not in message:
        raise DemoError(f"{variant} was refused, but not for its fingerprint: {message}")
    op.say(
        "a reload (POST /admin/reload) refuses it the same way and the running config keeps "
        f"serving (version {op.service.snapshot.version}):"
    )
    op.console.print(message, style="red", highlight=False, markup=False, soft_wrap=True)
    return message


@dataclass(frozen=True, slots=True)
class Fig6:
    """p1, p1.5 and p2 on the same labelled events of the focus tenant."""

    max_error: Mapping[str, float]
    proven_error: Mapping[str, float]
    recall: Mapping[str, float]
    rows: tuple[AlertRow, ...]


def figure6(op: Operator, week: int) -> Fig6:
    """Fig. 6 and the recall comparison, on ``week``'s events that p1 (live) and p2
    (shadow, own map) both scored; p1.5 is p2's raw aggregate through p1's tenant map."""
    window = Window(week_start(week), week_start(week + 1))
    with op.reader() as reader:
        paired = reader.paired("p1", "p2", FOCUS, window=window, with_labels=True)
    if paired.num_rows == 0:
        raise DemoError(f"no events of {FOCUS} scored by both p1 and p2 in week {week}")
    p1_map = op.service.snapshot.config.transforms["p1"].tenants[FOCUS]
    scores = {
        "p1": paired.column("live_score").to_numpy(),
        P15: p1_map.quantile_map(paired.column("candidate_raw").to_numpy()),
        "p2": paired.column("candidate_score").to_numpy(),
    }
    y = paired.column("label").to_numpy()
    levels = np.union1d(np.linspace(0.0, 1.0, 11), GATE_LEVELS[-5:])
    edges = REFERENCE.ppf(levels)
    edges[0], edges[-1] = 0.0, 1.0
    names = {
        "p1": f"p1 = {{m1, m2}} + its map {p1_map.label}",
        P15: f"p1.5 = {{m1, m2, m3}} + p1's map {p1_map.label}",
        "p2": "p2 = {m1, m2, m3} + its own map",
    }
    series = {
        names[k]: relative_error_by_bin(s, REFERENCE, np.unique(edges)) for k, s in scores.items()
    }
    folder = op.reports / "2-model-update"
    plot_alignment(series, folder / "fig6-alignment.png", title=f"tenant {FOCUS}, week {week}")
    recall = {k: recall_at_fpr(s, y, FPR) for k, s in scores.items()}

    report = Report(f"p1 → p1.5 → p2 for {FOCUS} (paper Fig. 6), week {week}")
    report.notes.append(
        f"{paired.num_rows:,} events scored by p1 (live) and p2 (shadow), {int(y.sum()):,} "
        "frauds. p1.5 is computed offline — p2's raw aggregates through p1's map — because "
        "muse refuses to deploy it (fingerprint mismatch)."
    )
    header, rows = alignment_table(series)
    report.add("relative error per score bin", header, rows, "fig6-alignment.png")
    report.add(
        f"ranking: recall at {FPR:.0%} FPR",
        ["predictor", "recall", "largest rel. error", "proven beyond noise (95 %)"],
        [
            [names[k], f"{recall[k]:.4f}", f"{a.max_abs_error:.0%}", f"{proven_error(a):.0%}"]
            for k, a in zip(scores, series.values(), strict=True)
        ],
    )
    path = report.write(folder)
    for table in report.tables():
        op.console.print(table)
    op.say(f"wrote {op.rel(path)} and {op.rel(folder / 'fig6-alignment.png')}")
    return Fig6(
        max_error={k: a.max_abs_error for k, a in zip(scores, series.values(), strict=True)},
        proven_error={k: proven_error(a) for k, a in zip(scores, series.values(), strict=True)},
        recall=recall,
        rows=tuple(
            alert_row(FOCUS, case, week, scores[k])
            for k, case in (
                ("p1", "p1 (live), own map v1"),
                (P15, "p1.5: p2 + p1's map (refused; offline)"),
                ("p2", "p2 (shadow), own map v1"),
            )
        ),
    )
