"""``muse demo``: run the model lifecycle end to end on generated data (paper §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from muse.cli import app, invoke
from muse.cli._common import fail, out


@app.command()
def demo(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the deployment, reports and summary.md (must be empty)."
        ),
    ] = Path("muse-demo"),
    seed: Annotated[
        int, typer.Option(help="Seed of the generated tenants and traffic.", min=0)
    ] = 0,
    scale: Annotated[
        float,
        typer.Option(
            help="Multiplies every event count; below 1 the quantile fits need --force "
            "(fewer events than Eq. 5 asks for), and the demo says so."
        ),
    ] = 1.0,
    force: Annotated[
        bool, typer.Option(help="Replace the outputs of an earlier run in --out.")
    ] = False,
) -> None:
    """Train experts on generated multi-tenant traffic and run the lifecycle commands:
    a new tenant's cold start (Fig. 4), 2 → 3 experts via shadow, the refused p1.5 and the
    model-CI gate (Fig. 6), calibration (Table 1); then what each tenant saw at its
    thresholds. Deterministic given --seed and --scale."""
    from muse.demo import DemoError, OutputExistsError, run_demo

    if not 0.0 < scale <= 10.0:
        fail(f"--scale must be in (0, 10], got {scale!r}")
    try:
        run_demo(out_dir, seed=seed, scale=scale, force=force, console=out, commands=invoke)
    except OutputExistsError as e:
        fail(str(e))
    except DemoError as e:
        fail(str(e), code=1)
