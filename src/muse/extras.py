"""Optional dependencies, imported where they are used, with an error that names the extra.

A scoring replica's image holds what serving needs and no more: DuckDB (reading the score
lake) and matplotlib (report plots) are the ``reports`` extra, installed by
``pip install 'muse-serve[reports]'``. Code that needs one calls :func:`require` at the point
of use, so importing muse (and serving) never pulls them in, and a command that needs a
missing one fails with the install line instead of an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from muse.errors import MuseError

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: Which extra provides each optional top-level module.
EXTRAS: dict[str, str] = {
    "duckdb": "reports",
    "matplotlib": "reports",
    "jinja2": "console",
    "itsdangerous": "console",
    "python_multipart": "console",
    "s3fs": "s3",
    "gcsfs": "gcs",
}


class MissingExtraError(MuseError, ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a top-level name in :data:`EXTRAS`, or a submodule of one).

    ``purpose`` completes "… needs <module>", e.g. ``"reading the score lake"``.
    """
    top = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.partition(".")[0] != top:
            raise  # the module is there but one of its own imports is broken: not ours to hide
        extra = EXTRAS.get(top, top)
        raise MissingExtraError(
            f"{purpose} needs {top}, which is not installed: "
            f"pip install 'muse-serve[{extra}]' (the `{extra}` extra)"
        ) from None
