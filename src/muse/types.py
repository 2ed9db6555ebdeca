"""Type aliases shared across muse, so signatures say what an array *means*."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["FeatureMatrix", "Intent", "ScoreArray"]

#: One float per event: raw model outputs, corrected scores, aggregates or final scores.
ScoreArray: TypeAlias = npt.NDArray[np.float64]

#: Rows are events, columns are one model's features in that model's declared order.
FeatureMatrix: TypeAlias = npt.NDArray[np.float64]

#: Intent attributes of one event by their singular names (``tenant``, ``geography``, …).
Intent: TypeAlias = Mapping[str, str]
