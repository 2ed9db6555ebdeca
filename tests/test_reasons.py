"""Reason codes over the quickstart's real models: tree contributions through T^C, A and
T^Q add up to the served score; an ONNX model explains through the tree model it came
from, checked at load; a model that cannot explain says so."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm
import numpy as np
import pytest

from muse.backends import ModelPool, ModelSpec
from muse.deployment import check_config
from muse.errors import ReasonsUnavailableError
from muse.fleet.bundle import bundle_files
from muse.reasons import explain_batch
from muse.service import ScoringService
from tests.cli_support import invoke
from tests.config_fixtures import QUICKSTART, SAMPLE_EVENT, Deployment
from tests.lifecycle_fixtures import quickstart_traffic


@pytest.fixture(scope="module")
def service() -> ScoringService:
    return ScoringService.from_config(QUICKSTART / "muse.yaml")


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


@pytest.mark.parametrize(("kind", "file"), [("lightgbm", "m1.txt"), ("xgboost", "m3.json")])
def test_tree_models_explain_their_own_outputs(kind: str, file: str) -> None:
    backend = ModelPool().get(ModelSpec(kind=kind, path=QUICKSTART / "models" / file))
    frame = quickstart_traffic(300, seed=3)
    x = frame.feature_matrix(backend.feature_names)
    values, bias = backend.contributions(x)  # type: ignore[attr-defined]
    assert values.shape == (300, len(backend.feature_names))
    np.testing.assert_allclose(sigmoid(bias + values.sum(axis=1)), backend.predict(x), atol=1e-6)


def test_every_events_reasons_add_up_to_its_served_score(service: ScoringService) -> None:
    frame = quickstart_traffic(400, seed=4)
    intents = [{"tenant": t} for t in frame.tenant.tolist()]
    known = service.snapshot.known_features
    features = {f: v for f, v in frame.features.items() if f in known}
    found = explain_batch(service.snapshot, intents, features, top=len(known))
    served = service.score_batch(intents, features, shadows=False)
    assert [r.predictor for r in found] == [s.live.predictor for s in served]
    for reasons, result in zip(found, served, strict=True):
        total = reasons.base + sum(r.contribution for r in reasons.top)
        assert total == pytest.approx(result.score, abs=1e-12)
        # the base is T^Q of the experts' expected aggregate: a score, not a leftover
        assert 0.0 < reasons.base < 1.0
    # the ensemble (bank1) and the single model (the others) both explained
    assert {r.predictor for r in found} == {"ensemble-v1", "single-v1"}


def test_the_top_reasons_are_the_largest_in_magnitude(service: ScoringService) -> None:
    reasons = service.explain({"tenant": "bank1"}, SAMPLE_EVENT, event_id="e1", top=4)
    sizes = [abs(r.contribution) for r in reasons.top]
    assert sizes == sorted(sizes, reverse=True)
    assert len(reasons.top) == 4
    assert reasons.event_id == "e1"
    every = service.explain({"tenant": "bank1"}, SAMPLE_EVENT, top=100)
    assert [r.feature for r in every.top[:4]] == [r.feature for r in reasons.top]


def test_muse_score_prints_reasons() -> None:
    r = invoke(
        "score", str(QUICKSTART / "muse.yaml"), "-i", "tenant=bank2",
        "--features", json.dumps(SAMPLE_EVENT), "--reasons", "2",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert len(doc["reasons"]) == 2
    assert {"feature", "contribution"} == set(doc["reasons"][0])
    assert doc["reasons_predictor"] == doc["live"]["predictor"]
    every = json.loads(
        invoke(
            "score", str(QUICKSTART / "muse.yaml"), "-i", "tenant=bank2",
            "--features", json.dumps(SAMPLE_EVENT), "--reasons", "100",
        ).output
    )  # fmt: skip
    total = every["reasons_base"] + sum(x["contribution"] for x in every["reasons"])
    assert total == pytest.approx(every["score"], abs=1e-12)


def test_a_split_is_explained_on_the_arm_that_scored(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    doc = d.doc()
    doc["routing"]["scoringRules"][1] = {
        "condition": {},
        "targets": [
            {"predictor": "single-v1", "weight": 50},
            {"predictor": "ensemble-v1", "weight": 50},
        ],
    }
    d.write(doc)
    for _ in range(3):  # by event id: the CLI uses one id for both passes
        r = invoke(
            "score", str(d.config), "-i", "tenant=bank9", "--features", json.dumps(SAMPLE_EVENT),
            "--reasons", "100",
        )  # fmt: skip
        out = json.loads(r.output)
        assert out["reasons_predictor"] == out["live"]["predictor"]
        total = out["reasons_base"] + sum(x["contribution"] for x in out["reasons"])
        assert total == pytest.approx(out["score"], abs=1e-12)


def test_bad_input_is_refused_as_scoring_refuses_it(service: ScoringService) -> None:
    from muse.errors import FeatureError

    snap = service.snapshot
    with pytest.raises(FeatureError, match="unknown feature"):
        explain_batch(
            snap,
            [{"tenant": "bank1"}],
            {**{k: [v] for k, v in SAMPLE_EVENT.items()}, "bogus": [1.0]},
        )
    with pytest.raises(FeatureError, match="2 intents but features for 1"):
        explain_batch(snap, [{"tenant": "bank1"}] * 2, [SAMPLE_EVENT])
    with pytest.raises(FeatureError, match="event ids"):
        explain_batch(snap, [{"tenant": "bank1"}], [SAMPLE_EVENT], event_ids=["a", "b"])
    with pytest.raises(ValueError, match="positive number of reasons"):
        explain_batch(snap, [{"tenant": "bank1"}], [SAMPLE_EVENT], top=0)


def test_a_model_without_an_explanation_says_what_to_give(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    d.replace(", explain: models/m2.txt", "")
    service = ScoringService.from_config(d.config)
    try:
        with pytest.raises(
            ReasonsUnavailableError, match=r"model 'm2' \(onnx\).*models\.m2\.explain"
        ):
            service.explain({"tenant": "bank1"}, SAMPLE_EVENT)
        # a predictor whose models all explain still does
        assert service.explain({"tenant": "bank2"}, SAMPLE_EVENT).predictor == "single-v1"
    finally:
        service.close()
    r = invoke(
        "score", str(d.config), "-i", "tenant=bank1", "--features", json.dumps(SAMPLE_EVENT),
        "--reasons", "3",
    )  # fmt: skip
    assert r.exit_code == 2
    assert "cannot give reasons" in r.output


def test_an_explain_model_is_checked_against_the_model_it_explains(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    # the same features, other trees: not what m2.onnx was exported from
    frame = quickstart_traffic(2_000, seed=9)
    names = (
        ModelPool()
        .get(ModelSpec(kind="onnx", path=QUICKSTART / "models" / "m2.onnx"))
        .feature_names
    )
    other = lightgbm.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1, "seed": 1},
        lightgbm.Dataset(frame.feature_matrix(names), label=frame.label, feature_name=list(names)),
        num_boost_round=5,
    )
    other.save_model(str(d.root / "models" / "other.txt"))
    d.replace("explain: models/m2.txt", "explain: models/other.txt")
    # serving loads it on first use (asking for no reasons costs nothing) and says why
    service = ScoringService.from_config(d.config)
    try:
        with pytest.raises(ReasonsUnavailableError, match="answers differently from the model"):
            service.explain({"tenant": "bank1"}, SAMPLE_EVENT)
    finally:
        service.close()
    # `muse validate` (and so `muse publish`) refuses it, under its path
    _, issues = check_config(d.config)
    assert [i.path for i in issues] == ["models.m2.explain"]
    assert "answers differently from the model it explains" in issues[0].message
    r = invoke("validate", str(d.config))
    assert r.exit_code == 2
    assert "models.m2.explain" in r.output
    d.replace("explain: models/other.txt", "explain: models/m1.txt")
    _, issues = check_config(d.config)
    assert "not the model this was exported from" in issues[0].message


def test_explain_is_validated_in_the_config(tmp_path: Path) -> None:
    d = Deployment.copy_quickstart(tmp_path / "q")
    d.replace(
        "m1: {backend: lightgbm, uri: models/m1.txt,",
        "m1: {backend: lightgbm, uri: models/m1.txt, explain: models/m2.txt,",
    )
    d.replace("explain: models/m3.json", "explain: models/m3.onnx")
    d.replace("explain: models/m2.txt}", "explain: models/missing.txt}")
    issues = d.issues()
    assert any("explains itself" in m for m in issues.get("models.m1", []))
    assert "expected a LightGBM text model" in issues["models.m3.explain"][0]
    assert "does not exist" in issues["models.m2.explain"][0]


def test_a_published_version_carries_its_explain_models(service: ScoringService) -> None:
    files = bundle_files(service.snapshot.config)
    assert {"models/m2.txt", "models/m3.json"} <= set(files)
