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
from muse.cli._common import ConfigArg, err, fail, out
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


@app.command("score-file")
def score_file(
    config: ConfigArg,
    events: Annotated[
        Path,
        typer.Option(
            help="Events: Parquet or CSV with a column per intent attribute (tenant "
            "required) and per feature; event_id and timestamp when present."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Parquet file of lake rows to write (appears whole at the end)."
        ),
    ] = None,
    lake: Annotated[
        str | None,
        typer.Option(help="Write into this score lake (a folder or fsspec URL) instead."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Events per batch.")] = 65_536,
    shadows: Annotated[
        bool, typer.Option("--shadows/--no-shadows", help="Score the shadow predictors too.")
    ] = True,
    restart: Annotated[
        bool, typer.Option(help="Discard an unfinished run's output instead of resuming it.")
    ] = False,
    errors: Annotated[
        Path | None,
        typer.Option(help="CSV file listing every row left out (line, unit, message)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    compression: Annotated[
        str,
        typer.Option(
            help="Parquet codec: lz4 (fast), zstd (smaller, as the service writes), snappy, none."
        ),
    ] = "lz4",
) -> None:
    """Score every event of a file through the serving path — routing, feature store,
    live and shadow predictors, maps — writing the rows the service would write to the
    lake. Resumes an interrupted run. Exit 1 when some rows were left out (each named by
    line with what is wrong), 2 when the run cannot start or go on."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from muse.backfill import score_file as run
    from muse.service import ScoringService

    if (output is None) == (lake is None):
        fail("give exactly one of --out FILE.parquet and --lake URL")
    try:
        service = ScoringService.from_config(config)
    except MuseError as e:
        fail(str(e))
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not progress,
        transient=True,
    )
    task = bar.add_task("scoring", total=None)

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    try:
        with bar:
            report = run(
                service.snapshot,
                events,
                out=output,
                lake=lake,
                batch_size=batch_size,
                shadows=shadows,
                restart=restart,
                errors=errors,
                progress=advance,
                compression=compression,
            )
    except (MuseError, OSError) as e:  # BackfillError, and any other error naming its cause
        fail(str(e))
    finally:
        service.close()
    if report.resumed_batches:
        out.print(f"resumed after {report.resumed_batches} finished batch(es)", highlight=False)
    out.print(
        f"[bold green]wrote[/] {escape(report.output)}: {report.rows_written:,} lake rows for "
        f"{report.scored:,} events ({report.events_per_second:,.0f} events/s this run)",
        highlight=False,
    )
    for predictor, (n, why) in sorted(report.shadow_errors.items()):
        err.print(f"shadow {escape(predictor)} did not score {n:,} events: {escape(why)}")
    if report.rejected:
        for row in report.errors[:20]:
            err.print(escape(str(row)), highlight=False)
        more = report.rejected - min(len(report.errors), 20)
        if more > 0:
            err.print(
                f"… and {more:,} more"
                + (
                    f": every one in {escape(str(errors))}"
                    if errors
                    else "; --errors FILE lists all"
                ),
                highlight=False,
            )
        err.print(f"[bold red]{report.rejected:,} row(s) left out[/]", highlight=False)
        raise typer.Exit(1)
