"""The HTTP API over real HTTP against ``muse serve``: scoring, every error class, the docs.

The shared open server (see ``open_server`` in conftest: the quickstart with
``server: {max_body_bytes: 4096, max_batch_events: 50}`` and its catch-all rule narrowed so
that an unknown tenant has no route) serves the module. Expected scores come from the
scoring core in this process (:meth:`ScoringService.score_batch` on the same config), so
HTTP must add nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from muse.service import ScoringService
from tests.e2e.conftest import Running
from tests.e2e.support import (
    ALL_PREDICTORS,
    MAX_BODY,
    MAX_EVENTS,
    MODEL_NAMES,
    SAMPLE,
    TENANTS,
    UNROUTED_TENANT,
    Deployment,
    MuseProcess,
    event,
    features,
    metric_value,
)

VERSION = "quickstart-1"


@dataclass(frozen=True)
class Api:
    deployment: Deployment
    server: MuseProcess
    client: httpx.Client
    service: ScoringService


@pytest.fixture(scope="module")
def api(open_server: Running) -> Iterator[Api]:
    d, server = open_server.deployment, open_server.server
    with server.client() as client:
        yield Api(d, server, client, d.service())


def post(client: httpx.Client, body: Any) -> httpx.Response:
    """POST /v1/score; ``body`` as raw bytes/str, or a document Python's json encodes
    (which writes NaN and Infinity as the bare words strict JSON lacks)."""
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/v1/score", content=content, headers={"content-type": "application/json"})


def error_of(r: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error answer, after checking the envelope's shape."""
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert set(doc) == {"error"}, doc
    err: dict[str, Any] = doc["error"]
    assert set(err) <= {"code", "message", "field", "index"}, err
    assert isinstance(err["code"], str)
    assert isinstance(err["message"], str)
    assert err["message"]
    return err


def expected_scores(service: ScoringService, events: list[dict[str, Any]]) -> list[float]:
    results = service.score_batch(
        [e["intent"] for e in events],
        [e["features"] for e in events],
        event_ids=[e["event_id"] for e in events],
    )
    return [r.score for r in results]


def without(name: str) -> dict[str, float]:
    return {k: v for k, v in SAMPLE.items() if k != name}


# -- scoring ---------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", TENANTS)
def test_single_event_is_scored_like_the_core(api: Api, tenant: str) -> None:
    ev = event(f"single-{tenant}", tenant, features(3))
    r = post(api.client, ev)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-muse-config-version"] == VERSION
    body = r.json()
    assert set(body) == {"event_id", "score"}
    assert body["event_id"] == ev["event_id"]
    assert 0.0 <= body["score"] <= 1.0
    assert body["score"] == expected_scores(api.service, [ev])[0]


def test_batch_keeps_order_and_matches_the_core(api: Api) -> None:
    # Tenants interleaved and ids in no sorted order: the answer must follow the request.
    events = [
        event(f"b-{(i * 5) % 8}", TENANTS[(i * 2) % 3], features(10 + i), channel="web")
        for i in range(8)
    ]
    assert len(json.dumps({"events": events})) < MAX_BODY
    r = post(api.client, {"events": events})
    assert r.status_code == 200, r.text
    assert r.headers["x-muse-config-version"] == VERSION
    body = r.json()
    assert isinstance(body, list)
    assert [set(x) for x in body] == [{"event_id", "score"}] * len(events)
    assert [x["event_id"] for x in body] == [e["event_id"] for e in events]
    assert all(0.0 <= x["score"] <= 1.0 for x in body)
    assert [x["score"] for x in body] == expected_scores(api.service, events)


def test_a_batch_of_one_is_still_a_list(api: Api) -> None:
    r = post(api.client, {"events": [event("one", "bank2")]})
    assert r.status_code == 200, r.text
    assert [x["event_id"] for x in r.json()] == ["one"]


def _names_models(text: str) -> list[str]:
    lowered = text.lower()
    words = [*MODEL_NAMES, *ALL_PREDICTORS, "fp-", "predictor", "model", "fingerprint"]
    return [w for w in words if w in lowered]


