"""``muse score-batch``: a predictor's raw aggregates for a file of events, offline.

The bridge from training to cold start: a new predictor has no map yet, so it cannot
serve, but its raw aggregates ``a`` (experts → T^C → A, the input of T^Q) on labelled
validation data are exactly what ``muse cold-start`` fits its Beta mixture to. Computed
by the predictor's own code (:meth:`Predictor.model_outputs`, :meth:`Predictor.aggregate`),
so they are the numbers serving will produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from muse.cli import app
from muse.cli._common import ConfigArg, fail, out
from muse.cli.lifecycle import PredictorOpt, load_lenient
from muse.errors import MuseError


@app.command("score-batch")
def score_batch(
    config: ConfigArg,
    predictor: PredictorOpt,
    events: Annotated[
        Path,
        typer.Option(
            help="Parquet file of events: one column per model feature (extra columns kept out)."
        ),
    ],
    output: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    label_column: Annotated[
        str | None,
        typer.Option(help="Column holding 0/1 labels: copied, and its share printed as the prior."),
    ] = None,
) -> None:
    """Write the predictor's raw aggregates (column `raw`, first) and each expert's output for
    every event of a Parquet file — the input of `muse cold-start`. Needs no T^Q map."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from muse.backends import ModelPool
    from muse.features import FeatureTable
    from muse.predictor import Expert, Predictor, TenantMap
    from muse.transforms import QuantileMap

    loaded = load_lenient(config, predictor)
    spec = loaded.spec.predictors[predictor]
    try:
        table = pq.read_table(events)
    except (OSError, pa.ArrowInvalid) as e:
        fail(f"cannot read events file {events}: {e}")
    try:
        pool = ModelPool()
        experts = [
            Expert(
                model=e.model,
                backend=pool.get(loaded.model_specs[e.model]),
                beta=loaded.spec.models[e.model].undersampling,
                weight=e.weight,
            )
            for e in spec.experts
        ]
        needed = sorted({f for x in experts for f in x.backend.feature_names})
        missing = [f for f in needed if f not in table.column_names]
        if missing:
            fail(f"{events} lacks feature column(s) {missing} that {predictor!r}'s models need")
        features = FeatureTable(
            {f: table.column(f).to_numpy(zero_copy_only=False).astype(np.float64) for f in needed}
        )
        # No map is needed for `raw`; an identity map stands in for T^Q.
        identity = QuantileMap(
            source=np.array([0.0, 1.0]),
            target=np.array([0.0, 1.0]),
            levels=np.array([0.0, 1.0]),
            n_samples=2,
        )
        compiled = Predictor(
            name=predictor,
            experts=tuple(experts),
            default_map=TenantMap(identity, "identity"),
            tenant_maps={},
            aggregation=spec.aggregation,
        )
        result = compiled.score(features, tenant="")
        raw = result.raw
        outputs = result.experts
    except (MuseError, ValueError) as e:
        fail(str(e))
    columns: dict[str, object] = {"raw": raw}
    columns.update({f"expert_{k}": v for k, v in outputs.items()})
    if label_column is not None:
        if label_column not in table.column_names:
            fail(f"{events} has no column {label_column!r}; columns: {table.column_names}")
        labels = table.column(label_column).to_numpy(zero_copy_only=False)
        columns[label_column] = labels
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), output)
    out.print(
        f"[bold green]wrote[/] {escape(str(output))}: {raw.size:,} raw aggregates of {predictor}",
        highlight=False,
    )
    if label_column is not None:
        out.print(f"prior (share of positives): {float(np.mean(labels)):.6g}", highlight=False)
