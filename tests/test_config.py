"""Tests for muse.config: the validated deployment tree, its cross-references and T^Q artifacts.

Every test works on a copy of ``examples/quickstart`` (see ``tests/config_fixtures.py``) and
breaks it in one way; each error is checked for its YAML path *and* a message that says what
is wrong and, where there is one, the fix. Fingerprint properties (ARCHITECTURE invariant 2,
the paper's "p1.5") are checked both through whole configs and on
:func:`muse.fingerprint.predictor_fingerprint` directly.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muse.config import load_config
from muse.errors import ConfigError, MuseError
from muse.fingerprint import predictor_fingerprint
from tests.config_fixtures import Deployment
from tests.strategies import betas

PREDICTORS = ("single-v1", "ensemble-v1")


@pytest.fixture
def quickstart(tmp_path: Path) -> Deployment:
    return Deployment.copy_quickstart(tmp_path / "quickstart")


def set_at(doc: dict[str, Any], path: str, value: object) -> None:
    """Set ``value`` at a YAML path like ``predictors.p1.experts[0].weight``."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, *indices = re.split(r"\[(\d+)\]", part)
        steps.append(name)
        steps.extend(int(i) for i in indices if i)
    node: Any = doc
    for step in steps[:-1]:
        node = node[step]
    node[steps[-1]] = value


def edit(path: str, value: object) -> Callable[[Deployment], None]:
    """A mutation setting one YAML path of the deployment."""

    def apply(d: Deployment) -> None:
        doc = d.doc()
        set_at(doc, path, value)
        d.write(doc)

    return apply


# -- the valid quickstart -------------------------------------------------------------------


def test_quickstart_loads_with_everything_resolved(quickstart: Deployment) -> None:
    loaded = quickstart.load()

    assert loaded.version == "quickstart-1"
    assert loaded.digest.startswith("cfg-")
    assert set(loaded.fingerprints) == set(PREDICTORS)
    assert all(re.fullmatch(r"fp-[0-9a-f]{16}", fp) for fp in loaded.fingerprints.values())
    assert loaded.fingerprints["single-v1"] != loaded.fingerprints["ensemble-v1"]
    assert set(loaded.model_specs) == {"m1", "m2", "m3"}
    assert loaded.betas("ensemble-v1") == [0.18, 0.18, 0.02]
    for name in PREDICTORS:
        tq = loaded.transforms[name]
        assert tq.default.tenant is None
        assert tq.default.version == 0
        assert tq.default.label == "default-v0"
        assert set(tq.tenants) == {"bank1", "bank2"}
        for tenant, artifact in tq.tenants.items():
            assert artifact.tenant == tenant
            assert artifact.label == "v1"
        for artifact in (tq.default, *tq.tenants.values()):
            assert artifact.fingerprint == loaded.fingerprints[name]
            assert artifact.reference == "fraud-v1"
    assert loaded.router.route({"tenant": "bank1"}).live == "ensemble-v1"
    assert loaded.router.route({"tenant": "bank2"}).shadows == ("ensemble-v1",)


def test_fingerprints_hash_model_files_betas_and_weights(quickstart: Deployment) -> None:
    loaded = quickstart.load()
    for name, predictor in loaded.spec.predictors.items():
        members = [
            (loaded.model_digests[e.model], loaded.spec.models[e.model].undersampling, e.weight)
            for e in predictor.experts
        ]
        assert loaded.fingerprints[name] == predictor_fingerprint(members, predictor.aggregation)


def test_spec_is_frozen(quickstart: Deployment) -> None:
    loaded = quickstart.load()
    with pytest.raises(ValueError, match="frozen"):
        loaded.spec.models["m1"].undersampling = 0.5  # type: ignore[misc]


def test_version_defaults_to_the_digest(quickstart: Deployment) -> None:
    quickstart.replace("version: quickstart-1\n", "")
    loaded = quickstart.load()
    assert loaded.version == loaded.digest


def change_artifact(d: Deployment) -> None:
    path = d.artifact("ensemble-v1", "bank1")
    doc = d.artifact_doc(path)
    doc["created_at"] = "2030-01-01T00:00:00+00:00"
    d.write_artifact_doc(path, doc)


def change_yaml(d: Deployment) -> None:
    d.text = d.text + "# a comment\n"