def test_responses_never_name_models(api: Api) -> None:
    """Clients send an intent, never a model: nothing in an answer reveals which one ran."""
    responses = [post(api.client, event(f"n-{t}", t)) for t in TENANTS]
    responses.append(post(api.client, {"events": [event(f"nb-{t}", t) for t in TENANTS]}))
    for r in responses:
        assert r.status_code == 200, r.text
        assert not _names_models(r.text), r.text
        for name, value in r.headers.items():
            assert not _names_models(f"{name}: {value}".replace("x-muse-config-version", ""))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(event("e", "bank1", without("amount")), id="missing-live-feature"),
        pytest.param(
            {
                "events": [
                    event("a", "bank2", without("n_items")),
                    event("b", "bank1", without("n_items")),
                ]
            },
            id="missing-feature-of-one-event",
        ),
    ],
)
def test_error_answers_never_name_models(api: Api, body: dict[str, Any]) -> None:
    """Not even to say which model needs a missing feature: the feature is the client's fix."""
    r = post(api.client, body)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] in ("features.amount", "features.n_items")
    assert not _names_models(r.text), r.text


# -- every error class -----------------------------------------------------------------

_VALID = json.dumps(event("e", "bank1"))
_MINIMAL = {"event_id": "x", "intent": {"tenant": "bank1"}, "features": {}}


def _single(**features_override: Any) -> dict[str, Any]:
    return event("e", "bank1", {**SAMPLE, **features_override})


def _with(ev: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**ev, **changes}


SINGLE_ERRORS = [
    # (body, status, code, field)
    pytest.param(b"{bad", 400, "malformed_json", None, id="malformed-json"),
    pytest.param(_VALID[:60], 400, "malformed_json", None, id="truncated-json"),
    pytest.param(b"", 400, "malformed_json", None, id="empty-body"),
    pytest.param(_VALID + "}", 400, "malformed_json", None, id="trailing-characters"),
    pytest.param(
        _VALID.replace('"e"', '"' + "x" * MAX_BODY + '"'),
        413,
        "body_too_large",
        None,
        id="body-over-limit",
    ),
    pytest.param(
        {"events": [_MINIMAL] * (MAX_EVENTS + 1)}, 413, "batch_too_large", "events", id="batch-over-limit"
    ),
    pytest.param(event("e", "bank1", without("amount")), 422, "invalid_features", "features.amount", id="missing-feature"),
    pytest.param(_single(shoe_size=42.0), 422, "invalid_features", "features.shoe_size", id="extra-feature"),
    pytest.param(_single(amount="12.5"), 422, "invalid_features", "features.amount", id="string-feature"),
    pytest.param(_single(amount=True), 422, "invalid_features", "features.amount", id="bool-feature"),
    pytest.param(_single(amount=None), 422, "invalid_features", "features.amount", id="null-feature"),
    pytest.param(_single(amount=[1.0]), 422, "invalid_features", "features.amount", id="list-feature"),
    pytest.param(_single(amount=math.nan), 422, "invalid_features", "features.amount", id="nan-feature"),
    pytest.param(_single(amount=math.inf), 422, "invalid_features", "features.amount", id="inf-feature"),
    pytest.param(_single(amount=-math.inf), 422, "invalid_features", "features.amount", id="minus-inf-feature"),
    pytest.param(_VALID.replace('"amount": 30.98', '"amount": 1e400'), 422, "invalid_features", "features.amount", id="overflowing-float"),
    pytest.param(_VALID.replace('"amount": 30.98', '"amount": 1' + "0" * 400), 422, "invalid_features", "features.amount", id="overflowing-int"),
    pytest.param(event("e", "bank1", tennant="bank1"), 422, "invalid_intent", "intent.tennant", id="unknown-intent-attribute"),
    pytest.param(_with(event("e", "bank1"), intent={"tenant": "bank1", "channel": 5}), 422, "invalid_intent", "intent.channel", id="non-string-intent-value"),
    pytest.param(_with(event("e", "bank1"), intent={"channel": "web"}), 422, "invalid_intent", "intent.tenant", id="intent-without-tenant"),
    pytest.param(_with(event("e", "bank1"), intent={"tenant": ""}), 422, "invalid_intent", "intent.tenant", id="empty-tenant"),
    pytest.param({"event_id": "e", "intent": {"tenant": "bank1"}}, 422, "invalid_request", "features", id="no-features-field"),
    pytest.param({"event_id": "e", "features": SAMPLE}, 422, "invalid_request", "intent", id="no-intent-field"),
    pytest.param(_with(event("e", "bank1"), colour="red"), 422, "invalid_request", "colour", id="unknown-top-level-field"),
    pytest.param(_with(event("e", "bank1"), event_id=7), 422, "invalid_request", "event_id", id="non-string-event-id"),
    pytest.param(_with(event("e", "bank1"), features=[1.0, 2.0]), 422, "invalid_request", "features", id="features-not-an-object"),
    pytest.param([], 422, "invalid_request", None, id="body-is-an-array"),
    pytest.param({"events": []}, 422, "invalid_request", "events", id="empty-batch"),
    pytest.param({**event("e", "bank1"), "events": [event("f", "bank1")]}, 422, "invalid_request", None, id="single-and-batch"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "code", "field"), SINGLE_ERRORS)
