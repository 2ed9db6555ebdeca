"""The wire format of POST /v1/score: what is accepted, and the errors for what is not."""

from __future__ import annotations

import pytest

from muse.errors import BackendError, FeatureError, IntentError, NoRouteError
from muse.features import FeatureTable
from muse.serving.errors import HTTPError, error_body, from_exception
from muse.serving.wire import decode_score_request, encode_scores

ONE = b'{"event_id": "e1", "intent": {"tenant": "bank1"}, "features": {"a": 1.5, "b": 2}}'


def test_single_event_and_batch_decode() -> None:
    one = decode_score_request(ONE, 10)
    assert not one.batch
    assert one.events[0].event_id == "e1"
    assert one.events[0].features == {"a": 1.5, "b": 2}
    batch = decode_score_request(b'{"events": [' + ONE + b", " + ONE + b"]}", 10)
    assert batch.batch
    assert len(batch.events) == 2


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "index"),
    [
        (b"{not json", 400, "malformed_json", None, None),
        (b"[1,", 400, "malformed_json", None, None),
        (b'{"event_id": "e1", "intent": {}}', 422, "invalid_request", "features", None),
        (
            b'{"event_id": 3, "intent": {}, "features": {}}',
            422,
            "invalid_request",
            "event_id",
            None,
        ),
        (ONE[:-1] + b', "extra": 1}', 422, "invalid_request", "extra", None),
        (b'{"events": []}', 422, "invalid_request", "events", None),
        (
            b'{"events": [' + ONE + b', {"event_id": "x", "intent": {}, "features": []}]}',
            422,
            "invalid_request",
            "features",
            1,
        ),
        (b'{"events": [' + b", ".join([ONE] * 3) + b"]}", 413, "batch_too_large", "events", None),
        (b'{"events": [' + ONE + b'], "event_id": "e"}', 422, "invalid_request", None, None),
    ],
)
def test_bad_bodies_name_the_problem(
    body: bytes, status: int, code: str, field: str | None, index: int | None
) -> None:
    with pytest.raises(HTTPError) as info:
        decode_score_request(body, 2)
    err = info.value
    assert (err.status, err.code, err.field, err.index) == (status, code, field, index)


def test_plain_numbers_are_checked_while_parsing_and_anything_else_left_to_the_core() -> None:
    one = decode_score_request(ONE, 10)
    assert one.checked
    assert one.events[0].features == {"a": 1.5, "b": 2.0}
    assert all(type(v) is float for v in one.events[0].features.values())
    # Values msgspec refuses as floats reach the scoring core as sent, for it to name them.
    for value in (b"true", b'"1.5"', b"null", b"1" + b"0" * 400, b"[1]"):
        body = ONE.replace(b'"b": 2', b'"b": ' + value)
        parsed = decode_score_request(body, 10)
        assert not parsed.checked, value
        assert parsed.events[0].features["a"] == 1.5
        with pytest.raises(FeatureError, match="'b'"):
            FeatureTable.from_row(parsed.events[0].features, checked=parsed.checked)
    batch = decode_score_request(b'{"events": [' + ONE + b", " + ONE + b"]}", 10)
    assert batch.checked


def test_nan_and_infinity_reach_the_feature_checks() -> None:
    # Python's json.dumps writes NaN: accepted by the parser so the core names the feature.
    parsed = decode_score_request(
        b'{"event_id": "e", "intent": {"tenant": "t"}, "features": {"a": NaN, "b": Infinity}}', 1
    )
    assert parsed.events[0].features["a"] != parsed.events[0].features["a"]


def test_scores_encode_as_object_or_list() -> None:
    assert encode_scores(["e1"], [0.25], batch=False) == b'{"event_id":"e1","score":0.25}'
    assert encode_scores(["a", "b"], [0.1, 0.2], batch=True) == (
        b'[{"event_id":"a","score":0.1},{"event_id":"b","score":0.2}]'
    )


@pytest.mark.parametrize(
    ("exc", "batch", "status", "code", "field", "index"),
    [
        (
            FeatureError("bad", feature="amount", index=3),
            True,
            422,
            "invalid_features",
            "features.amount",
            3,
        ),
        (
            FeatureError("bad", feature="amount", index=0),
            False,
            422,
            "invalid_features",
            "features.amount",
            None,
        ),
        (
            IntentError("event 2: bad", attribute="channel", index=2),
            True,
            422,
            "invalid_intent",
            "intent.channel",
            2,
        ),
        (NoRouteError({"tenant": "x"}), False, 404, "no_route", "intent", None),
        (BackendError("down", model="m1"), False, 503, "model_unavailable", None, None),
        (RuntimeError("boom"), False, 500, "internal", None, None),
    ],
)
def test_exceptions_map_to_http_answers(
    exc: Exception, batch: bool, status: int, code: str, field: str | None, index: int | None
) -> None:
    err = from_exception(exc, batch=batch)
    assert (err.status, err.code, err.field, err.index) == (status, code, field, index)
    assert b'"code":"' + code.encode() + b'"' in error_body(err)
    if code == "internal":
        assert b"boom" not in error_body(err)  # no internals leak to clients