@pytest.mark.parametrize("change", [change_artifact, change_yaml], ids=["artifact", "yaml"])
def test_digest_is_stable_and_follows_every_file(
    quickstart: Deployment, change: Callable[[Deployment], None]
) -> None:
    before = quickstart.load()
    assert quickstart.load().digest == before.digest
    change(quickstart)
    after = quickstart.load()
    assert after.digest != before.digest
    assert after.version == before.version == "quickstart-1"


def add_bank1_v2(d: Deployment, predictor: str = "single-v1") -> None:
    doc = d.artifact_doc(d.artifact(predictor, "bank1"))
    doc["version"] = 2
    doc["created_at"] = "2030-01-01T00:00:00+00:00"
    d.write_artifact_doc(d.artifact(predictor, "bank1", 2), doc)


def test_latest_version_is_deployed(quickstart: Deployment) -> None:
    add_bank1_v2(quickstart)
    tq = quickstart.load().transforms["single-v1"]
    assert tq.tenants["bank1"].version == 2
    assert tq.tenants["bank2"].version == 1


@pytest.mark.parametrize(
    ("pins", "bank1", "default"), [({"bank1": 1}, 1, 0), ({"bank1": 2, "default": 0}, 2, 0)]
)
def test_pinned_version_is_honoured(
    quickstart: Deployment, pins: dict[str, int], bank1: int, default: int
) -> None:
    add_bank1_v2(quickstart)
    edit("predictors.single-v1.pins", pins)(quickstart)
    tq = quickstart.load().transforms["single-v1"]
    assert tq.tenants["bank1"].version == bank1
    assert tq.default.version == default


def test_pin_to_a_missing_version_names_the_file(quickstart: Deployment) -> None:
    edit("predictors.single-v1.pins", {"bank1": 7})(quickstart)
    issues = quickstart.issues()
    assert list(issues) == ["predictors.single-v1.pins.bank1"]
    (message,) = issues["predictors.single-v1.pins.bank1"]
    assert "pinned version v7" in message
    assert str(quickstart.artifact("single-v1", "bank1", 7)) in message
    assert "present: ['v1']" in message


def test_pin_to_an_unusable_tenant_name_is_an_issue(quickstart: Deployment) -> None:
    edit("predictors.single-v1.pins", {"bank/1": 1})(quickstart)
    issues = quickstart.issues()
    assert "not usable as a folder name" in issues["predictors.single-v1.pins.bank/1"][0]


# -- every error class: its YAML path and its message ---------------------------------------


def typo_tenants(d: Deployment) -> None:
    d.replace('tenants: ["bank1"]', 'tennants: ["bank1"]')


def add_top_level_key(d: Deployment) -> None:
    doc = d.doc()
    doc["modles"] = {}
    d.write(doc)


def delete_model_file(d: Deployment) -> None:
    (d.root / "models" / "m2.onnx").unlink()


def delete_default_artifact(d: Deployment) -> None:
    shutil.rmtree(d.root / "transforms" / "single-v1" / "default")


def list_model_twice(d: Deployment) -> None:
    doc = d.doc()
    doc["predictors"]["ensemble-v1"]["experts"].append({"model": "m1"})
    d.write(doc)


def drop_required_field(d: Deployment) -> None:
    doc = d.doc()
    del doc["predictors"]["single-v1"]["reference"]
    d.write(doc)


