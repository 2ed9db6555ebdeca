"""The bundled quickstart: its artifacts are exactly what its build script produces."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import types
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def _build_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_build", QUICKSTART / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_FINGERPRINT = re.compile(rb"fp-[0-9a-f]{16}")
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _same(fresh: bytes, committed: bytes) -> bool:
    """Equal bytes, or text equal but for floats in their last bits: numpy picks SIMD code
    for its maths by the CPU it runs on (AVX-512 or not), so a rebuild on another machine
    may differ by an ulp in a LightGBM split threshold or a map knot. Anything else — a
    token, a number off by more than 1e-12 relative — is a real difference."""
    if fresh == committed:
        return True
    if _NUMBER.sub(b"#", fresh) != _NUMBER.sub(b"#", committed):
        return False
    a, b = _NUMBER.findall(fresh), _NUMBER.findall(committed)
    return len(a) == len(b) and all(
        math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=1e-300)
        for x, y in zip(a, b, strict=True)
    )


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for sub in ("models", "transforms", "features"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    out["sample_event.json"] = (root / "sample_event.json").read_bytes()
    return out


@pytest.mark.slow
def test_build_script_reproduces_the_committed_artifacts_byte_for_byte(tmp_path: Path) -> None:
    build = _build_module()
    assert build.main(["--out", str(tmp_path / "qs")]) == 0
    fresh, committed = _files(tmp_path / "qs"), _files(QUICKSTART)
    assert sorted(fresh) == sorted(committed)
    models = [name for name in fresh if name.startswith("models/")]
    if any(fresh[m] != committed[m] for m in models):
        # A map names its predictor's fingerprint, a hash of the model files' bytes: with
        # models rebuilt to the last bit only, the hashes differ and nothing else may.
        for files in (fresh, committed):
            for name in files:
                if name.startswith("transforms/"):
                    files[name] = _FINGERPRINT.sub(b"fp-*", files[name])
    changed = [name for name in fresh if not _same(fresh[name], committed[name])]
    assert not changed, f"rebuild differs in {changed}: run `make quickstart` and commit"


def test_last_bit_differences_are_tolerated_and_nothing_else() -> None:
    model = b"threshold=0.43876382565977967 2.5 leaf_value=-1e-35\nversion=v4\n"
    assert _same(model, model.replace(b"977967", b"977962"))
    assert not _same(model, model.replace(b"38256597", b"38256697"))  # 2e-11 relative
    assert not _same(model, model.replace(b"version=v4", b"version=v3"))
    assert not _same(model, model + b"0.5")
    assert not _same(b"\x00\x01", b"\x00\x02")


def test_build_script_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "models").mkdir()
    assert _build_module().main(["--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err


def test_quickstart_has_three_tenants_two_predictors_and_a_shadow_rule() -> None:
    from muse.config import load_config

    config = load_config(QUICKSTART / "muse.yaml")
    assert set(config.spec.predictors) == {"single-v1", "ensemble-v1"}
    assert [e.model for e in config.spec.predictors["ensemble-v1"].experts] == ["m1", "m2", "m3"]
    assert {config.spec.models[m].undersampling for m in ("m1", "m2", "m3")} == {0.18, 0.02}
    assert {m.backend for m in config.spec.models.values()} == {"lightgbm", "onnx"}
    assert set(config.transforms["ensemble-v1"].tenants) == {"bank1", "bank2"}
    assert len(config.router.shadow_rules) == 1


def test_the_served_xgboost_export_scores_like_xgboost() -> None:
    """m3 is trained with XGBoost and served through its ONNX export (for speed): the two
    must agree, or the export would silently change the ensemble."""
    import numpy as np

    from muse.backends import ModelPool, ModelSpec
    from muse.datasets import generate_events, make_tenants

    pool = ModelPool()
    native = pool.get(ModelSpec(kind="xgboost", path=QUICKSTART / "models" / "m3.json"))
    export = pool.get(ModelSpec(kind="onnx", path=QUICKSTART / "models" / "m3.onnx"))
    assert export.feature_names == native.feature_names
    frame = generate_events(make_tenants(3, seed=11), 20_000, seed=5)
    X = frame.feature_matrix(native.feature_names)
    diff = np.abs(export.predict(X) - native.predict(X))
    assert float(diff.max()) < 1e-6
