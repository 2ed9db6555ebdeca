"""The scoring core over the quickstart deployment: routing, shadows, sharing, reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from muse.backends import ModelBackend, ModelPool, ModelSpec
from muse.config import load_config
from muse.datasets import EventFrame, generate_events, make_tenants
from muse.errors import BackendError, ConfigError, FeatureError, IntentError, NoRouteError
from muse.service import ScoringService, build_snapshot
from muse.types import FeatureMatrix, ScoreArray

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
SAMPLE = json.loads((QUICKSTART / "sample_event.json").read_text())


class Counting:
    """Wraps a real backend and counts the rows it scores (invariant 5)."""

    def __init__(self, inner: ModelBackend) -> None:
        self.inner = inner
        self.rows = 0
        self.fail = False

    kind = property(lambda self: self.inner.kind)
    feature_names = property(lambda self: self.inner.feature_names)
    digest = property(lambda self: self.inner.digest)

    def predict(self, features: FeatureMatrix) -> ScoreArray:
        if self.fail:
            raise RuntimeError("model server is down")
        self.rows += features.shape[0]
        return self.inner.predict(features)


class CountingPool(ModelPool):
    def __init__(self) -> None:
        super().__init__()
        self.wrapped: dict[str, Counting] = {}

    def get(self, spec: ModelSpec) -> ModelBackend:
        key = spec.path.name
        if key not in self.wrapped:
            self.wrapped[key] = Counting(super().get(spec))
        return self.wrapped[key]


@pytest.fixture(scope="module")
def service() -> ScoringService:
    return ScoringService.from_config(QUICKSTART / "muse.yaml")


@pytest.fixture
def counted() -> tuple[ScoringService, CountingPool]:
    pool = CountingPool()
    config = load_config(QUICKSTART / "muse.yaml")
    return ScoringService(build_snapshot(config, pool), pool), pool


@pytest.fixture(scope="module")
def events() -> EventFrame:
    tenants = make_tenants(3, seed=11, names=("bank1", "bank2", "fintech3"))
    return generate_events(tenants, 600, seed=9)


def test_routes_follow_the_quickstart_rules(service: ScoringService) -> None:
    bank1 = service.score({"tenant": "bank1"}, SAMPLE)
    assert bank1.live.predictor == "ensemble-v1"
    assert bank1.shadows == ()
    bank2 = service.score({"tenant": "bank2", "channel": "web"}, SAMPLE, event_id="e-2")
    assert bank2.live.predictor == "single-v1"
    assert [s.predictor for s in bank2.shadows] == ["ensemble-v1"]
    assert bank2.shadows[0].role == "shadow"
    assert bank2.event_id == "e-2"
    assert bank2.config_version == "quickstart-1"
    assert 0.0 <= bank2.score <= 1.0


def test_tenant_maps_and_cold_start_default(service: ScoringService) -> None:
    own = service.score({"tenant": "bank2"}, SAMPLE)
    cold = service.score({"tenant": "fintech3"}, SAMPLE)
    assert own.live.tq_version == "v1"
    assert cold.live.tq_version == "default-v0"
    assert own.live.raw == cold.live.raw  # same predictor, same features
    assert own.live.score != cold.live.score


def test_shadow_reuses_the_live_models_outputs(service: ScoringService) -> None:
    r = service.score({"tenant": "bank2"}, SAMPLE)
    assert r.shadows[0].experts["m1"] == r.live.experts["m1"]


def test_batch_equals_single_events_for_mixed_tenants(
    service: ScoringService, events: EventFrame
) -> None:
    n = 60
    intents = [events.intents(i) for i in range(n)]
    rows = [r["features"] for r in events.to_rows(limit=n)]
    batch = service.score_batch(intents, rows)
    assert len({r.live.predictor for r in batch}) == 2
    for i in (0, 7, 31, 59):
        one = service.score(intents[i], rows[i])
        assert one.live.score == batch[i].live.score
        assert [s.score for s in one.shadows] == [s.score for s in batch[i].shadows]


def test_each_model_runs_once_per_event_across_live_and_shadow(
    counted: tuple[ScoringService, CountingPool], events: EventFrame
) -> None:
    service, pool = counted
    n = 300
    intents = [events.intents(i) for i in range(n)]
    columns = {f: events.features[f][:n] for f in events.feature_names}
    results = service.score_batch(intents, columns)
    # m1 is used by both predictors: every event needs it exactly once.
    assert pool.wrapped["m1.txt"].rows == n
    # m2/m3 belong to the ensemble only: live for bank1, shadow for bank2 and fintech3.
    assert pool.wrapped["m2.onnx"].rows == n
    assert pool.wrapped["m3.onnx"].rows == n
    assert all(len(r.shadows) == (0 if r.intent["tenant"] == "bank1" else 1) for r in results)


def test_a_failing_shadow_model_never_fails_the_live_score(
    counted: tuple[ScoringService, CountingPool],
) -> None:
    service, pool = counted
    before = service.score({"tenant": "bank2"}, SAMPLE)
    pool.wrapped["m3.onnx"].fail = True
    after = service.score({"tenant": "bank2"}, SAMPLE)
    assert after.live == before.live
    assert after.shadows == ()
    assert "m3" in after.shadow_errors["ensemble-v1"]
    with pytest.raises(BackendError, match="m3"):
        service.score({"tenant": "bank1"}, SAMPLE)  # live ensemble needs m3


def test_shadow_missing_a_feature_only_the_shadow_needs(service: ScoringService) -> None:
    m1_only = {k: v for k, v in SAMPLE.items() if k not in ("email_age_days", "n_items")}
    r = service.score({"tenant": "bank2"}, m1_only)
    assert r.live.predictor == "single-v1"
    assert "email_age_days" in r.shadow_errors["ensemble-v1"]
    with pytest.raises(FeatureError, match="email_age_days") as info:
        service.score({"tenant": "bank1"}, m1_only)
    assert info.value.feature == "email_age_days"


@pytest.mark.parametrize(
    ("intent", "features", "error", "message"),
    [
        ({"channel": "web"}, SAMPLE, IntentError, "tenant"),
        ({"tenant": ""}, SAMPLE, IntentError, "tenant"),
        ({"tenant": "bank1", "colour": "red"}, SAMPLE, IntentError, "colour"),
        ({"tenant": "bank1"}, {**SAMPLE, "shoe_size": 42}, FeatureError, "shoe_size"),
        ({"tenant": "bank1"}, {**SAMPLE, "amount": float("inf")}, FeatureError, "amount"),
        ({"tenant": "bank1"}, {**SAMPLE, "amount": "12"}, FeatureError, "amount"),
    ],
)
def test_bad_input_is_rejected_with_a_named_error(
    service: ScoringService,
    intent: dict[str, str],
    features: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        service.score(intent, features)


def test_a_bad_event_rejects_the_whole_batch_naming_its_index(service: ScoringService) -> None:
    rows = [SAMPLE, SAMPLE, {**SAMPLE, "amount": float("nan")}]
    with pytest.raises(FeatureError) as info:
        service.score_batch([{"tenant": "bank1"}] * 3, rows)
    assert info.value.index == 2
    with pytest.raises(IntentError, match="event 1"):
        service.score_batch([{"tenant": "bank1"}, {"tenant": "bank1", "x": "y"}], [SAMPLE, SAMPLE])


def _copy_quickstart(tmp_path: Path) -> Path:
    for name in ("models", "transforms", "features"):
        shutil.copytree(QUICKSTART / name, tmp_path / name)
    shutil.copy(QUICKSTART / "muse.yaml", tmp_path / "muse.yaml")
    return tmp_path / "muse.yaml"


def test_no_route_is_a_named_error(tmp_path: Path) -> None:
    config = _copy_quickstart(tmp_path)
    text = config.read_text().replace("condition: {}", "condition: {tenants: [bank2]}")
    config.write_text(text)
    service = ScoringService.from_config(config)
    with pytest.raises(NoRouteError, match="fintech3"):
        service.score({"tenant": "fintech3"}, SAMPLE)


def test_reload_swaps_atomically_reuses_models_and_rejects_invalid_configs(tmp_path: Path) -> None:
    config = _copy_quickstart(tmp_path)
    service = ScoringService.from_config(config)
    loads = service.pool.loads
    old = service.snapshot
    assert service.score({"tenant": "bank2"}, SAMPLE).live.predictor == "single-v1"

    config.write_text(
        config.read_text()
        .replace("version: quickstart-1", "version: quickstart-2")
        .replace('tenants: ["bank1"]', 'tenants: ["bank1", "bank2"]')
    )
    new = service.reload()
    assert new is service.snapshot is not old
    assert service.pool.loads == loads  # models reused, not reloaded
    r = service.score({"tenant": "bank2"}, SAMPLE)
    assert (r.live.predictor, r.config_version) == ("ensemble-v1", "quickstart-2")

    config.write_text(config.read_text().replace("undersampling: 0.02", "undersampling: 2"))
    with pytest.raises(ConfigError, match="undersampling"):
        service.reload()
    assert service.snapshot is new
    assert service.score({"tenant": "bank2"}, SAMPLE).config_version == "quickstart-2"


def test_scores_are_deterministic_and_within_unit_interval(
    service: ScoringService, events: EventFrame
) -> None:
    intents = [events.intents(i) for i in range(len(events))]
    columns = {f: events.features[f] for f in events.feature_names}
    a = np.array([r.score for r in service.score_batch(intents, columns)])
    b = np.array([r.score for r in service.score_batch(intents, columns)])
    assert np.array_equal(a, b)
    assert ((a >= 0) & (a <= 1)).all()


def test_a_model_named_by_three_predictors_is_loaded_once(tmp_path: Path) -> None:
    config = _copy_quickstart(tmp_path)
    # A third predictor on m1 alone: same fingerprint as single-v1, so its maps are valid.
    shutil.copytree(tmp_path / "transforms" / "single-v1", tmp_path / "transforms" / "single-v1b")
    config.write_text(
        config.read_text().replace(
            "\nrouting:",
            "\n  single-v1b:\n    experts: [{model: m1}]\n    reference: fraud-v1\n"
            "    transforms: transforms/single-v1b\n\nrouting:",
        )
    )
    service = ScoringService.from_config(config)
    predictors = service.snapshot.predictors
    users_of_m1 = [p for p in predictors.values() if "m1" in p.models]
    assert len(users_of_m1) == 3
    assert service.pool.loads == 3  # m1, m2, m3: one load per distinct model file
    backends = {id(e.backend) for p in users_of_m1 for e in p.experts if e.model == "m1"}
    assert len(backends) == 1


def test_shadows_keep_route_order_whatever_the_batch_order(tmp_path: Path) -> None:
    config = _copy_quickstart(tmp_path)
    shutil.copytree(tmp_path / "transforms" / "single-v1", tmp_path / "transforms" / "single-v1b")
    text = config.read_text().replace(
        "\nrouting:",
        "\n  single-v1b:\n    experts: [{model: m1}]\n    reference: fraud-v1\n"
        "    transforms: transforms/single-v1b\n\nrouting:",
    )
    text = text.replace(
        "  shadowRules:\n",
        "  shadowRules:\n"
        "    - condition: {channels: [web]}\n"
        "      targetPredictorNames: [single-v1b]\n",
    )
    config.write_text(text)
    service = ScoringService.from_config(config)
    pos = {"tenant": "fintech3", "channel": "pos"}
    web = {"tenant": "fintech3", "channel": "web"}
    assert service.route(web).shadows == ("single-v1b", "ensemble-v1")
    # The pos event comes first, so the ensemble's group is filled before single-v1b's.
    results = service.score_batch([pos, web], [SAMPLE, SAMPLE])
    assert [s.predictor for s in results[0].shadows] == ["ensemble-v1"]
    assert [s.predictor for s in results[1].shadows] == ["single-v1b", "ensemble-v1"]
    assert results[1].shadow_errors == {}


# -- live first, shadows deferred (what the HTTP service does) ---------------------------


def test_score_live_answers_first_and_deferred_shadows_complete_the_batch(
    counted: tuple[ScoringService, CountingPool], events: EventFrame
) -> None:
    service, pool = counted
    n = 200
    intents = [events.intents(i) for i in range(n)]
    columns = {f: events.features[f][:n] for f in events.feature_names}
    reference = service.score_batch(intents, columns)
    rows_before = {k: w.rows for k, w in pool.wrapped.items()}

    outcome = service.score_live(intents, columns)
    assert [r.live for r in outcome.results] == [r.live for r in reference]
    assert all(r.shadows == () for r in outcome.results)
    # Live needs m1 for everyone, m2/m3 only for bank1 (live ensemble).
    bank1 = sum(1 for i in intents if i["tenant"] == "bank1")
    assert pool.wrapped["m1.txt"].rows - rows_before["m1.txt"] == n
    assert pool.wrapped["m3.onnx"].rows - rows_before["m3.onnx"] == bank1

    assert outcome.deferred is not None
    assert outcome.deferred.predictors == ("ensemble-v1",)
    full = outcome.deferred.run()
    assert full == reference
    # The shadows reused m1's outputs: every model still ran once per event in total.
    for key in ("m1.txt", "m2.onnx", "m3.onnx"):
        assert pool.wrapped[key].rows - rows_before[key] == n


def test_deferred_shadows_never_raise(counted: tuple[ScoringService, CountingPool]) -> None:
    service, pool = counted
    outcome = service.score_live([{"tenant": "bank2"}], [SAMPLE])
    pool.wrapped["m2.onnx"].fail = True
    assert outcome.deferred is not None
    (result,) = outcome.deferred.run()
    assert result.shadows == ()
    assert "m2" in result.shadow_errors["ensemble-v1"]
    assert result.live == outcome.results[0].live


def test_no_shadow_rule_means_no_deferred_work(service: ScoringService) -> None:
    outcome = service.score_live([{"tenant": "bank1"}], [SAMPLE])
    assert outcome.deferred is None
    assert outcome.results[0].live.predictor == "ensemble-v1"


def test_deferred_shadows_say_whether_they_run_models(
    tmp_path: Path, counted: tuple[ScoringService, CountingPool]
) -> None:
    # The quickstart's bank2 shadow (the ensemble) needs m2 and m3, which its live
    # single-v1 did not run: that work calls models.
    heavy = counted[0].score_live([{"tenant": "bank2"}], [SAMPLE]).deferred
    assert heavy is not None
    assert heavy.runs_models

    # A single-v1 shadow for bank1 (live: the ensemble, which ran m1) only transforms m1's
    # output, and its results are those of the all-at-once scoring.
    config = _copy_quickstart(tmp_path)
    config.write_text(
        config.read_text().replace(
            "  shadowRules:\n",
            "  shadowRules:\n"
            "    - condition: {tenants: [bank1]}\n"
            "      targetPredictorNames: [single-v1]\n",
        )
    )
    pool = CountingPool()
    service = ScoringService(build_snapshot(load_config(config), pool), pool)
    intents = [{"tenant": "bank1"}, {"tenant": "bank1"}]
    outcome = service.score_live(intents, [SAMPLE, SAMPLE])
    light = outcome.deferred
    assert light is not None
    assert not light.runs_models
    rows = {k: w.rows for k, w in pool.wrapped.items()}
    full = light.run()
    assert {k: w.rows for k, w in pool.wrapped.items()} == rows  # no model ran
    assert full == service.score_batch(intents, [SAMPLE, SAMPLE])
    assert [s.predictor for r in full for s in r.shadows] == ["single-v1", "single-v1"]
