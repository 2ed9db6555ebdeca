"""``muse export``: what the systems around a deployment load, written from its config.

``muse export triton-repository CONFIG --out DEST`` writes the Triton model repository
that serves the config's remote (``kserve-v2``) models (:mod:`muse.export.triton`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from muse.cli import app
from muse.cli._common import ConfigArg, err, fail, out, print_config_error
from muse.errors import ConfigError, MuseError

export_app = typer.Typer(
    help="Write what the systems around a deployment load (model server repositories).",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@export_app.command("triton-repository")
def triton_repository(
    config: ConfigArg,
    dest: Annotated[
        str,
        typer.Option(
            "--out",
            help="Repository to write into: a folder or an fsspec URL (s3://bucket/models), "
            "what Triton's --model-repository names.",
            show_default=False,
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Only this kserve-v2 model of the config (repeatable)."),
    ] = None,
) -> None:
    """Write a Triton model repository serving CONFIG's kserve-v2 models: each model's
    `uri` (a LightGBM text file) under its server name and version, with the tensors its
    client uses. Other versions already there stay. Exit 2 naming what is wrong."""
    from muse.export import triton_models, write_triton_repository

    try:
        models = triton_models(config, model or None)
        written = write_triton_repository(models, dest)
    except ConfigError as e:
        print_config_error(config, e.issues)
    except (MuseError, OSError) as e:
        fail(str(e))
    for m, folder in zip(models, written, strict=True):
        err.print(
            f"{escape(m.name)} version {escape(m.version)} <- {escape(str(m.file))}",
            highlight=False,
            soft_wrap=True,
        )
        out.print(folder, highlight=False, soft_wrap=True, markup=False)
