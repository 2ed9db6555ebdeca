"""Rebuild every artifact of the quickstart deployment from the synthetic generator.

Deterministic: the same library versions (uv.lock) give byte-identical files, so the
committed artifacts can be checked against a fresh build (tests/test_quickstart.py).

What it builds (paper §3.2's setting at toy scale):
- three experts trained on the same early traffic with different undersampling β
  (§2.3.1): ``m1`` LightGBM (β = 0.18, text model), ``m2`` LightGBM exported to ONNX
  (β = 0.18, another feature subset; its text model kept beside it for reason codes), ``m3`` XGBoost (β = 0.02) saved as JSON and exported
  to ONNX — the config serves the export: XGBoost's Python ``inplace_predict`` costs
  ~100–200 µs per call whatever the batch size, ONNX Runtime ~10 µs for the same trees
  (scores agree within 1e-6, tests/test_quickstart.py), and on the single-event path that
  difference is most of a request's model time;
- predictors ``single-v1`` (m1 alone) and ``ensemble-v1`` (m1 + m2 + m3);
- for each predictor a default (cold-start) map fitted on its scores over the pooled
  traffic of all tenants, and own maps for ``bank1`` and ``bank2`` fitted on their later
  traffic; ``fintech3`` has no map of its own and is served by the default;
- the embedded feature store ``features/cards.parquet`` (paper §2.5.1): ``card_age_days``
  and ``email_age_days`` of 5,000 cards ``card-00000``…, taken from the later traffic, so
  a client that names its card (intent attribute ``card_id``) may omit both;
  ``card-00000`` is the card of ``sample_event.json``.

Run: ``python examples/quickstart/build.py --force`` (or ``make quickstart``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

from muse.artifacts import QuantileArtifact, reference_digest, write_artifact
from muse.backends import ModelPool, ModelSpec
from muse.datasets import EventFrame, generate_events, make_tenants, undersample
from muse.features import FeatureTable
from muse.predictor import Expert, Predictor, TenantMap
from muse.transforms import QuantileMap, Reference

HERE = Path(__file__).resolve().parent
TENANTS = ("bank1", "bank2", "fintech3")
TENANTS_WITH_OWN_MAPS = ("bank1", "bank2")
REFERENCE = Reference.beta(0.8, 9.0)
START = datetime(2026, 1, 1, tzinfo=UTC)
M1_FEATURES = (
    "amount",
    "hour",
    "merchant_risk",
    "velocity_1h",
    "distance_km",
    "card_age_days",
    "device_risk",
    "n_declines_24h",
)
M2_FEATURES = ("amount", "merchant_risk", "velocity_1h", "device_risk", "email_age_days", "n_items")
M3_FEATURES = (
    "amount",
    "merchant_risk",
    "velocity_1h",
    "distance_km",
    "device_risk",
    "n_declines_24h",
    "email_age_days",
)
BETAS = {"m1": 0.18, "m2": 0.18, "m3": 0.02}
#: Features the feature store serves per card, and how many cards it knows.
CARD_FEATURES = ("card_age_days", "email_age_days")
N_CARDS = 5_000


def train_lightgbm(
    frame: EventFrame, features: tuple[str, ...], seed: int, **params: object
) -> lgb.Booster:
    data = lgb.Dataset(
        frame.feature_matrix(features),
        label=frame.label,
        feature_name=list(features),
        free_raw_data=True,
    )
    base = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 50,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }
    base.update(params)
    return lgb.train(base, data, num_boost_round=60)


def write_onnx(booster: lgb.Booster | xgb.Booster, features: tuple[str, ...], path: Path) -> None:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial_types = [("features", FloatTensorType([None, len(features)]))]
    if isinstance(booster, xgb.Booster):
        # The XGBoost converter reads features as f0, f1, …: drop the names (they travel
        # in the ONNX metadata below, in the same order).
        anonymous = booster.copy()
        anonymous.feature_names = None
        onx = onnxmltools.convert_xgboost(anonymous, initial_types=initial_types, target_opset=15)
    else:
        onx = onnxmltools.convert_lightgbm(
            booster, initial_types=initial_types, zipmap=False, target_opset=15
        )
    # The converter names graphs with a random uuid and lists opsets in set order (which
    # varies with PYTHONHASHSEED); fix both so rebuilds are byte-identical.
    onx.graph.name = path.stem
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    meta = onx.metadata_props.add()
    meta.key, meta.value = "feature_names", json.dumps(list(features))
    path.write_bytes(onx.SerializeToString())


def train_xgboost(
    frame: EventFrame, features: tuple[str, ...], seed: int, path: Path
) -> xgb.Booster:
    dtrain = xgb.DMatrix(
        frame.feature_matrix(features), label=frame.label, feature_names=list(features)
    )
    params = {
        "objective": "binary:logistic",
        "max_depth": 4,
        "eta": 0.15,
        "nthread": 1,
        "seed": seed,
        "tree_method": "hist",
    }
    booster = xgb.train(params, dtrain, num_boost_round=60)
    booster.save_model(str(path))
    return booster


def fit_artifact(
    predictor: Predictor, frame: EventFrame, tenant: str | None, name: str, until: datetime
) -> QuantileArtifact:
    raw = predictor.score(FeatureTable(dict(frame.features)), tenant or "-").raw
    return QuantileArtifact(
        quantile_map=QuantileMap.fit(raw, REFERENCE),
        fingerprint=predictor.fingerprint,
        reference="fraud-v1",
        reference_digest=reference_digest(REFERENCE),
        version=0 if tenant is None else 1,
        tenant=tenant,
        predictor=name,
        created_at=until.isoformat(timespec="seconds"),
        method="empirical-pooled" if tenant is None else "empirical",
        window={
            "since": (until - timedelta(days=14)).isoformat(timespec="seconds"),
            "until": until.isoformat(timespec="seconds"),
        },
    )


def write_cards(frame: EventFrame, path: Path) -> None:
    """The feature table: card ``card-<i>`` has the card features of event ``i`` of ``frame``.

    Deterministic bytes: fixed row order, no pandas metadata, and pyarrow writes no
    timestamps (its ``created_by`` names the pinned version).
    """
    columns: dict[str, pa.Array] = {
        "card_id": pa.array([f"card-{i:05d}" for i in range(N_CARDS)], type=pa.string())
    }
    for name in CARD_FEATURES:
        columns[name] = pa.array(np.asarray(frame.features[name][:N_CARDS]), type=pa.float64())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, compression="zstd")


def build(out: Path) -> None:
    tenants = make_tenants(len(TENANTS), seed=11, names=TENANTS)
    train = generate_events(tenants, 240_000, seed=1, start=START, days=28)
    later = generate_events(tenants, 150_000, seed=2, start=START + timedelta(days=28), days=14)

    models = out / "models"
    models.mkdir(parents=True)
    m1 = train_lightgbm(undersample(train, BETAS["m1"], seed=1), M1_FEATURES, seed=1)
    m1.save_model(str(models / "m1.txt"))
    m2 = train_lightgbm(undersample(train, BETAS["m2"], seed=2), M2_FEATURES, seed=2, num_leaves=7)
    write_onnx(m2, M2_FEATURES, models / "m2.onnx")
    m2.save_model(str(models / "m2.txt"))  # what explains m2.onnx (reason codes)
    m3 = train_xgboost(
        undersample(train, BETAS["m3"], seed=3), M3_FEATURES, seed=3, path=models / "m3.json"
    )
    write_onnx(m3, M3_FEATURES, models / "m3.onnx")

    pool = ModelPool()
    kinds = {"m1": ("lightgbm", "m1.txt"), "m2": ("onnx", "m2.onnx"), "m3": ("onnx", "m3.onnx")}
    backends = {m: pool.get(ModelSpec(kind=k, path=models / f)) for m, (k, f) in kinds.items()}
    placeholder = TenantMap(QuantileMap.fit([0.0, 1.0], REFERENCE), "none")
    predictors = {
        "single-v1": Predictor(
            "single-v1", (Expert("m1", backends["m1"], BETAS["m1"]),), placeholder
        ),
        "ensemble-v1": Predictor(
            "ensemble-v1",
            tuple(Expert(m, backends[m], BETAS[m]) for m in ("m1", "m2", "m3")),
            placeholder,
        ),
    }
    until = START + timedelta(days=42)
    for name, predictor in predictors.items():
        folder = out / "transforms" / name
        write_artifact(folder, fit_artifact(predictor, later, None, name, until))
        for tenant in TENANTS_WITH_OWN_MAPS:
            write_artifact(
                folder, fit_artifact(predictor, later.for_tenant(tenant), tenant, name, until)
            )

    sample = later.for_tenant("bank1").to_rows(limit=1)[0]
    (out / "sample_event.json").write_text(json.dumps(sample["features"], indent=1) + "\n")
    # The sample is the later traffic's first event, so its card is card-00000 (README).
    if later.tenant[0] != "bank1":
        raise RuntimeError("the later traffic no longer starts with a bank1 event")
    write_cards(later, out / "features" / "cards.parquet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder to write into (default: here)"
    )
    parser.add_argument("--force", action="store_true", help="replace existing models and maps")
    args = parser.parse_args(argv)
    out: Path = args.out
    existing = [out / "models", out / "transforms", out / "features"]
    if any(p.exists() for p in existing):
        if not args.force:
            print(
                f"{out} already has models/, transforms/ or features/; pass --force to rebuild",
                file=sys.stderr,
            )
            return 2
        for p in existing:
            shutil.rmtree(p, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    build(out)
    print(f"built quickstart artifacts in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
