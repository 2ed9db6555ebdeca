"""Running ``muse`` commands in process, for the CLI tests."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from muse.cli import app

__all__ = ["invoke"]


def invoke(*args: str) -> Result:
    """Run ``muse *args``; every outcome must be a clean exit, never a traceback."""
    result = CliRunner().invoke(app, list(args))
    # An escaping exception would be a traceback for users.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result
