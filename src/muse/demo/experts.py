"""The three experts of the demo and how they are trained (paper §2.2, §2.3.1).

m1 and m2 see the card-testing signals (amounts, hour, velocity, declines, card age) but
none of the account-takeover ones (distance, device risk, e-mail age); m3 sees exactly
those. So p1 = {m1, m2} misses part of the fraud that p2 = {m1, m2, m3} catches — the
"new fraud pattern" for which the paper adds m3 — and the recall gain of scenario 2 is
real, not a seed's luck. The experts are undersampled with different β (0.18, 0.18, 0.02),
which is what posterior correction (Eq. 3) exists for and scenario 3 measures.

Training is the data scientist's job, outside muse: hence plain LightGBM/XGBoost calls, one
thread and fixed seeds, so a demo run is reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import xgboost as xgb

from muse.datasets import EventFrame, undersample

__all__ = ["EXPERTS", "ExpertRecipe", "train_expert"]


@dataclass(frozen=True, slots=True)
class ExpertRecipe:
    """How one expert is trained: its model family, undersampling β and features."""

    name: str
    backend: str
    beta: float
    features: tuple[str, ...]
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.name}.txt" if self.backend == "lightgbm" else f"{self.name}.json"


EXPERTS = {
    "m1": ExpertRecipe(
        "m1",
        "lightgbm",
        0.18,
        ("amount", "hour", "merchant_risk", "velocity_1h", "card_age_days", "n_declines_24h"),
        seed=1,
    ),
    "m2": ExpertRecipe(
        "m2",
        "xgboost",
        0.18,
        ("amount", "hour", "merchant_risk", "velocity_1h", "card_age_days", "n_items"),
        seed=2,
    ),
    "m3": ExpertRecipe(
        "m3",
        "lightgbm",
        0.02,
        ("distance_km", "device_risk", "email_age_days", "amount", "hour"),
        seed=3,
    ),
}


def train_expert(recipe: ExpertRecipe, frame: EventFrame, folder: Path, seed: int) -> Path:
    """Train ``recipe`` on ``frame`` undersampled by its β; write the model file, return it."""
    data = undersample(frame, recipe.beta, seed=seed + recipe.seed)
    X = data.feature_matrix(recipe.features)
    path = folder / recipe.filename
    folder.mkdir(parents=True, exist_ok=True)
    if recipe.backend == "lightgbm":
        params = {
            "objective": "binary",
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_data_in_leaf": 50,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "seed": seed + recipe.seed,
            "verbose": -1,
        }
        dataset = lgb.Dataset(X, label=data.label, feature_name=list(recipe.features))
        lgb.train(params, dataset, num_boost_round=60).save_model(str(path))
    else:
        dmatrix = xgb.DMatrix(X, label=data.label, feature_names=list(recipe.features))
        params = {
            "objective": "binary:logistic",
            "max_depth": 4,
            "eta": 0.15,
            "nthread": 1,
            "seed": seed + recipe.seed,
            "tree_method": "hist",
        }
        xgb.train(params, dmatrix, num_boost_round=60).save_model(str(path))
    return path
