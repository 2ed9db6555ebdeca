"""Shared pieces of the real-server tests: the model, the rows sent, how a server starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from muse.backends import ModelPool, ModelSpec
from muse.datasets import generate_events, make_tenants
from muse.testing import (
    RunningServer,
    ServerKind,
    mlserver_settings,
    start_mlserver,
    start_triton,
    triton_repository,
)

__all__ = ["M1", "N_ROWS", "REPO", "Rows", "StartServer", "make_rows", "start"]

REPO = Path(__file__).resolve().parents[2]
#: The quickstart's LightGBM expert, served as "m1" (and by Triton also as "m1_fp64").
M1 = REPO / "examples" / "quickstart" / "models" / "m1.txt"
#: Rows sent in the equivalence tests.
N_ROWS = 300

StartServer = Callable[[ServerKind], RunningServer]


@dataclass(frozen=True)
class Rows:
    """Feature rows as sent over the wire and m1's in-process scores of exactly those rows."""

    features: npt.NDArray[np.float32]
    expected: npt.NDArray[np.float64]
    features64: npt.NDArray[np.float64]
    expected64: npt.NDArray[np.float64]


def make_rows() -> Rows:
    """``N_ROWS`` generated events of three tenants, scored in process by m1.

    ``expected`` scores the FP32 values widened back to float64, i.e. exactly the numbers
    an FP32 server receives, so a served score may differ from it only by output rounding.
    """
    backend = ModelPool().get(ModelSpec(kind="lightgbm", path=M1))
    tenants = make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3"))
    features64 = generate_events(tenants, N_ROWS, seed=11).feature_matrix(backend.feature_names)
    features = features64.astype(np.float32)
    return Rows(
        features=features,
        expected=backend.predict(features.astype(np.float64)),
        features64=features64,
        expected64=backend.predict(features64),
    )


def start(kind: ServerKind, root: Path) -> RunningServer:
    """A started server of ``kind`` serving m1, its files under ``root``."""
    if kind == "triton":
        repository = triton_repository({"m1": M1}, root / "repository")
        triton_repository({"m1_fp64": M1}, repository, datatype="FP64")
        return start_triton(repository)
    return start_mlserver(mlserver_settings({"m1": M1}, root / "mlserver"))