def test_single_request_errors(
    api: Api, body: Any, status: int, code: str, field: str | None
) -> None:
    r = post(api.client, body)
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["code"] == code, err
    assert err.get("field") == field, err
    assert err.get("index") is None, err


def _batch(
    bad: dict[str, Any], tenants: tuple[str, ...] = ("bank1", "bank2", "bank1", "fintech3")
) -> dict[str, Any]:
    """Four valid events with ``bad`` at index 2."""
    events = [event(f"ok-{i}", t, features(i)) for i, t in enumerate(tenants)]
    events[2] = bad
    return {"events": events}


BATCH_ERRORS = [
    # (body, status, code, field): the bad event is always at index 2
    pytest.param(_batch(event("bad", "bank1", without("amount"))), 422, "invalid_features", "features.amount", id="missing-feature"),
    pytest.param(_batch(_single(shoe_size=1.0)), 422, "invalid_features", "features.shoe_size", id="extra-feature"),
    pytest.param(_batch(_single(amount="x")), 422, "invalid_features", "features.amount", id="string-feature"),
    pytest.param(_batch(_single(amount=math.nan)), 422, "invalid_features", "features.amount", id="nan-feature"),
    pytest.param(_batch(_single(amount=math.inf)), 422, "invalid_features", "features.amount", id="inf-feature"),
    pytest.param(
        # Every event lacks a feature, but only event 2 (bank1 → ensemble) needs it live.
        {"events": [event(f"e{i}", t, without("email_age_days")) for i, t in enumerate(("bank2", "fintech3", "bank1", "bank2"))]},
        422, "invalid_features", "features.email_age_days", id="feature-only-its-route-needs",
    ),
    pytest.param(_batch(event("bad", "bank1", tennant="x")), 422, "invalid_intent", "intent.tennant", id="unknown-intent-attribute"),
    pytest.param(_batch(event("bad", "bank1", channel=5)), 422, "invalid_intent", "intent.channel", id="non-string-intent-value"),
    pytest.param(_batch(_with(event("bad", "bank1"), intent={"channel": "web"})), 422, "invalid_intent", "intent.tenant", id="intent-without-tenant"),
    pytest.param(_batch(_with(event("bad", "bank1"), intent={"tenant": 5})), 422, "invalid_intent", "intent.tenant", id="non-string-tenant"),
    pytest.param(_batch(_with(event("bad", "bank1"), event_id=5)), 422, "invalid_request", "event_id", id="non-string-event-id"),
    pytest.param(_batch(_with(event("bad", "bank1"), colour="red")), 422, "invalid_request", "colour", id="unknown-event-field"),
    pytest.param(_batch({"event_id": "bad", "intent": {"tenant": "bank1"}}), 422, "invalid_request", "features", id="no-features-field"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "code", "field"), BATCH_ERRORS)
