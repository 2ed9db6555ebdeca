"""Loading by kind, and the pool that loads a model once however many predictors name it."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from muse.backends import (
    BACKEND_KINDS,
    LightGBMBackend,
    ModelBackend,
    ModelPool,
    ModelSpec,
    OnnxBackend,
    XGBoostBackend,
    load_backend,
)
from muse.errors import BackendError


@pytest.mark.parametrize(
    ("case", "kind", "cls"),
    [
        ("lightgbm", "lightgbm", LightGBMBackend),
        ("onnx-lightgbm", "onnx", OnnxBackend),
        ("xgboost-ubj", "xgboost", XGBoostBackend),
    ],
)
def test_load_backend_dispatches_on_kind(
    files: dict[str, Path], case: str, kind: str, cls: type
) -> None:
    assert isinstance(load_backend(ModelSpec(kind=kind, path=files[case])), cls)


def test_unknown_kind_lists_the_known_ones(files: dict[str, Path]) -> None:
    with pytest.raises(BackendError) as e:
        load_backend(ModelSpec(kind="catboost", path=files["lightgbm"]))
    message = str(e.value)
    assert "unknown model kind 'catboost'" in message
    assert repr(list(BACKEND_KINDS)) in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "models" / "nope.txt"
    with pytest.raises(BackendError) as e:
        load_backend(ModelSpec(kind="lightgbm", path=path))
    assert f"lightgbm model file {str(path)!r} does not exist" in str(e.value)
    assert e.value.model == str(path)


def test_threads_below_one_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(
        BackendError, match=r"threads for lightgbm model .* must be at least 1, got 0"
    ):
        load_backend(ModelSpec(kind="lightgbm", path=files["lightgbm"], threads=0))


def test_directory_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="is not a file"):
        load_backend(ModelSpec(kind="onnx", path=tmp_path))


def test_a_model_named_by_many_predictors_is_loaded_once(files: dict[str, Path]) -> None:
    pool = ModelPool()
    spec = ModelSpec(kind="lightgbm", path=files["lightgbm"])
    first, second, third = (pool.get(spec) for _ in range(3))
    assert first is second is third
    assert pool.loads == 1
    assert len(pool) == 1


def test_relative_and_absolute_paths_share_one_instance(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = files["lightgbm"]
    monkeypatch.chdir(model.parent.parent)
    relative = Path(model.parent.name) / ".." / model.parent.name / model.name
    pool = ModelPool()
    a = pool.get(ModelSpec(kind="lightgbm", path=model))
    b = pool.get(ModelSpec(kind="lightgbm", path=relative))
    assert a is b
    assert pool.loads == 1


def test_symlink_shares_the_instance_of_its_target(files: dict[str, Path], tmp_path: Path) -> None:
    link = tmp_path / "current.txt"
    link.symlink_to(files["lightgbm"])
    pool = ModelPool()
    assert pool.get(ModelSpec("lightgbm", link)) is pool.get(
        ModelSpec("lightgbm", files["lightgbm"])
    )
    assert pool.loads == 1


def test_distinct_models_get_distinct_instances(
    files: dict[str, Path], features: tuple[str, ...]
) -> None:
    pool = ModelPool()
    lgb = pool.get(ModelSpec(kind="lightgbm", path=files["lightgbm"]))
    onnx = pool.get(ModelSpec(kind="onnx", path=files["onnx-lightgbm"]))
    renamed = pool.get(ModelSpec(kind="lightgbm", path=files["lightgbm"], features=tuple("abcde")))
    threaded = pool.get(ModelSpec(kind="lightgbm", path=files["lightgbm"], threads=2))
    assert len({id(lgb), id(onnx), id(renamed), id(threaded)}) == 4
    assert pool.loads == len(pool) == 4
    assert renamed.feature_names == tuple("abcde")
    assert lgb.feature_names == features


def test_retain_drops_models_the_new_snapshot_does_not_name(files: dict[str, Path]) -> None:
    pool = ModelPool()
    old_lgb = ModelSpec(kind="lightgbm", path=files["lightgbm"])
    old_xgb = ModelSpec(kind="xgboost", path=files["xgboost-json"])
    kept = pool.get(old_lgb)
    pool.get(old_xgb)
    assert len(pool) == 2

    new_onnx = ModelSpec(kind="onnx", path=files["onnx-lightgbm"])
    pool.retain([old_lgb, new_onnx])
    assert len(pool) == 1
    assert pool.get(old_lgb) is kept, "a model the new snapshot still names is reused"
    pool.get(new_onnx)
    assert pool.loads == 3

    pool.retain([])
    assert len(pool) == 0


def test_a_model_file_replaced_in_place_is_reloaded(
    files: dict[str, Path], tmp_path: Path, rows: np.ndarray
) -> None:
    path = tmp_path / "model.onnx"
    shutil.copyfile(files["onnx-lightgbm"], path)
    pool = ModelPool()
    spec = ModelSpec(kind="onnx", path=path)
    before = pool.get(spec)

    shutil.copyfile(files["onnx-xgboost"], path)
    stat = path.stat()  # a coarse-mtime filesystem could hide the rewrite: make it visible
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = pool.get(spec)

    assert after is not before
    assert after.digest != before.digest
    assert not np.allclose(after.predict(rows), before.predict(rows))
    assert pool.loads == 2
    assert len(pool) == 1
    assert pool.get(spec) is after


def test_a_deleted_file_keeps_the_loaded_model(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "model.txt"
    shutil.copyfile(files["lightgbm"], path)
    pool = ModelPool()
    spec = ModelSpec(kind="lightgbm", path=path)
    loaded = pool.get(spec)
    path.unlink()
    assert pool.get(spec) is loaded
    assert pool.loads == 1


def test_concurrent_gets_load_once(files: dict[str, Path]) -> None:
    loads: list[ModelSpec] = []

    def slow_loader(spec: ModelSpec) -> ModelBackend:
        loads.append(spec)
        time.sleep(0.05)
        return load_backend(spec)

    pool = ModelPool(loader=slow_loader)
    spec = ModelSpec(kind="onnx", path=files["onnx-lightgbm"])
    barrier = threading.Barrier(8)
    got: list[ModelBackend] = []

    def worker() -> None:
        barrier.wait()
        got.append(pool.get(spec))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8
    assert all(b is got[0] for b in got)
    assert pool.loads == len(loads) == 1


def test_load_failures_are_not_cached(tmp_path: Path, files: dict[str, Path]) -> None:
    path = tmp_path / "late.txt"
    pool = ModelPool()
    spec = ModelSpec(kind="lightgbm", path=path)
    with pytest.raises(BackendError, match="does not exist"):
        pool.get(spec)
    shutil.copyfile(files["lightgbm"], path)
    assert pool.get(spec).kind == "lightgbm"
    assert pool.loads == 1
    assert len(pool) == 1
