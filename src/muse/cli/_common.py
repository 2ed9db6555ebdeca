"""What every ``muse`` command shares: the consoles, argument types and the failure path.

Exit codes: 0 success, 1 a check failed (report gates), 2 bad input or an invalid config —
with a message naming what is wrong, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["ConfigArg", "IntentOpt", "err", "fail", "out", "print_config_error"]

out = Console()
err = Console(stderr=True)

ConfigArg = Annotated[
    Path, typer.Argument(help="Deployment config (muse.yaml).", show_default=False)
]
IntentOpt = Annotated[
    list[str],
    typer.Option("--intent", "-i", help="Intent attribute as key=value; repeat for several."),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as an error and exit with ``code`` (2: bad input)."""
    # Messages quote user input (intents, paths, YAML): escaped, so "[...]" is not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_config_error(config: Path, issues: Sequence[object]) -> NoReturn:
    """List every problem of an invalid config and exit 2."""
    err.print(f"[bold red]{escape(str(config))}: invalid[/]", highlight=False, soft_wrap=True)
    for issue in issues:
        err.print(f"  - {issue}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)