def test_a_batch_with_one_bad_event_is_rejected_whole_naming_its_index(
    api: Api, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    assert len(json.dumps(body)) < MAX_BODY
    r = post(api.client, body)
    assert r.status_code == status, r.text
    err = error_of(r)
    assert (err["code"], err.get("field"), err.get("index")) == (code, field, 2), err


def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    """No Content-Length to trust: the limit holds while the body streams in."""

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * 1024

    r = api.client.post("/v1/score", content=chunks())
    assert r.status_code == 413, r.text
    assert error_of(r)["code"] == "body_too_large"


_DEEP = 1500  # nesting levels; the body stays well under MAX_BODY

HOSTILE_BODIES = [
    pytest.param(_VALID.replace("30.98", "[" * _DEEP + "]" * _DEEP), id="deeply-nested-feature"),
    pytest.param(_VALID.replace('"bank1"', "[" * _DEEP + "]" * _DEEP), id="deeply-nested-intent"),
    pytest.param("[" * _DEEP + "]" * _DEEP, id="deeply-nested-body"),
    pytest.param(
        '{"event_id": "e", "intent": {"tenant": "bank1"}, "features": {"amount": NaN, "x": '
        + "[" * _DEEP
        + "]" * _DEEP
        + "}}",
        id="nan-and-deeply-nested",
    ),
    pytest.param(_VALID.replace('"e"', '"\xff"').encode("latin-1"), id="invalid-utf8-in-string"),
    pytest.param(
        _VALID.replace('"amount"', '"\xc3\x28"').encode("latin-1"), id="invalid-utf8-in-key"
    ),
    pytest.param(b'{"event_id": "\xff", "features": {"amount": NaN}}', id="invalid-utf8-and-nan"),
    pytest.param(_VALID.replace('"e"', '"\\ud800"'), id="lone-surrogate"),
    pytest.param(b"\xef\xbb\xbf" + _VALID.encode(), id="utf8-bom"),
    pytest.param(_VALID.encode("utf-16"), id="utf16"),
    pytest.param({"events": [1, 2]}, id="events-not-objects"),
    pytest.param({"events": {}}, id="events-not-a-list"),
    pytest.param({"event_id": "e", "intent": ["bank1"], "features": SAMPLE}, id="intent-a-list"),
    pytest.param(_with(event("e", "bank1"), intent={"tenant": ["bank1"]}), id="tenant-a-list"),
    pytest.param(_single(amount={"a": {"b": 1}}), id="feature-an-object"),
    pytest.param(_single(**{"": 1.0}), id="empty-feature-name"),
    pytest.param(_single(amount=1e308), id="huge-finite-feature"),
    pytest.param(
        {"event_id": None, "intent": None, "features": None, "events": None}, id="all-null"
    ),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_nothing_a_client_sends_causes_a_500(api: Api, body: Any) -> None:
    r = post(api.client, body)
    assert r.status_code < 500, f"{r.status_code} {r.text}"
    if r.status_code != 200:
        assert error_of(r)["code"] != "internal"


def test_no_route_for_the_intent_is_404(api: Api) -> None:
    r = post(api.client, event("lost", UNROUTED_TENANT))
    assert r.status_code == 404, r.text
    err = error_of(r)
    assert (err["code"], err.get("field"), err.get("index")) == ("no_route", "intent", None)


def test_a_batch_with_one_unroutable_event_is_404_naming_its_index(api: Api) -> None:
    r = post(api.client, _batch(event("lost", UNROUTED_TENANT)))
    assert r.status_code == 404, r.text
    err = error_of(r)
    assert (err["code"], err.get("field"), err.get("index")) == ("no_route", "intent", 2), err


# -- routes, docs, health, metrics -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/score", "POST"),
        ("POST", "/health/live", "GET"),
        ("DELETE", "/admin/reload", "POST"),
    ],
)
def test_a_known_path_with_another_method_is_405_with_allow(
    api: Api, method: str, path: str, allowed: str
) -> None:
    r = api.client.request(method, path)
    assert r.status_code == 405, r.text
    assert error_of(r)["code"] == "method_not_allowed"
    # RFC 9110 §15.5.6: a 405 response MUST carry an Allow header.
    assert allowed in r.headers.get("allow", ""), dict(r.headers)


