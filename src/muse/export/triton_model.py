"""Triton Python-backend model serving one LightGBM binary classifier.

Not imported by muse: :mod:`muse.export.triton` copies this file as ``<model>/<version>/
model.py`` next to ``model.txt``. A production Triton image has lightgbm installed where its
Python backend finds it. In the tests, Triton's backend stub embeds the interpreter it was
started with and sees no venv (nor honours ``PYTHONPATH``), so the venv's site-packages
comes from ``MUSE_TRITON_SITE_PACKAGES``, which :func:`muse.testing.start_triton` sets; it
goes first on ``sys.path`` so the venv's numpy (< 2, which the stub is built against) wins
over any numpy of the base interpreter.

With dynamic batching Triton hands ``execute`` several requests at once: their rows are
scored in one LightGBM call and split back, so each response holds its own request's rows.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

_SITE_PACKAGES = os.environ.get("MUSE_TRITON_SITE_PACKAGES")
if _SITE_PACKAGES and _SITE_PACKAGES not in sys.path:
    sys.path.insert(0, _SITE_PACKAGES)

import lightgbm  # noqa: E402
import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402


class TritonPythonModel:
    """The model interface Triton's Python backend calls (``initialize``, ``execute``)."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self._input: str = config["input"][0]["name"]
        self._output: str = config["output"][0]["name"]
        self._dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        here = os.path.dirname(os.path.abspath(__file__))
        self._booster = lightgbm.Booster(model_file=os.path.join(here, "model.txt"))

    def execute(self, requests: list[Any]) -> list[Any]:
        try:
            batches = [
                pb_utils.get_input_tensor_by_name(r, self._input).as_numpy() for r in requests
            ]
            rows = np.concatenate(batches).astype(np.float64, copy=False)
            scores = self._booster.predict(rows, num_threads=1)
        except Exception as exc:
            error = pb_utils.TritonError(f"LightGBM scoring failed: {type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        scores = np.asarray(scores, dtype=self._dtype).reshape(-1, 1)
        bounds = np.cumsum([len(b) for b in batches])[:-1]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self._output, part)])
            for part in np.split(scores, bounds)
        ]
