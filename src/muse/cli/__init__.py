"""The ``muse`` command line: parse, call the library, map errors to exit codes.

Exit codes: 0 success, 1 a check failed (reserved for report gates), 2 bad input or an
invalid config — with a message naming what is wrong, never a traceback. Each command
module registers its commands on :data:`app`; the library does the work, so a command
is what an operator could also do from Python.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="muse",
    help="Serve multi-tenant risk scores whose distribution survives model updates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from muse.cli import batch, core, demo, lifecycle, report  # noqa: E402, F401  (they register their commands)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
