"""Table 1: posterior correction restores the calibration undersampling took away."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from muse.datasets import FEATURE_NAMES, generate_events, make_tenants, undersample
from muse.evaluation.calibration import ENSEMBLE, calibration_table


@pytest.fixture(scope="module")
def experts() -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray]:
    """Two LightGBM experts trained on undersampled data, scored on natural traffic."""
    tenants = make_tenants(3, seed=4)
    train = generate_events(tenants, 60_000, seed=1, drift=0.0)
    test = generate_events(tenants, 60_000, seed=2, drift=0.0)
    betas = {"lgbm_b10": 0.1, "lgbm_b30": 0.3}
    outputs: dict[str, np.ndarray] = {}
    for i, (name, beta) in enumerate(betas.items()):
        sample = undersample(train, beta, seed=i)
        booster = lgb.train(
            {
                "objective": "binary",
                "num_leaves": 15,
                "learning_rate": 0.1,
                "verbose": -1,
                "deterministic": True,
                "num_threads": 1,
                "seed": i,
            },
            lgb.Dataset(sample.feature_matrix(FEATURE_NAMES), label=sample.label),
            num_boost_round=60,
        )
        outputs[name] = np.asarray(booster.predict(test.feature_matrix(FEATURE_NAMES)))
    return outputs, betas, test.label


def test_correction_lowers_ece_and_brier_of_undersampled_experts(
    experts: tuple[dict[str, np.ndarray], dict[str, float], np.ndarray],
) -> None:
    outputs, betas, labels = experts
    rows = {r.name: r for r in calibration_table(outputs, betas, labels)}
    assert set(rows) == {"lgbm_b10", "lgbm_b30", ENSEMBLE}
    for row in rows.values():
        assert row.ece_corrected < row.ece_raw / 2, row
        assert row.brier_corrected < row.brier_raw, row
    # The stronger the undersampling, the worse the uncorrected calibration.
    assert rows["lgbm_b10"].ece_raw > rows["lgbm_b30"].ece_raw
    assert rows[ENSEMBLE].beta is None


def test_beta_one_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(5_000)
    y = (rng.random(5_000) < p).astype(int)
    (row,) = calibration_table({"m": p}, {"m": 1.0}, y)
    assert row.ece_raw == row.ece_corrected
    assert row.brier_raw == row.brier_corrected


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="empty"):
        calibration_table({}, {}, np.zeros(3))
    with pytest.raises(ValueError, match=r"β given for expert\(s\) \['m2'\]"):
        calibration_table({"m1": np.zeros(3), "m2": np.zeros(3)}, {"m1": 0.5}, np.zeros(3))
