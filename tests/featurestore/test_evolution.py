"""Easy feature evolution (paper §2.5.1): a new model needing a feature no client sends.

A copy of the quickstart gains ``m4``, trained on ``card_chargebacks_90d`` — a feature the
clients never send — and a shadow predictor ``ensemble-v2`` (m1 + m4) for bank1. Only the
server side changes: the feature table gets the new column and the config names it. The
very same client request then scores the shadow with the store's value, and the live
answer is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from muse.artifacts import QuantileArtifact, reference_digest, write_artifact
from muse.backends import ModelPool, ModelSpec
from muse.config import load_config
from muse.datasets import generate_events, make_tenants
from muse.features import FeatureTable
from muse.predictor import Expert, Predictor, TenantMap
from muse.service import ScoringService
from muse.transforms import QuantileMap, Reference
from tests.config_fixtures import QUICKSTART, SAMPLE_EVENT, Deployment

NEW = "card_chargebacks_90d"
M4_FEATURES = ("amount", "merchant_risk", NEW)
CARD = "card-00000"
REFERENCE = Reference.beta(0.8, 9.0)


def chargebacks(n: int, label: np.ndarray, seed: int) -> np.ndarray:
    """A new signal: fraudulent cards had more chargebacks."""
    return np.random.default_rng(seed).poisson(0.2 + 2.0 * label, size=n).astype(np.float64)


def train_m4(path: Path) -> None:
    frame = generate_events(
        make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3")), 20_000, seed=21
    )
    X = np.column_stack(
        [
            frame.features["amount"],
            frame.features["merchant_risk"],
            chargebacks(len(frame), frame.label, 1),
        ]
    )
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "verbose": -1,
        "num_threads": 1,
        "seed": 1,
        "deterministic": True,
    }
    data = lgb.Dataset(X, label=frame.label, feature_name=list(M4_FEATURES))
    lgb.train(params, data, num_boost_round=15).save_model(str(path))


@pytest.fixture(scope="module")
def evolved(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    d = Deployment.copy_quickstart(tmp_path_factory.mktemp("evolved"))
    train_m4(d.root / "models" / "m4.txt")
    # The store gains the column (data engineering's side); the clients change nothing.
    table = pq.read_table(d.root / "features" / "cards.parquet")
    values = np.arange(table.num_rows, dtype=np.float64) % 4 + 1.0  # card-00000 → 1.0
    pq.write_table(
        table.append_column(NEW, pa.array(values)), d.root / "features" / "cards.parquet"
    )
    doc = d.doc()
    doc["models"]["m4"] = {"backend": "lightgbm", "uri": "models/m4.txt", "undersampling": 1.0}
    doc["predictors"]["ensemble-v2"] = {
        "experts": [{"model": "m1"}, {"model": "m4"}],
        "reference": "fraud-v1",
        "transforms": "transforms/ensemble-v2",
    }
    doc["feature_store"]["features"][NEW] = {"default": 0.0}
    doc["routing"]["shadowRules"].append(
        {"condition": {"tenants": ["bank1"]}, "targetPredictorNames": ["ensemble-v2"]}
    )
    d.write(doc)
    cold_start_map(d)
    return d


def cold_start_map(d: Deployment) -> None:
    """A default T^Q for ensemble-v2, fitted for its fingerprint on generated traffic."""
    config = load_config(d.config, require_transforms=False)
    pool = ModelPool()
    backends = {m: pool.get(config.model_specs[m]) for m in ("m1", "m4")}
    placeholder = TenantMap(QuantileMap.fit([0.0, 1.0], REFERENCE), "none")
    betas = {"m1": 0.18, "m4": 1.0}
    predictor = Predictor(
        "ensemble-v2", tuple(Expert(m, backends[m], betas[m]) for m in ("m1", "m4")), placeholder
    )
    assert predictor.fingerprint == config.fingerprints["ensemble-v2"]
    frame = generate_events(
        make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3")), 5_000, seed=22
    )
    columns = {**frame.features, NEW: chargebacks(len(frame), frame.label, 2)}
    raw = predictor.score(FeatureTable(columns), "-").raw
    write_artifact(
        d.root / "transforms" / "ensemble-v2",
        QuantileArtifact(
            quantile_map=QuantileMap.fit(raw, REFERENCE),
            fingerprint=predictor.fingerprint,
            reference="fraud-v1",
            reference_digest=reference_digest(REFERENCE),
            version=0,
            predictor="ensemble-v2",
        ),
    )


def test_a_shadow_model_on_a_new_feature_needs_no_client_change(evolved: Deployment) -> None:
    service = ScoringService.from_config(evolved.config)
    before = ScoringService.from_config(QUICKSTART / "muse.yaml")
    request = ({"tenant": "bank1", "card_id": CARD}, SAMPLE_EVENT)  # what clients already send
    assert NEW not in SAMPLE_EVENT

    result = service.score(*request)
    assert result.live == before.score(*request).live  # live answer untouched
    assert result.shadow_errors == {}
    (shadow,) = result.shadows
    assert shadow.predictor == "ensemble-v2"
    m4 = ModelPool().get(ModelSpec(kind="lightgbm", path=evolved.root / "models" / "m4.txt"))
    with_store_value = np.array([[SAMPLE_EVENT["amount"], SAMPLE_EVENT["merchant_risk"], 1.0]])
    assert shadow.experts["m4"] == float(m4.predict(with_store_value)[0])
    without = with_store_value.copy()
    without[0, 2] = 0.0
    assert shadow.experts["m4"] != float(m4.predict(without)[0])  # the value mattered
    assert shadow.experts["m1"] == result.live.experts["m1"]  # m1 ran once, shared

    # Through the server path too: live first, the shadow (and its lookup) deferred.
    outcome = service.score_live([request[0]], [request[1]])
    assert outcome.deferred is not None
    assert outcome.deferred.run()[0].shadows == result.shadows


def test_the_new_shadow_counts_events_it_cannot_score_but_never_fails_live(
    evolved: Deployment,
) -> None:
    service = ScoringService.from_config(evolved.config)
    before = ScoringService.from_config(QUICKSTART / "muse.yaml")
    r = service.score({"tenant": "bank1"}, SAMPLE_EVENT)  # a client that names no card
    assert r.live == before.score({"tenant": "bank1"}, SAMPLE_EVENT).live
    assert r.shadows == ()
    assert NEW in r.shadow_errors["ensemble-v2"]
    assert "intent.card_id" in r.shadow_errors["ensemble-v2"]
    unknown = service.score({"tenant": "bank1", "card_id": "new-card"}, SAMPLE_EVENT)
    assert unknown.shadow_errors == {}  # the default (0) stands in for a card the store lacks
    m4 = ModelPool().get(ModelSpec(kind="lightgbm", path=evolved.root / "models" / "m4.txt"))
    with_default = np.array([[SAMPLE_EVENT["amount"], SAMPLE_EVENT["merchant_risk"], 0.0]])
    assert unknown.shadows[0].experts["m4"] == float(m4.predict(with_default)[0])