@pytest.mark.parametrize("path", ["/", "/v1/score/", "/v2/score", "/admin", "/health"])
def test_an_unknown_path_is_404(api: Api, path: str) -> None:
    r = api.client.get(path)
    assert r.status_code == 404, r.text
    assert error_of(r)["code"] == "not_found"


def test_openapi_lists_the_score_endpoint(api: Api) -> None:
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert str(doc["openapi"]).startswith("3.")
    assert "post" in doc["paths"]["/v1/score"]
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert path in doc["paths"]


def test_health_endpoints(api: Api) -> None:
    live = api.client.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    ready = api.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "config_version": VERSION}


def test_metrics_count_latency_and_scores_per_tenant(api: Api) -> None:
    for tenant in TENANTS:
        assert post(api.client, event(f"m-{tenant}", tenant)).status_code == 200
    assert post(api.client, b"{bad").status_code == 400
    r = api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for tenant in TENANTS:
        for name in ("muse_request_duration_seconds_count", "muse_score_count"):
            assert metric_value(text, name, tenant=tenant, role="live") >= 1, (name, tenant)
        assert metric_value(text, "muse_score_bucket", tenant=tenant, role="live", le="+Inf") >= 1
    assert metric_value(text, "muse_ready") == 1
    assert metric_value(text, "muse_responses_total", path="/v1/score", status="400") >= 1
    assert metric_value(text, "muse_responses_total", path="/v1/score", status="200") >= 3


# -- found or pinned down by fuzzing (tests/e2e/test_fuzz.py) --------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_declared_as_not_json_is_415(api: Api, content_type: str) -> None:
    r = api.client.post(
        "/v1/score",
        content=json.dumps(event("ct", "bank1")),
        headers={"content-type": content_type},
    )
    assert r.status_code == 415
    error = error_of(r)
    assert (error["code"], error["field"]) == ("unsupported_media_type", "content-type")
    assert content_type in error["message"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.muse+json"],
)
def test_json_and_no_content_type_are_accepted(api: Api, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    r = api.client.post("/v1/score", content=json.dumps(event("ok", "bank1")), headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (lambda e: e.update(event_id=""), "event_id", "invalid_request"),
        (lambda e: e.update(event_id="x" * 257), "event_id", "invalid_request"),
        (lambda e: e["intent"].update(channel="c" * 257), "intent.channel", "invalid_intent"),
    ],
)
def test_ids_are_bounded_so_a_client_cannot_make_lake_rows_of_any_size(
    api: Api, mutate: Any, field: str, code: str
) -> None:
    e = event("id", "bank1")
    mutate(e)
    r = post(api.client, e)
    assert r.status_code == 422
    error = error_of(r)
    assert (error["code"], error["field"]) == (code, field)
    batch = post(api.client, {"events": [event("ok", "bank1"), e]})
    assert batch.status_code == 422
    assert error_of(batch)["index"] == 1
    assert post(api.client, event("x" * 256, "bank1")).status_code == 200


def test_openapi_describes_the_served_deployment(api: Api) -> None:
    """The schema names the declared intent attributes and the models' features, says which
    features the feature store may fill (only for an event naming its card), and lists a
    body for every status."""
    doc = api.client.get("/openapi.json").json()
    event_schema = doc["components"]["schemas"]["EventIn"]
    intent = event_schema["properties"]["intent"]
    assert set(intent["properties"]) == {"tenant", "geography", "schema", "channel", "card_id"}
    assert intent["additionalProperties"] is False
    features = event_schema["properties"]["features"]
    assert set(features["properties"]) == set(SAMPLE)
    assert features["additionalProperties"] is False
    assert "card_age_days" not in features["required"]
    assert event_schema["if"]["properties"]["intent"]["required"] == ["card_id"]
    assert event_schema["else"]["properties"]["features"]["required"] == [
        "card_age_days",
        "email_age_days",
    ]
    responses = doc["paths"]["/v1/score"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "408", "413", "415", "422", "503"} <= set(responses)
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                assert "content" in response, (path, method, status)
