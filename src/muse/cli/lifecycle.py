"""The lifecycle commands that write T^Q artifacts: ``muse fit quantiles`` and ``muse cold-start``.

Both load the config leniently (a predictor may not have a map yet: that is why they run)
and write the next immutable version where the config will find it; deploying it is a
``muse validate`` and a reload away.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from muse.cli import app
from muse.cli._common import ConfigArg, err, fail, out, print_config_error
from muse.errors import ConfigError, MuseError

if TYPE_CHECKING:
    from muse.config import LoadedConfig
    from muse.transforms import Reference

fit_app = typer.Typer(help="Fit tenant maps T^Q from the score lake.", no_args_is_help=True)
app.add_typer(fit_app, name="fit")

PredictorOpt = Annotated[
    str, typer.Option("--predictor", "-p", help="Predictor (as named in the config).")
]
#: Above this Jensen–Shannon divergence a cold-start fit is reported as poor. A good fit sits
#: at the histogram's noise floor (~1e-4–1e-3 for 10^4–10^5 scores); a single Beta, the
#: alternative the mixture exists to beat, is around 0.03–0.06.
POOR_FIT_JSD = 0.02
#: Alert rates at which a new map's held-out alignment is printed (the tail tenants act on).
CHECK_ALERT_RATES = (0.1, 0.05, 0.01, 0.005, 0.001)


def load_lenient(config: Path, *predictors: str) -> LoadedConfig:
    """The config, with missing or stale maps tolerated (these commands make maps); exit 2
    naming the first of ``predictors`` the config does not define."""
    from muse.config import load_config

    try:
        loaded = load_config(config, require_transforms=False)
    except ConfigError as e:
        print_config_error(config, e.issues)
    for predictor in predictors:
        if predictor not in loaded.spec.predictors:
            fail(
                f"no predictor {predictor!r} in {config}; predictors: "
                + ", ".join(sorted(loaded.spec.predictors))
            )
    return loaded


def alert_rate_table(title: str, scores: np.ndarray, reference: Reference) -> Table:
    """Observed vs expected alert rate at the reference thresholds of the tail."""
    table = Table(title=title)
    for col in ("alert rate (contract)", "threshold", "observed", "relative error"):
        table.add_column(col, justify="right")
    for rate in CHECK_ALERT_RATES:
        threshold = float(reference.ppf(np.array([1.0 - rate]))[0])
        observed = float(np.mean(scores > threshold)) if scores.size else float("nan")
        table.add_row(
            f"{rate:.1%}",
            f"{threshold:.4f}",
            f"{observed:.3%}",
            f"{observed / rate - 1:+.1%}",
        )
    return table


@fit_app.command("quantiles")
def fit_quantiles(
    config: ConfigArg,
    predictor: PredictorOpt,
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Fit this tenant's map.")
    ] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Fit a map for every tenant in the window.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="Window start (ISO date/datetime, UTC; inclusive).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Window end (ISO date/datetime, UTC; exclusive).")
    ] = None,
    role: Annotated[str, typer.Option(help="Rows to fit on: live, shadow or any.")] = "any",
    alert_rate: Annotated[
        float, typer.Option(help="Alert rate the map must resolve (Eq. 5's a).")
    ] = 0.005,
    rel_error: Annotated[
        float, typer.Option(help="Tolerated relative error of that alert rate (Eq. 5's δ).")
    ] = 0.2,
    holdout: Annotated[
        float, typer.Option(help="Latest share of the window held out to check the new map.")
    ] = 0.2,
    force: Annotated[
        bool, typer.Option(help="Fit even when the sample is smaller than Eq. 5 asks for.")
    ] = False,
    lake: Annotated[
        str | None, typer.Option(help="Score lake to read (default: the config's lake.url).")
    ] = None,
) -> None:
    """Fit a tenant's T^Q on the predictor's raw aggregates in the lake, written as the next
    version. Refuses (exit 2) a sample smaller than Eq. 5 requires unless --force."""
    from muse.fitting.workflows import fit_tenant_maps
    from muse.scorelog import Window

    if (tenant is None) == (not all_tenants):
        fail("give exactly one of --tenant T or --all-tenants")
    if role not in ("live", "shadow", "any"):
        fail(f"--role must be live, shadow or any, got {role!r}")
    for name, value in (("--alert-rate", alert_rate), ("--rel-error", rel_error)):
        if not 0.0 < value < 1.0:
            fail(f"{name} must be in (0, 1), got {value!r}")
    if not 0.0 <= holdout < 1.0:
        fail(f"--holdout must be in [0, 1), got {holdout!r}")
    loaded = load_lenient(config, predictor)
    if lake is None and loaded.lake_url is None:
        fail(f"{config} has no `lake` section; pass --lake URL")
    try:
        window = Window.parse(since, until)
    except ValueError as e:
        fail(str(e))
    reference = loaded.references[loaded.spec.predictors[predictor].reference]
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} tenants"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task(f"fitting {predictor}", total=None)

            def show(name: str, stage: str) -> None:
                if stage == "done":
                    progress.advance(task)
                else:
                    progress.update(task, description=f"{stage} {name}")

            done = fit_tenant_maps(
                loaded,
                predictor,
                tenants=[tenant] if tenant is not None else None,
                lake=lake,
                window=window,
                role=None if role == "any" else role,
                alert_rate=alert_rate,
                rel_error=rel_error,
                holdout=holdout,
                force=force,
                on_tenant=show,
            )
    except (MuseError, ValueError, OSError) as e:
        fail(str(e))
    for fitted in done.written:
        result = fitted.fit
        out.print(
            f"[bold green]wrote[/] {escape(str(fitted.path))} — {fitted.tenant}, "
            f"{result.artifact.label}, fitted on {result.n_fit:,} events "
            f"(Eq. 5 asks {result.required:,})",
            highlight=False,
        )
        if result.n_holdout:
            out.print(
                alert_rate_table(
                    f"{fitted.tenant}: the new map on {result.n_holdout:,} held-out events",
                    result.holdout_scores,
                    reference,
                )
            )
    if done.written:
        out.print(
            f"deploy: muse validate {escape(str(config))}, then POST /admin/reload (or SIGHUP)",
            highlight=False,
        )
    if done.refused:
        for refusal in done.refused:
            err.print(
                f"[bold red]refused:[/] {escape(f'tenant {refusal.tenant}: {refusal.reason}')}",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(2)


@app.command("cold-start")
def cold_start(
    config: ConfigArg,
    predictor: PredictorOpt,
    training_scores: Annotated[
        Path,
        typer.Option(
            help="The predictor's raw aggregates on its training data (after T^C and A): "
            ".npy, .json, .parquet or .csv (column 'score' unless --column).",
        ),
    ],
    prior: Annotated[
        float, typer.Option(help="Fraud share of that training data (the mixture weight w).")
    ],
    column: Annotated[
        str | None, typer.Option(help="Column of a Parquet/CSV file to read.")
    ] = None,
    trials: Annotated[
        int, typer.Option(help="Differential-evolution runs; the best JSD wins (Eq. 8).", min=1)
    ] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the trials.", min=0)] = 0,
) -> None:
    """Fit the paper's Beta mixture (Eqs. 6–8) to the predictor's training scores and write
    its default map T^Q_v0, used for every tenant without a map of its own."""
    from muse.fitting.workflows import fit_cold_start
    from muse.scorefiles import read_score_file

    if not 0.0 < prior < 1.0:
        fail(f"--prior must be in (0, 1) (the fraud share of the training data), got {prior!r}")
    loaded = load_lenient(config, predictor)
    reference = loaded.references[loaded.spec.predictors[predictor].reference]
    try:
        scores = read_score_file(training_scores, column)
        with err.status(f"fitting the Beta mixture to {scores.size:,} scores ({trials} trials)"):
            done = fit_cold_start(
                loaded,
                predictor,
                scores,
                prior,
                trials=trials,
                seed=seed,
                source=training_scores.name,
            )
    except (MuseError, ValueError, OSError) as e:
        fail(str(e))
    mixture, artifact, path = done.mixture, done.artifact, done.path
    qmap = artifact.quantile_map
    p = mixture.params
    table = Table(title=f"Beta mixture of {predictor} (Eq. 6), best of {trials} trials")
    for col in ("component", "a", "b", "weight", "mean"):
        table.add_column(col, justify="right")
    table.add_row(
        "legitimate", f"{p.a0:.4g}", f"{p.b0:.4g}", f"{1 - p.w:.4f}", f"{p.a0 / (p.a0 + p.b0):.4g}"
    )
    table.add_row(
        "fraud", f"{p.a1:.4g}", f"{p.b1:.4g}", f"{p.w:.4f}", f"{p.a1 / (p.a1 + p.b1):.4g}"
    )
    out.print(table)
    out.print(
        f"JSD to the training scores: {mixture.jsd:.2e}; moment loss L: {mixture.loss:.2e}",
        highlight=False,
    )
    if mixture.jsd > POOR_FIT_JSD:
        err.print(
            f"[bold yellow]warning:[/] the mixture is far from the training scores (JSD "
            f"{mixture.jsd:.3f} > {POOR_FIT_JSD}): every trial may have stopped in a poor "
            "minimum; check the alert rates below, and retry with more --trials or another --seed",
            highlight=False,
            soft_wrap=True,
        )
    out.print(alert_rate_table("the default map on the training scores", qmap(scores), reference))
    out.print(
        f"[bold green]wrote[/] {escape(str(path))} — {artifact.label}, the map of every tenant "
        f"of {predictor} without its own",
        highlight=False,
    )
