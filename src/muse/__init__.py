"""muse: multi-tenant risk-score serving with seamless model updates (the MUSE system).

The public surface lives in submodules, each with a pinned ``__all__``:
``muse.transforms`` (T^C, A, T^Q, R), ``muse.routing``, ``muse.predictor``,
``muse.backends``, ``muse.config``, ``muse.service``, ``muse.fitting``, ``muse.datasets``
and ``muse.errors``. Importing ``muse`` itself stays cheap: no model runtime is loaded.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("muse-serve")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
