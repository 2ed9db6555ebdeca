"""The score contract on real fraud data (vehicle-insurance claims, ../shared/data).

Two genuinely different predictors — a LightGBM trained on all claims and one trained with
the legitimate claims undersampled to β = 0.2 — produce raw scores on very different
scales. Each gets a T^Q fitted on one half of the held-out claims; on the other half both
must alert on the reference's share of claims at the reference's thresholds, within the
tolerance that appendix A (Eq. 5 solved for δ) gives for this sample size at z = 3.
"""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import lightgbm as lgb
import numpy as np

from muse.transforms import QuantileMap, Reference, posterior_correction

DATA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "vehicle_insurance_fraud"
    / "fraud_oracle.csv.gz"
)
LABEL = "FraudFound_P"
DROP = {LABEL, "PolicyNumber"}


def _load() -> tuple[np.ndarray, np.ndarray]:
    assert DATA.is_file(), (
        f"the public data sets are expected at {DATA}, i.e. ../shared/data beside the repository"
    )
    with gzip.open(DATA, "rt", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c not in DROP]
    matrix = np.empty((len(rows), len(columns)))
    for j, c in enumerate(columns):
        values = [r[c] for r in rows]
        try:
            matrix[:, j] = [float(v) for v in values]
        except ValueError:  # a categorical column: ordinal codes in sorted order
            levels = {v: k for k, v in enumerate(sorted(set(values)))}
            matrix[:, j] = [levels[v] for v in values]
    labels = np.array([int(r[LABEL]) for r in rows])
    return matrix, labels


def _train(X: np.ndarray, y: np.ndarray, seed: int) -> lgb.Booster:
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_data_in_leaf": 20,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=150)


def test_two_predictors_keep_the_reference_alert_rates_on_real_claims() -> None:
    X, y = _load()
    assert X.shape == (15_420, 31)
    assert int(y.sum()) == 923
    rng = np.random.default_rng(20261122)
    order = rng.permutation(len(y))
    train, fit, test = np.array_split(order, [int(0.4 * len(y)), int(0.7 * len(y))])

    full = _train(X[train], y[train], seed=1)
    negatives = train[y[train] == 0]
    kept = np.concatenate(
        [train[y[train] == 1], rng.choice(negatives, int(0.2 * negatives.size), replace=False)]
    )
    under = _train(X[kept], y[kept], seed=2)

    raw = {"full": full.predict(X), "undersampled": under.predict(X)}
    # Different predictors indeed: the undersampled model's raw scores sit far higher.
    assert np.quantile(raw["undersampled"][fit], 0.9) > 2 * np.quantile(raw["full"][fit], 0.9)
    # Posterior correction (Eq. 3) brings the undersampled model back near the calibrated one.
    corrected = posterior_correction(raw["undersampled"], 0.2)
    assert abs(corrected[test].mean() / y[test].mean() - 1) < 0.3

    reference = Reference.beta(0.8, 9.0)
    n_fit, n_test = fit.size, test.size
    for name, scores in raw.items():
        mapped = QuantileMap.fit(scores[fit], reference)(scores[test])
        for a in (0.2, 0.1, 0.05):
            threshold = reference.ppf([1 - a])[0]
            observed = float((mapped > threshold).mean())
            # Eq. 5 solved for δ, for the fit and the test sample together, at z = 3
            tolerance = 3 * math.sqrt((1 - a) / a * (1 / n_fit + 1 / n_test))
            assert abs(observed / a - 1) < tolerance, (name, a, observed, tolerance)
