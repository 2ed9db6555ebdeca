"""The ``muse`` command line: parse, call the library, map errors to exit codes.

Exit codes: 0 success, 1 a check failed (reserved for report gates), 2 bad input or an
invalid config — with a message naming what is wrong, never a traceback. Each command
module registers its commands on :data:`app`; the library does the work, so a command
is what an operator could also do from Python.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from muse.extras import MissingExtraError

app = typer.Typer(
    name="muse",
    help="Serve multi-tenant risk scores whose distribution survives model updates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["app", "invoke", "main"]


def invoke(args: Sequence[str]) -> int:
    """Run ``muse ARGS`` in this process, as the console script would; its exit code.

    Usage errors (an unknown option, a missing argument) raise click's ``UsageError``
    instead of printing usage and exiting, so a program driving the CLI (the demo) can say
    which command line was wrong.
    """
    try:
        result = app(list(args), standalone_mode=False)
    except MissingExtraError as e:
        _missing_extra(e)
        return 2
    except typer.Exit as e:
        return int(e.exit_code)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return result if isinstance(result, int) else 0


from muse.cli import batch, console, core, demo, export, fleet, lifecycle, refresh, report  # noqa: E402, F401  (they register their commands)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except MissingExtraError as e:
        _missing_extra(e)
        sys.exit(2)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)


def _missing_extra(e: MissingExtraError) -> None:
    """An optional dependency a command needs is not installed (a scoring image lacks the
    ``reports`` extra, say): the install line, not a traceback."""
    from muse.cli._common import err

    err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
