"""Before the scenarios: train p1's experts, give p1 its cold-start map, go live, fit maps.

This is the lifecycle's first loop (docs/lifecycle.md, steps 1–6) for the established
tenants, so that scenario 1 starts where the paper's does: a running deployment whose
tenants each have their own map, and a new tenant that has none.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from muse.datasets import FEATURE_NAMES, EventFrame
from muse.demo.deployment import Stage
from muse.demo.experts import EXPERTS, train_expert
from muse.demo.operator import Operator
from muse.demo.world import ESTABLISHED, Week, World, iso_day

__all__ = ["cold_start", "go_live", "train"]


def train(op: Operator, world: World, models: tuple[str, ...], seed: int) -> None:
    """Train ``models`` on the training days (the data scientist's step, outside muse)."""
    frame = world.training()
    for name in models:
        recipe = EXPERTS[name]
        path = train_expert(recipe, frame, op.deployment / "models", seed)
        op.say(
            f"train {name}: {recipe.backend}, β = {recipe.beta} (negatives kept), on "
            f"{len(frame):,} events of {', '.join(ESTABLISHED)} → {op.rel(path)}; features: "
            + ", ".join(recipe.features)
        )


def cold_start(op: Operator, world: World, predictor: str) -> None:
    """The predictor's default map (§2.4): raw aggregates on validation data, then the
    Beta-mixture fit — both by their commands, as docs/lifecycle.md steps 2–3."""
    frame = world.validation()
    events = op.deployment / "training" / "validation.parquet"
    if not events.exists():
        export_events(frame, events)
        op.say(
            f"the training pipeline exports its held-out validation days: {len(frame):,} "
            f"labelled events at the natural fraud rate → {op.rel(events)}"
        )
    scores = op.deployment / "training" / f"{predictor}-validation.parquet"
    op.muse(
        "score-batch",
        op.config,
        "-p",
        predictor,
        "--events",
        events,
        "--out",
        scores,
        "--label-column",
        "label",
    )
    prior = float(frame.label.mean())
    op.muse(
        "cold-start",
        op.config,
        "-p",
        predictor,
        "--training-scores",
        scores,
        "--column",
        "raw",
        "--prior",
        f"{prior:.6g}",
    )


def go_live(op: Operator, world: World, seed: int, fit_args: tuple[str, ...]) -> None:
    """p1 = {m1, m2} from training to live, with its own map for every established tenant."""
    op.section("Go-live: p1 = {m1, m2} for bank1, bank2 and shop3")
    train(op, world, ("m1", "m2"), seed)
    op.write_config(Stage.P1)
    cold_start(op, world, "p1")
    op.muse("validate", op.config)
    op.start_serving()
    op.serve(
        Week.HISTORY,
        world.week(Week.HISTORY, ESTABLISHED),
        " — every tenant on p1's default map",
    )
    op.say("a week of traffic is in the lake: fit each tenant's own map (Eq. 5 permitting)")
    op.muse(
        "fit",
        "quantiles",
        op.config,
        "-p",
        "p1",
        "--all-tenants",
        "--since",
        iso_day(Week.HISTORY),
        "--until",
        iso_day(Week.HISTORY + 1),
        *fit_args,
    )
    op.reload()


def export_events(frame: EventFrame, path: Path) -> Path:
    """``frame`` as the Parquet file ``muse score-batch`` reads: features, label, ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, pa.Array] = {
        "event_id": pa.array(frame.event_id.tolist(), pa.string()),
        "tenant": pa.array(frame.tenant.tolist(), pa.string()),
    }
    columns.update({name: pa.array(frame.features[name]) for name in FEATURE_NAMES})
    columns["label"] = pa.array(frame.label, pa.int8())
    pq.write_table(pa.table(columns), path)
    return path
