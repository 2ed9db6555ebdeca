"""One contract suite, run against every backend and every model layout it accepts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from muse.backends import ModelBackend, ModelSpec, file_digest, load_backend

#: case name -> (kind, whether the config must list the features). Without them the names
#: come from the model file itself (booster, ONNX metadata or one input per feature).
CASES: dict[str, tuple[str, bool]] = {
    "lightgbm": ("lightgbm", False),
    "xgboost-json": ("xgboost", False),
    "xgboost-ubj": ("xgboost", False),
    "xgboost-unnamed": ("xgboost", True),
    "onnx-lr": ("onnx", True),
    "onnx-lr-zipmap": ("onnx", True),
    "onnx-lr-double": ("onnx", True),
    "onnx-rf-columns": ("onnx", False),
    "onnx-lightgbm": ("onnx", False),
    "onnx-lightgbm-zipmap": ("onnx", False),
    "onnx-xgboost": ("onnx", False),
    "onnx-n1": ("onnx", False),
    "onnx-flat": ("onnx", False),
    "onnx-dynamic-width": ("onnx", False),
    "onnx-per-feature": ("onnx", False),
}


@pytest.fixture
def spec_for(files: dict[str, Path], features: tuple[str, ...]) -> Callable[..., ModelSpec]:
    def spec_for(case: str, path: Path | None = None) -> ModelSpec:
        kind, in_config = CASES[case]
        listed = features if in_config else None
        return ModelSpec(kind=kind, path=path or files[case], features=listed)

    return spec_for


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(case: str, spec_for: Callable[..., ModelSpec]) -> ModelBackend:
    return load_backend(spec_for(case))


def test_is_a_model_backend(backend: ModelBackend, case: str) -> None:
    assert isinstance(backend, ModelBackend)
    assert backend.kind == CASES[case][0]
    assert type(backend).__name__ in repr(backend)


def test_scores_are_float64_probabilities_one_per_row(
    backend: ModelBackend, rows: np.ndarray
) -> None:
    scores = backend.predict(rows[:200])
    assert scores.shape == (200,)
    assert scores.dtype == np.float64
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert np.unique(scores).size > 10, "scores must depend on the features"


def test_single_event_scores_like_its_row_in_a_batch(
    backend: ModelBackend, case: str, rows: np.ndarray
) -> None:
    batch = backend.predict(rows[:50])
    singles = np.concatenate([backend.predict(rows[i : i + 1]) for i in range(50)])
    # ONNX Runtime picks different float32 matmul kernels for one row and for many, so
    # linear models may differ by an ulp of float32 (~1.2e-7); tree models are exact.
    atol = 1e-6 if CASES[case][0] == "onnx" else 0.0
    np.testing.assert_allclose(singles, batch, rtol=0, atol=atol)


def test_scores_are_the_positive_class(
    backend: ModelBackend, rows: np.ndarray, labels: np.ndarray
) -> None:
    scores = backend.predict(rows)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    assert positives.mean() > negatives.mean() + 0.3


def test_feature_names(backend: ModelBackend, features: tuple[str, ...]) -> None:
    assert backend.feature_names == features


def test_digest_is_the_file_content_hash(
    case: str,
    backend: ModelBackend,
    files: dict[str, Path],
    spec_for: Callable[..., ModelSpec],
    tmp_path: Path,
) -> None:
    copy = tmp_path / "elsewhere" / files[case].name
    copy.parent.mkdir()
    shutil.copyfile(files[case], copy)
    assert backend.digest == file_digest(files[case])
    assert backend.digest.startswith("sha256:")
    assert load_backend(spec_for(case, path=copy)).digest == backend.digest


def test_digests_differ_between_files(spec_for: Callable[..., ModelSpec]) -> None:
    digests = {case: load_backend(spec_for(case)).digest for case in CASES}
    assert len(set(digests.values())) == len(CASES), digests