# (id, mutation, YAML path, fragments the message must contain)
ERRORS: list[tuple[str, Callable[[Deployment], None], str, tuple[str, ...]]] = [
    (
        "unknown-model",
        edit("predictors.ensemble-v1.experts[1].model", "m9"),
        "predictors.ensemble-v1.experts[1].model",
        ("unknown model 'm9'", "defined: ['m1', 'm2', 'm3']"),
    ),
    (
        "unknown-predictor-scoring-rule",
        edit("routing.scoringRules[0].targetPredictorName", "ensemble-v2"),
        "routing.scoringRules[0].targetPredictorName",
        ("unknown predictor 'ensemble-v2'", "'single-v1'"),
    ),
    (
        "unknown-predictor-shadow-rule",
        edit("routing.shadowRules[0].targetPredictorNames", ["ensemble-v1", "ensemble-v9"]),
        "routing.shadowRules[0].targetPredictorNames[1]",
        ("unknown predictor 'ensemble-v9'", "'ensemble-v1'"),
    ),
    (
        "unknown-reference",
        edit("predictors.single-v1.reference", "fraud-v2"),
        "predictors.single-v1.reference",
        ("unknown reference 'fraud-v2'", "defined: ['fraud-v1']"),
    ),
    (
        "beta-zero",
        edit("models.m3.undersampling", 0),
        "models.m3.undersampling",
        ("greater than 0", "got 0"),
    ),
    (
        "beta-above-one",
        edit("models.m3.undersampling", 1.5),
        "models.m3.undersampling",
        ("less than or equal to 1", "got 1.5"),
    ),
    (
        "beta-negative",
        edit("models.m3.undersampling", -1),
        "models.m3.undersampling",
        ("greater than 0", "got -1"),
    ),
    (
        "beta-nan",
        edit("models.m3.undersampling", math.nan),
        "models.m3.undersampling",
        ("finite", "nan"),
    ),
    (
        "weight-zero",
        edit("predictors.ensemble-v1.experts[0].weight", 0),
        "predictors.ensemble-v1.experts[0].weight",
        ("greater than 0", "got 0"),
    ),
    (
        "weight-negative",
        edit("predictors.ensemble-v1.experts[2].weight", -1),
        "predictors.ensemble-v1.experts[2].weight",
        ("greater than 0", "got -1"),
    ),
    (
        "weight-nan",
        edit("predictors.ensemble-v1.experts[0].weight", math.nan),
        "predictors.ensemble-v1.experts[0].weight",
        ("finite", "nan"),
    ),
    (
        "condition-key-typo",
        typo_tenants,
        "routing.scoringRules[0].condition.tennants",
        ("unknown condition key 'tennants'", "did you mean 'tenants'?"),
    ),
    (
        "unknown-top-level-key",
        add_top_level_key,
        "modles",
        ("unknown top-level key", "models"),
    ),
    (
        "unknown-model-key",
        edit("models.m1.treads", 2),
        "models.m1.treads",
        ("unknown key", "spelling"),
    ),
    (
        "unknown-expert-key",
        edit("predictors.ensemble-v1.experts[0].wieght", 2),
        "predictors.ensemble-v1.experts[0].wieght",
        ("unknown key",),
    ),
    (
        "unknown-backend",
        edit("models.m1.backend", "torch"),
        "models.m1.backend",
        ("'lightgbm', 'onnx', 'xgboost' or 'kserve-v2'", "got 'torch'"),
    ),
    (
        "missing-field",
        drop_required_field,
        "predictors.single-v1.reference",
        ("required",),
    ),
    (
        "missing-model-file",
        delete_model_file,
        "models.m2.uri",
        ("model file", "m2.onnx", "does not exist"),
    ),
    (
        "missing-default-artifact",
        delete_default_artifact,
        "predictors.single-v1.transforms",
        ("missing artifact file", "default (cold-start) map", "single-v1/default"),
    ),
    (
        "model-listed-twice",
        list_model_twice,
        "predictors.ensemble-v1.experts[3].model",
        ("model 'm1' is listed twice",),
    ),
    (
        "empty-experts",
        edit("predictors.single-v1.experts", []),
        "predictors.single-v1.experts",
        ("at least 1",),
    ),
    (
        "two-kinds-of-reference",
        edit("references.fraud-v1.samples", "scores.json"),
        "references.fraud-v1",
        ("exactly one of beta, quantiles, samples",),
    ),
    (
        "bad-intent-attribute",
        edit("intent", {"attributes": ["Merchant"]}),
        "intent.attributes",
        ("lower-case identifiers", "'Merchant'"),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "fragments"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_each_error_names_its_yaml_path_and_the_problem(
    quickstart: Deployment,
    mutate: Callable[[Deployment], None],
    path: str,
    fragments: tuple[str, ...],
) -> None:
    mutate(quickstart)
    issues = quickstart.issues()
    assert path in issues, f"no issue at {path}; got {issues}"
    message = " | ".join(issues[path])
    for fragment in fragments:
        assert fragment in message


def test_validator_messages_are_given_verbatim(quickstart: Deployment) -> None:
    edit("intent", {"attributes": ["Merchant"]})(quickstart)
    (message,) = quickstart.issues()["intent.attributes"]
    assert message == "attribute names are lower-case identifiers, got 'Merchant'"


def test_config_error_is_a_muse_error_and_a_value_error(quickstart: Deployment) -> None:
    edit("models.m3.undersampling", 2)(quickstart)
    error = quickstart.error()
    assert isinstance(error, MuseError)
    assert isinstance(error, ValueError)
    assert error.source == str(quickstart.config)
    assert "models.m3.undersampling:" in str(error)


@pytest.mark.parametrize("section", ["references", "models", "predictors", "routing"])
def test_missing_section_is_reported(quickstart: Deployment, section: str) -> None:
    doc = quickstart.doc()
    del doc[section]
    quickstart.write(doc)
    assert quickstart.issues()[section] == ["required section is missing"]


@pytest.mark.parametrize("section", ["references", "models", "predictors"])
def test_section_of_the_wrong_type_is_reported_not_crashed_on(
    quickstart: Deployment, section: str
) -> None:
    doc = quickstart.doc()
    doc[section] = [{"name": "x"}]  # a list of entries instead of a mapping of names
    quickstart.write(doc)
    assert "must be a mapping of name → entry, got list" in quickstart.issues()[section]


def line_of(d: Deployment, fragment: str) -> int:
    return next(i for i, line in enumerate(d.text.splitlines(), 1) if fragment in line)


def test_malformed_yaml_reports_the_line(quickstart: Deployment) -> None:
    quickstart.replace("m3: {backend: onnx", "m3: {backend: [: onnx")
    line = line_of(quickstart, "m3: {backend: [")
    (issue,) = quickstart.error().issues
    assert issue.message.startswith("malformed YAML")
    assert f"line {line}," in issue.message


def test_duplicate_yaml_keys_are_rejected(quickstart: Deployment) -> None:
    quickstart.replace("  m3: {", "  m1: {backend: onnx, uri: models/m2.onnx}\n  m3: {")
    line = line_of(quickstart, "m1: {backend: onnx")
    (issue,) = quickstart.error().issues
    assert "duplicate key 'm1'" in issue.message
    assert f"line {line}," in issue.message


@pytest.mark.parametrize(("text", "kind"), [("", "NoneType"), ("- a\n- b\n", "list")])
def test_document_must_be_a_mapping(quickstart: Deployment, text: str, kind: str) -> None:
    quickstart.text = text
    (issue,) = quickstart.error().issues
    assert issue.message == f"the config must be a YAML mapping, got {kind}"


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*No such file"):
        load_config(tmp_path / "absent.yaml")


# -- T^Q artifacts: fingerprints, references, corruption ------------------------------------


def change_weight(d: Deployment) -> None:
    edit("predictors.ensemble-v1.experts[0].weight", 2)(d)


def drop_expert(d: Deployment) -> None:
    doc = d.doc()
    doc["predictors"]["ensemble-v1"]["experts"].pop()
    d.write(doc)


def add_expert(d: Deployment) -> None:
    doc = d.doc()
    doc["models"]["m4"] = {"backend": "xgboost", "uri": "models/m3.json", "undersampling": 0.05}
    doc["predictors"]["ensemble-v1"]["experts"].append({"model": "m4", "weight": 1})
    d.write(doc)


def change_beta(d: Deployment) -> None:
    edit("models.m3.undersampling", 0.03)(d)


def change_model_file(d: Deployment) -> None:
    with (d.root / "models" / "m3.onnx").open("ab") as f:
        f.write(b"\n")


@pytest.mark.parametrize(
    "change",
    [change_weight, drop_expert, add_expert, change_beta, change_model_file],
    ids=["weight", "drop-expert", "add-expert", "beta", "model-file"],
)
def test_changed_ensemble_cannot_use_its_old_maps(
    quickstart: Deployment, change: Callable[[Deployment], None]
) -> None:
    """The paper's "p1.5": same name, different experts → every old map is rejected."""
    old = quickstart.load().fingerprints["ensemble-v1"]
    change(quickstart)
    issues = quickstart.issues()
    assert list(issues) == ["predictors.ensemble-v1.transforms"]  # single-v1 is untouched
    messages = issues["predictors.ensemble-v1.transforms"]
    assert len(messages) == 3  # default, bank1 and bank2 maps
    files = [
        quickstart.artifact("ensemble-v1"),
        quickstart.artifact("ensemble-v1", "bank1"),
        quickstart.artifact("ensemble-v1", "bank2"),
    ]
    for message, file in zip(sorted(messages), sorted(str(f) for f in files), strict=True):
        assert message.startswith(f"{file}: fingerprint mismatch")
        assert old in message
        assert "fit a new map" in message


def test_beta_of_a_single_model_predictor_is_irrelevant(quickstart: Deployment) -> None:
    """Single-model predictors skip T^C (Eq. 2): m1's β changes only the ensemble's maps."""
    before = quickstart.load().fingerprints
    edit("models.m1.undersampling", 0.5)(quickstart)
    issues = quickstart.issues()
    assert list(issues) == ["predictors.ensemble-v1.transforms"]
    doc = quickstart.doc()
    doc["predictors"].pop("ensemble-v1")
    doc["routing"]["scoringRules"][0]["targetPredictorName"] = "single-v1"
    del doc["routing"]["shadowRules"]
    quickstart.write(doc)
    assert quickstart.load().fingerprints["single-v1"] == before["single-v1"]


def test_changing_the_reference_rejects_its_maps(quickstart: Deployment) -> None:
    edit("references.fraud-v1.beta", {"a": 1.0, "b": 9.0})(quickstart)
    issues = quickstart.issues()
    assert set(issues) == {f"predictors.{p}.transforms" for p in PREDICTORS}
    for messages in issues.values():
        assert len(messages) == 3
        for message in messages:
            assert "targets reference 'fraud-v1'" in message
            assert "fit a new map" in message
            assert ".json: " in message


def corrupt_json(d: Deployment, path: Path) -> None:
    path.write_text("{not json", encoding="utf-8")


def not_an_object(d: Deployment, path: Path) -> None:
    path.write_text("[]", encoding="utf-8")


def wrong_format(d: Deployment, path: Path) -> None:
    doc = d.artifact_doc(path)
    doc["format"] = "something-else"
    d.write_artifact_doc(path, doc)


def missing_keys(d: Deployment, path: Path) -> None:
    doc = d.artifact_doc(path)
    del doc["fingerprint"]
    d.write_artifact_doc(path, doc)


def wrong_version(d: Deployment, path: Path) -> None:
    doc = d.artifact_doc(path)
    doc["version"] = 3
    d.write_artifact_doc(path, doc)


def wrong_tenant(d: Deployment, path: Path) -> None:
    doc = d.artifact_doc(path)
    doc["tenant"] = "bank2"
    d.write_artifact_doc(path, doc)


@pytest.mark.parametrize(
    ("corrupt", "fragment"),
    [
        (corrupt_json, "is not valid JSON"),
        (not_an_object, "must hold a JSON object"),
        (wrong_format, "expected an artifact of format 'muse/tq-artifact@1'"),
        (missing_keys, "missing key(s) ['fingerprint']"),
        (wrong_version, "records version 3 but is stored as v1"),
        (wrong_tenant, "was fitted for tenant 'bank2', not 'bank1'"),
    ],
    ids=["json", "not-object", "format", "keys", "version", "tenant"],
)
def test_corrupt_artifact_is_reported_with_its_file(
    quickstart: Deployment, corrupt: Callable[[Deployment, Path], None], fragment: str
) -> None:
    path = quickstart.artifact("ensemble-v1", "bank1")
    corrupt(quickstart, path)
    issues = quickstart.issues()
    assert list(issues) == ["predictors.ensemble-v1.transforms"]
    (message,) = issues["predictors.ensemble-v1.transforms"]
    assert str(path) in message
    assert fragment in message


def test_unreadable_reference_file_is_one_issue(quickstart: Deployment) -> None:
    edit("references.legacy", {"quantiles": "legacy.json"})(quickstart)
    issues = quickstart.issues()
    assert list(issues) == ["references.legacy.quantiles"]
    assert "cannot read" in issues["references.legacy.quantiles"][0]


def test_invalid_reference_json_names_the_file(quickstart: Deployment) -> None:
    edit("references.legacy", {"quantiles": "legacy.json"})(quickstart)
    (quickstart.root / "legacy.json").write_text("{oops", encoding="utf-8")
    assert "legacy.json is not valid JSON" in quickstart.issues()["references.legacy"][0]


# -- all at once ----------------------------------------------------------------------------


def test_every_independent_problem_is_reported_in_one_error(quickstart: Deployment) -> None:
    doc = quickstart.doc()
    set_at(doc, "predictors.ensemble-v1.experts[1].model", "m9")
    set_at(doc, "models.m3.undersampling", 1.5)
    set_at(doc, "predictors.single-v1.experts[0].weight", -1)
    set_at(doc, "models.m1.treads", 2)
    doc["modles"] = {}
    doc["routing"]["scoringRules"][0]["condition"] = {"tennants": ["bank1"]}
    quickstart.write(doc)
    (quickstart.root / "models" / "m2.onnx").unlink()

    issues = quickstart.issues()
    expected = {
        "predictors.ensemble-v1.experts[1].model",
        "models.m3.undersampling",
        "predictors.single-v1.experts[0].weight",
        "models.m1.treads",
        "modles",
        "routing.scoringRules[0].condition.tennants",
        "models.m2.uri",
    }
    assert expected <= set(issues)
    assert len(quickstart.error().issues) >= 4


# -- fingerprints survive cosmetic changes --------------------------------------------------


def rename_model(d: Deployment) -> None:
    doc = d.doc()
    doc["models"] = {("gbm1" if k == "m1" else k): v for k, v in doc["models"].items()}
    for p in doc["predictors"].values():
        for e in p["experts"]:
            e["model"] = "gbm1" if e["model"] == "m1" else e["model"]
    d.write(doc)


def rename_predictor(d: Deployment) -> None:
    d.replace("ensemble-v1:", "ensemble-main:")
    d.replace('"ensemble-v1"', '"ensemble-main"', count=2)  # the routing rules


def move_model_file(d: Deployment) -> None:
    (d.root / "models" / "xgb").mkdir()
    (d.root / "models" / "m3.onnx").rename(d.root / "models" / "xgb" / "m3.onnx")
    d.replace("uri: models/m3.onnx", "uri: models/xgb/m3.onnx")


def reorder_experts(d: Deployment) -> None:
    doc = d.doc()
    doc["predictors"]["ensemble-v1"]["experts"].reverse()
    d.write(doc)


def scale_weights(factor: float) -> Callable[[Deployment], None]:
    def apply(d: Deployment) -> None:
        doc = d.doc()
        for e in doc["predictors"]["ensemble-v1"]["experts"]:
            e["weight"] = e["weight"] * factor
        d.write(doc)

    return apply


@pytest.mark.parametrize(
    "change",
    [
        rename_model,
        rename_predictor,
        move_model_file,
        reorder_experts,
        scale_weights(2),
        scale_weights(3),
        scale_weights(0.5),
    ],
    ids=["rename-model", "rename-predictor", "move-file", "reorder", "x2", "x3", "x0.5"],
)
def test_cosmetic_changes_keep_fingerprints_and_maps(
    quickstart: Deployment, change: Callable[[Deployment], None]
) -> None:
    before = quickstart.load()
    change(quickstart)
    after = quickstart.load()  # the old maps still load: no fingerprint mismatch
    assert sorted(after.fingerprints.values()) == sorted(before.fingerprints.values())
    assert {a.transforms[p].default.version for a in (before, after) for p in a.transforms} == {0}


# -- predictor_fingerprint properties -------------------------------------------------------

digests = st.text("0123456789abcdef", min_size=8, max_size=8).map(lambda h: f"sha256:{h}")
# Integer weights sum exactly in any order, so the properties hold bit for bit.
int_weights = st.integers(1, 1000).map(float)
Member = tuple[str, float, float]


def members(
    min_size: int = 2, weights: st.SearchStrategy[float] | None = None
) -> st.SearchStrategy[list[Member]]:
    return st.lists(
        st.tuples(digests, betas, int_weights if weights is None else weights),
        min_size=min_size,
        max_size=6,
        unique_by=lambda m: m[0],
    )


@given(members(1, weights=st.floats(1e-3, 1e3)), st.data())
def test_fingerprint_ignores_expert_order(ms: list[Member], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(ms))
    assert predictor_fingerprint(shuffled) == predictor_fingerprint(ms)


@given(members(1), st.integers(-20, 20))
def test_fingerprint_ignores_weight_scale(ms: list[Member], exponent: int) -> None:
    scaled = [(d, b, w * 2.0**exponent) for d, b, w in ms]
    assert predictor_fingerprint(scaled) == predictor_fingerprint(ms)


@given(members(), st.data())
def test_ensemble_fingerprint_depends_on_each_beta(ms: list[Member], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(ms) - 1))
    beta = data.draw(betas.filter(lambda b: b != ms[i][1]))
    changed = [(d, beta if j == i else b, w) for j, (d, b, w) in enumerate(ms)]
    assert predictor_fingerprint(changed) != predictor_fingerprint(ms)


@given(members(), st.data())
def test_ensemble_fingerprint_depends_on_each_weight(ms: list[Member], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(ms) - 1))
    changed = [(d, b, w + 1 if j == i else w) for j, (d, b, w) in enumerate(ms)]
    assert predictor_fingerprint(changed) != predictor_fingerprint(ms)


