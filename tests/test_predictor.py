"""The predictor DAG (paper §2.2, Eq. 2): experts → T^C → A → T^Q of the tenant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muse.errors import BackendError, FeatureError
from muse.features import FeatureTable
from muse.predictor import Expert, Predictor, TenantMap
from muse.transforms import QuantileMap, Reference, posterior_correction, weighted_mean
from tests.fakes import FunctionBackend, logistic
from tests.strategies import betas, weights

REF = Reference.beta(0.8, 9.0)
FEATURES = ("a", "b", "c")


def _map(seed: int, version: str) -> TenantMap:
    rng = np.random.default_rng(seed)
    return TenantMap(QuantileMap.fit(rng.beta(1.5, 20 + seed, 5000), REF, n_quantiles=200), version)


def _ensemble(tenant_maps: dict[str, TenantMap] | None = None) -> Predictor:
    return Predictor(
        name="p",
        experts=(
            Expert("m1", logistic("m1", ("a", "b"), 2.0, -3.0), beta=0.18, weight=1.0),
            Expert("m2", logistic("m2", ("b", "c"), 1.0, -2.0), beta=0.02, weight=2.0),
            Expert("m3", logistic("m3", ("a",), 3.0, -4.0), beta=1.0, weight=1.0),
        ),
        default_map=_map(0, "default-v0"),
        tenant_maps=tenant_maps or {},
    )


def _table(n: int, seed: int = 0) -> FeatureTable:
    rng = np.random.default_rng(seed)
    return FeatureTable({f: rng.normal(size=n) for f in FEATURES})


def test_ensemble_score_follows_eq2() -> None:
    p = _ensemble({"bank1": _map(1, "v1")})
    table = _table(500)
    res = p.score(table, "bank1")
    raw = np.column_stack([res.experts[m] for m in ("m1", "m2", "m3")])
    corrected = np.column_stack(
        [posterior_correction(raw[:, k], b) for k, b in enumerate((0.18, 0.02, 1.0))]
    )
    expected_raw = weighted_mean(corrected, [1.0, 2.0, 1.0])
    assert np.allclose(res.raw, expected_raw, rtol=0, atol=1e-15)
    assert np.array_equal(res.score, p.tenant_maps["bank1"].quantile_map(res.raw))
    assert res.tq_version == "v1"
    assert res.tenant == "bank1"
    assert res.fingerprint == p.fingerprint
    assert len(res) == 500


def test_single_model_skips_correction_and_aggregation() -> None:
    backend = logistic("m1", ("a", "b"), 2.0, -3.0)
    p = Predictor("single", (Expert("m1", backend, beta=0.02),), _map(0, "default-v0"))
    res = p.score(_table(100), "anyone")
    assert np.array_equal(res.raw, res.experts["m1"])  # no T^C although β = 0.02
    assert np.array_equal(res.score, p.default_map.quantile_map(res.raw))


def test_tenant_without_own_map_gets_the_cold_start_default() -> None:
    p = _ensemble({"bank1": _map(1, "v1")})
    table = _table(50)
    own, cold = p.score(table, "bank1"), p.score(table, "newcomer")
    assert cold.tq_version == "default-v0"
    assert np.array_equal(own.raw, cold.raw)
    assert not np.array_equal(own.score, cold.score)


def test_each_expert_receives_exactly_its_own_features() -> None:
    seen: dict[str, tuple[int, ...]] = {}

    def spy(name: str, features: tuple[str, ...]) -> FunctionBackend:
        def fn(X: np.ndarray) -> np.ndarray:
            seen[name] = X.shape
            return np.full(X.shape[0], 0.5)

        return FunctionBackend(name, features, fn)

    p = Predictor(
        "p",
        (Expert("m1", spy("m1", ("c", "a")), 0.5), Expert("m2", spy("m2", ("b",)), 0.5)),
        _map(0, "d"),
    )
    table = FeatureTable({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]})
    p.score(table, "t")
    assert seen == {"m1": (2, 2), "m2": (2, 1)}
    assert table.matrix(("c", "a")).tolist() == [[5.0, 1.0], [6.0, 2.0]]


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_single_event_path_equals_batch_path(seed: int) -> None:
    p = _ensemble({"bank1": _map(1, "v1")})
    table = _table(20, seed)
    batch = p.score(table, "bank1")
    for i in range(20):
        one = p.score(table.take(np.array([i])), "bank1")
        assert one.raw[0] == batch.raw[i]
        assert one.score[0] == batch.score[i]


@given(st.integers(min_value=0, max_value=2**31 - 1), st.integers(2, 12))
def test_small_batches_scored_event_by_event_equal_the_array_path(seed: int, n: int) -> None:
    # Up to _SCALAR_EVENTS events take the plain-float path; 20 events take arrays.
    p = _ensemble({"bank1": _map(1, "v1")})
    table = _table(20, seed)
    whole = p.score(table, "bank1")
    head = p.score(table.take(np.arange(n)), "bank1")
    assert head.raw.tolist() == whole.raw[:n].tolist()
    assert head.score.tolist() == whole.score[:n].tolist()
    assert head.score.dtype == head.raw.dtype == np.float64
    assert all(head.experts[m].tolist() == whole.experts[m][:n].tolist() for m in p.models)


@given(
    st.lists(st.tuples(betas, weights), min_size=2, max_size=4),
    st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_aggregate_lies_within_corrected_expert_range(
    members: list[tuple[float, float]], raw: list[float]
) -> None:
    experts = tuple(
        Expert(f"m{k}", logistic(f"m{k}", ("a",)), beta=b, weight=w)
        for k, (b, w) in enumerate(members)
    )
    p = Predictor("p", experts, _map(0, "d"))
    row = np.array([raw[: len(members)]])
    corrected = [posterior_correction([v], b)[0] for v, (b, _) in zip(row[0], members, strict=True)]
    agg = p.aggregate(row)[0]
    assert min(corrected) <= agg <= max(corrected)


def test_fingerprint_ignores_names_order_and_weight_scale_but_not_betas() -> None:
    b1, b2 = logistic("x", ("a",)), logistic("y", ("a",))
    base = Predictor("p", (Expert("m1", b1, 0.1, 1.0), Expert("m2", b2, 0.2, 3.0)), _map(0, "d"))
    same = Predictor("q", (Expert("k2", b2, 0.2, 6.0), Expert("k1", b1, 0.1, 2.0)), _map(1, "d"))
    other_beta = Predictor(
        "p", (Expert("m1", b1, 0.1, 1.0), Expert("m2", b2, 0.3, 3.0)), _map(0, "d")
    )
    other_weight = Predictor(
        "p", (Expert("m1", b1, 0.1, 1.0), Expert("m2", b2, 0.2, 2.0)), _map(0, "d")
    )
    assert base.fingerprint == same.fingerprint
    assert base.fingerprint != other_beta.fingerprint
    assert base.fingerprint != other_weight.fingerprint


def test_invalid_predictors_are_rejected() -> None:
    b = logistic("x", ("a",))
    with pytest.raises(ValueError, match="at least one expert"):
        Predictor("p", (), _map(0, "d"))
    with pytest.raises(ValueError, match="twice"):
        Predictor("p", (Expert("m", b), Expert("m", b)), _map(0, "d"))
    with pytest.raises(ValueError, match="beta"):
        Expert("m", b, beta=0.0)
    with pytest.raises(ValueError, match="> 0"):
        Expert("m", b, weight=-1.0)
    with pytest.raises(ValueError, match="aggregation"):
        Predictor("p", (Expert("m", b),), _map(0, "d"), aggregation="median")


def test_missing_feature_names_it() -> None:
    p = _ensemble()
    with pytest.raises(FeatureError, match="'c'") as info:
        p.score(FeatureTable({"a": [0.1], "b": [0.2]}), "t")
    assert info.value.feature == "c"


def test_model_emitting_garbage_is_a_backend_error_not_a_score() -> None:
    bad = FunctionBackend("bad", ("a",), lambda X: np.full(X.shape[0], np.nan))
    p = Predictor("p", (Expert("bad", bad),), _map(0, "d"))
    with pytest.raises(BackendError, match="bad"):
        p.score(_table(3), "t")


@pytest.mark.parametrize(
    ("columns", "message", "feature", "index"),
    [
        ({"a": [0.1, float("nan")]}, "finite", "a", 1),
        ({"a": [0.1, "x"]}, "numeric", "a", 1),
        ({"a": [True]}, "numeric", "a", 0),
        ({"a": [0.5, 10**400]}, "out of range", "a", 1),
        ({"a": [0.1, 0.2], "b": [0.3]}, "values", "b", None),
    ],
)
def test_feature_table_rejects_bad_values(
    columns: dict[str, list[object]], message: str, feature: str, index: int | None
) -> None:
    with pytest.raises(FeatureError, match=message) as info:
        FeatureTable(columns)
    assert info.value.feature == feature
    assert info.value.index == index


def test_feature_table_from_rows_requires_the_same_features_per_event() -> None:
    with pytest.raises(FeatureError, match="event 1") as info:
        FeatureTable.from_rows([{"a": 1.0, "b": 2.0}, {"a": 1.0}])
    assert info.value.index == 1
    t = FeatureTable.from_rows([{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}])
    assert t.n_events == 2
    assert t.matrix(("b", "a")).tolist() == [[2.5, 1.0], [4.5, 3.0]]


def test_from_rows_leaves_gaps_only_where_the_store_may_fill_them() -> None:
    rows: list[dict[str, float]] = [{"a": 1.0, "s": 5.0}, {"a": 2.0}, {"a": 3, "s": 7}]
    t = FeatureTable.from_rows(rows, optional={"s"})
    assert t["a"].tolist() == [1.0, 2.0, 3.0]
    assert t["s"][[0, 2]].tolist() == [5.0, 7.0]
    assert np.isnan(t["s"][1])  # a gap for the feature store, never a value
    with pytest.raises(FeatureError, match="event 1") as info:
        FeatureTable.from_rows([{"a": 1.0}, {"s": 2.0}], optional={"s"})
    assert (info.value.feature, info.value.index) == ("a", 1)
    # A bad value in a column with gaps is named by its own event, not its position.
    with pytest.raises(FeatureError, match="must be finite, got inf at event 2") as info:
        FeatureTable.from_rows([{"a": 1.0}, {"a": 1.0}, {"a": 1.0, "s": math.inf}], optional={"s"})
    assert (info.value.feature, info.value.index) == ("s", 2)


finite_or_int = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70)
)


@settings(max_examples=80)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.lists(
            st.fixed_dictionaries({f"f{j}": finite_or_int for j in range(k)}),
            min_size=1,
            max_size=20,
        )
    )
)
def test_from_rows_fast_path_equals_the_column_checks(rows: list[dict[str, float]]) -> None:
    names = list(rows[0])
    fast = FeatureTable.from_rows(rows)
    slow = FeatureTable({n: [r[n] for r in rows] for n in names})
    assert fast.n_events == slow.n_events == len(rows)
    assert list(fast) == names
    for n in names:
        assert fast[n].dtype == np.float64
        assert fast[n].tolist() == slow[n].tolist()
    assert fast.matrix(names[::-1]).tolist() == slow.matrix(names[::-1]).tolist()
    floats = [{k: float(v) for k, v in r.items()} for r in rows]
    checked = FeatureTable.from_rows(floats, checked=True)
    assert checked.matrix(names).tolist() == slow.matrix(names).tolist()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 10**400, True, "1.5", None, [1.0]])
@pytest.mark.parametrize("where", [0, 2])
def test_from_rows_names_the_bad_value_whichever_event_holds_it(bad: object, where: int) -> None:
    rows: list[dict[str, object]] = [{"a": 1.0, "b": 2} for _ in range(3)]
    rows[where]["b"] = bad
    with pytest.raises(FeatureError) as info:
        FeatureTable.from_rows(rows)
    assert (info.value.feature, info.value.index) == ("b", where)


def test_from_rows_names_a_missing_or_extra_feature() -> None:
    with pytest.raises(FeatureError, match="missing \\['b'\\], extra \\['c'\\]") as info:
        FeatureTable.from_rows([{"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}], checked=True)
    assert (info.value.feature, info.value.index) == ("b", 1)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"a": float("nan")}, "finite, got nan"),
        ({"a": float("-inf")}, "finite, got -inf"),
        ({"a": 10**400}, "out of range"),
        ({"a": True}, "numeric"),
        ({"a": "1.5"}, "numeric"),
        ({"a": None}, "numeric"),
    ],
)
def test_single_row_path_rejects_what_the_batch_path_rejects(
    row: dict[str, object], message: str
) -> None:
    with pytest.raises(FeatureError, match=message) as one:
        FeatureTable.from_row(row)
    with pytest.raises(FeatureError, match=message.split(",")[0]) as many:
        FeatureTable({k: [v] for k, v in row.items()})
    assert one.value.feature == many.value.feature == "a"
    assert one.value.index == many.value.index == 0


@given(
    st.dictionaries(
        st.sampled_from("abcdef"), st.floats(-1e6, 1e6) | st.integers(-(10**6), 10**6), min_size=1
    )
)
def test_single_row_table_equals_the_columnar_table(row: dict[str, float]) -> None:
    names = tuple(row)
    one = FeatureTable.from_row(row)
    many = FeatureTable({k: [v] for k, v in row.items()})
    assert one.n_events == many.n_events == 1
    assert np.array_equal(one.matrix(names), many.matrix(names))


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"m1": [float("nan"), 0.5], "m2": [0.1, 0.2], "m3": [0.1, 0.2]}, "finite"),
        ({"m1": [1.5, 0.5], "m2": [0.1, 0.2], "m3": [0.1, 0.2]}, r"\[0, 1\]"),
        ({"m1": [0.5, 0.5], "m2": [0.1, 0.2]}, "missing"),
        ({"m1": [0.5], "m2": [0.1, 0.2], "m3": [0.1, 0.2]}, "same events"),
    ],
)
def test_score_outputs_checks_outputs_computed_elsewhere(
    outputs: dict[str, list[float]], message: str
) -> None:
    p = _ensemble()
    with pytest.raises(ValueError, match=message):
        p.score_outputs({m: np.array(v) for m, v in outputs.items()}, "t")


def test_concat_stacks_validated_tables_and_refuses_different_features() -> None:
    a = FeatureTable.from_row({"x": 1.0, "y": 2.0})
    b = FeatureTable.from_row({"y": 4.0, "x": 3.0})
    both = FeatureTable.concat([a, b])
    assert both.n_events == 2
    assert both.matrix(("x", "y")).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(FeatureError, match="different features"):
        FeatureTable.concat([a, FeatureTable.from_row({"x": 1.0})])


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.lists(st.floats(-1e9, 1e9), min_size=3, max_size=3),
            st.permutations(["a", "b", "c"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_concat_of_single_events_equals_the_columns_whatever_their_order(
    events: list[tuple[list[float], list[str], bool]],
) -> None:
    tables = []
    for values, order, as_batch in events:
        row = {name: values["abc".index(name)] for name in order}
        tables.append(FeatureTable.from_rows([row]) if as_batch else FeatureTable.from_row(row))

    out = FeatureTable.concat(tables)

    assert out.n_events == len(events)
    for j, name in enumerate("abc"):
        assert out[name].tolist() == [values[j] for values, _, _ in events]
    assert out.matrix(("c", "a")).tolist() == [[v[2], v[0]] for v, _, _ in events]


def test_concat_refuses_tables_with_different_features() -> None:
    with pytest.raises(FeatureError, match="different features"):
        FeatureTable.concat([FeatureTable.from_row({"a": 1.0}), FeatureTable.from_row({"b": 1.0})])


def test_rows_that_answer_a_default_for_a_missing_feature_still_fail_by_name() -> None:
    from collections import Counter, defaultdict

    counter = Counter({"a": 1.0, "c": 2.0})
    with pytest.raises(FeatureError, match="missing \\['b'\\]"):
        FeatureTable.from_rows([{"a": 1.0, "b": 2.0}, counter])
    default: defaultdict[str, float] = defaultdict(float, {"a": 1.0, "c": 2.0})
    with pytest.raises(FeatureError, match="missing \\['b'\\]"):
        FeatureTable.from_rows([{"a": 1.0, "b": 2.0}, default], checked=True)
    assert "b" not in default  # and the check did not insert it


def test_concat_of_featureless_events_has_no_events() -> None:
    empty = FeatureTable.from_row({})
    assert empty.n_events == FeatureTable.concat([empty, empty]).n_events == 0