@given(members(), st.data())
def test_fingerprint_depends_on_each_model_file(ms: list[Member], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(ms) - 1))
    other = data.draw(digests.filter(lambda h: all(h != m[0] for m in ms)))
    changed = [(other if j == i else d, b, w) for j, (d, b, w) in enumerate(ms)]
    assert predictor_fingerprint(changed) != predictor_fingerprint(ms)


@given(digests, betas, betas, st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_single_model_fingerprint_ignores_beta_and_weight(
    digest: str, b1: float, b2: float, w1: float, w2: float
) -> None:
    assert predictor_fingerprint([(digest, b1, w1)]) == predictor_fingerprint([(digest, b2, w2)])


def test_fingerprint_depends_on_the_aggregation() -> None:
    ms = [("sha256:a", 0.5, 1.0), ("sha256:b", 0.5, 1.0)]
    assert predictor_fingerprint(ms, "weighted_mean") != predictor_fingerprint(ms, "median")


def test_fingerprint_needs_an_expert() -> None:
    with pytest.raises(ValueError, match="at least one expert"):
        predictor_fingerprint([])


# Weights whose plain float sum depends on order and scale (0.1 + 0.2 + 0.3): the
# fingerprint must still not change, or reordering experts in YAML would reject valid maps.
FLOAT_WEIGHTS = [("sha256:a", 0.5, 0.1), ("sha256:b", 0.5, 0.2), ("sha256:c", 0.5, 0.3)]


@pytest.mark.parametrize(
    "other",
    [
        FLOAT_WEIGHTS[::-1],  # 0.3 + 0.2 + 0.1 != 0.1 + 0.2 + 0.3 in floating point
        [(d, b, w * 10) for d, b, w in FLOAT_WEIGHTS],
    ],
    ids=["order", "scale"],
)
def test_fingerprint_is_exactly_order_and_scale_invariant(other: list[Member]) -> None:
    assert predictor_fingerprint(other) == predictor_fingerprint(FLOAT_WEIGHTS)


# -- found in review: every problem at once, and no traceback on odd YAML ----------------


def test_a_routing_typo_does_not_hide_unknown_predictors(quickstart: Deployment) -> None:
    quickstart.replace('tenants: ["bank1"]', 'tennants: ["bank1"]')
    quickstart.replace('targetPredictorName: "single-v1"', 'targetPredictorName: "ghost"')
    quickstart.replace('targetPredictorNames: ["ensemble-v1"]', 'targetPredictorNames: ["ghost2"]')
    issues = quickstart.issues()
    assert any("tennants" in path for path in issues)
    assert "ghost" in issues["routing.scoringRules[1].targetPredictorName"][0]
    assert "ghost2" in issues["routing.shadowRules[0].targetPredictorNames[0]"][0]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("? [a, b]\n: 1\n", "plain value"),
        ("1: x\n~: y\n", "unknown top-level key"),
    ],
)
def test_odd_yaml_keys_are_config_errors(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "muse.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_an_artifact_whose_map_is_not_an_object_is_a_config_error(quickstart: Deployment) -> None:
    path = quickstart.artifact("single-v1", "bank1")
    doc = quickstart.artifact_doc(path)
    doc["map"] = [1, 2]
    quickstart.write_artifact_doc(path, doc)
    issues = quickstart.issues()
    assert any("JSON object" in m for ms in issues.values() for m in ms)


def test_every_model_that_fails_to_load_is_reported_with_its_path(quickstart: Deployment) -> None:
    from muse.backends import ModelPool
    from muse.service import build_snapshot

    quickstart.replace(
        "m1: {backend: lightgbm, uri: models/m1.txt, undersampling: 0.18}",
        "m1: {backend: lightgbm, uri: models/m1.txt, undersampling: 0.18, features: [x]}",
    )
    quickstart.replace(
        "m3: {backend: onnx, uri: models/m3.onnx, undersampling: 0.02,",
        "m3: {backend: onnx, uri: models/m3.onnx, undersampling: 0.02, features: [y],",
    )
    with pytest.raises(ConfigError) as info:
        build_snapshot(quickstart.load(), ModelPool())
    assert [i.path for i in info.value.issues] == ["models.m1", "models.m3"]
