"""The OpenAPI 3.1 document served at ``/openapi.json``.

Written out rather than generated from routes: the wire format is small and a contract, so
it is reviewed as one. It describes the deployment being served: the intent attributes it
declares and the features its models read are listed by name (an undeclared attribute or
an unknown feature is a 422), so a client generator — or a fuzzer — works from the same
contract the server enforces. Every status each endpoint can answer is listed, with the
error body; ``tests/e2e/test_fuzz.py`` holds the server to it with generated requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from muse.serving.wire import MAX_ID_CHARS, EventIn

if TYPE_CHECKING:
    from muse.snapshot import Snapshot

__all__ = ["Lookup", "openapi_document", "snapshot_document"]

#: Error codes, by status, that the scoring endpoint answers with.
_CODES = {
    400: ("malformed_json", "client_disconnected"),
    401: ("unauthenticated",),
    403: ("forbidden",),
    404: ("no_route",),
    408: ("request_timeout",),
    413: ("body_too_large", "batch_too_large"),
    415: ("unsupported_media_type",),
    422: ("invalid_request", "invalid_intent", "invalid_features"),
    503: ("not_ready", "model_unavailable", "feature_store_unavailable"),
}


def snapshot_document(snapshot: Snapshot | None) -> dict[str, Any]:
    """The document for the deployment ``snapshot`` serves (a generic one before start)."""
    if snapshot is None:
        return openapi_document()
    store = snapshot.store
    features = sorted(snapshot.known_features)
    if store is None:
        return openapi_document(snapshot.router.attributes, features, features)
    keys = store.spec.keys
    filled = store.provides | frozenset(store.key_features)
    return openapi_document(
        attributes=snapshot.router.attributes,
        features=features,
        required_features=[f for f in features if f not in filled],
        lookup=Lookup(
            intent_keys=[k.name for k in keys if k.from_intent],
            feature_keys=[k.name for k in keys if not k.from_intent],
            required=[f for f in features if f in store.provides],
        ),
    )


@dataclass(frozen=True, slots=True)
class Lookup:
    """How a deployment's feature store completes events: keyed by ``intent_keys`` (intent
    attributes) and ``feature_keys`` (request features), it fills in the ``required``
    features a request leaves out — only for an event that names its entity (a default
    stands for an entity the store lacks, not for an event that names none)."""

    intent_keys: Sequence[str]
    feature_keys: Sequence[str]
    required: Sequence[str]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(
    attributes: Sequence[str] = ("tenant",),
    features: Sequence[str] = (),
    required_features: Sequence[str] = (),
    lookup: Lookup | None = None,
) -> dict[str, Any]:
    """The document for a deployment whose intents declare ``attributes`` and whose models
    read ``features`` (``required_features``: those no feature store can fill in, and,
    with a ``lookup``, the store's required ones unless the event names its entity);
    with no features named, any feature names are described (the server still checks them)."""
    (event_schema,), components = msgspec.json.schema_components(
        [EventIn], ref_template="#/components/schemas/{name}"
    )
    event = dict(event_schema if "$ref" not in event_schema else components["EventIn"])
    schemas: dict[str, Any] = {k: v for k, v in components.items() if k != "EventIn"}
    attribute = {"type": "string", "maxLength": MAX_ID_CHARS}
    event["properties"] = dict(event["properties"])
    event["properties"]["intent"] = {
        "type": "object",
        "description": "Who asks and how: the intent attributes the deployment declares. "
        "Routing picks the predictor from them; clients never name models.",
        "properties": {
            a: {**attribute, "minLength": 1} if a == "tenant" else attribute for a in attributes
        },
        "required": ["tenant"],
        "additionalProperties": False,
    }
    if features:
        event["properties"]["features"] = {
            "type": "object",
            "description": "Finite numbers by feature name. A feature the deployment's "
            "feature store provides may be left out when the intent names the entity it is "
            "keyed by; a name no model reads is refused.",
            "properties": {f: {"type": "number"} for f in features},
            "required": list(required_features),
            "additionalProperties": False,
        }
    if lookup is not None and lookup.required:
        # An event that does not name its entity cannot have the store's required features
        # looked up: then it must carry them (the server says which is missing, 422).
        event["if"] = {
            "properties": {
                "intent": {"required": list(lookup.intent_keys)},
                "features": {"required": list(lookup.feature_keys)},
            }
        }
        event["else"] = {"properties": {"features": {"required": list(lookup.required)}}}
    schemas["EventIn"] = event
    schemas["Batch"] = {
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/EventIn"},
                "minItems": 1,
            }
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    schemas["Score"] = {
        "type": "object",
        "properties": {
            "event_id": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["event_id", "score"],
        "additionalProperties": False,
    }
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "Stable, for programs."},
                    "message": {"type": "string", "description": "What is wrong, for people."},
                    "field": {"type": "string", "description": "Where, e.g. features.amount."},
                    "index": {"type": "integer", "description": "Which event of a batch."},
                },
                "required": ["code", "message"],
                "additionalProperties": False,
            }
        },
        "required": ["error"],
        "additionalProperties": False,
    }
    schemas["Status"] = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "config_version": {"type": "string"}},
        "required": ["status"],
    }
    bearer: list[dict[str, list[str]]] = [{"apiKey": []}]

    def codes(status: int) -> str:
        return " Codes: " + ", ".join(f"`{c}`" for c in _CODES[status]) + "."

    errors = {
        "400": _error("Malformed JSON, or the client went away mid-body." + codes(400)),
        "401": _error("Missing or unknown API key." + codes(401)),
        "403": _error("The key's tenant is not the intent's tenant." + codes(403)),
        "404": _error("No scoring rule matches the intent." + codes(404)),
        "408": _error(
            "Headers and body did not arrive within the server's request timeout (the "
            "connection is closed)." + codes(408)
        ),
        "413": _error(
            "Body or batch too large (`server.max_body_bytes`, "
            "`server.max_batch_events`)." + codes(413)
        ),
        "415": _error("The body is declared as something other than JSON." + codes(415)),
        "422": _error(
            "Missing, extra, non-numeric or non-finite features; an undeclared or non-string "
            f"intent attribute; an event id or attribute value outside 1–{MAX_ID_CHARS} "
            "characters; both or neither of an event and a batch." + codes(422)
        ),
        "503": _error(
            "Not ready (starting or stopping), a model is unavailable, or the feature store "
            "that provides features the request omits is unavailable; retry." + codes(503)
        ),
    }
    admin = {"401": errors["401"], "403": _error("Not an admin key. Codes: `forbidden`.")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "muse scoring API",
            "version": "1",
            "description": "Risk scores whose distribution on each tenant's traffic follows a "
            "fixed reference distribution, across model updates. Clients send intents, never "
            "model names.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/score": {
                "post": {
                    "operationId": "score",
                    "summary": "Score one event or a batch",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/EventIn"},
                                        {"$ref": "#/components/schemas/Batch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One score, or one per event in request order. The "
                            "header X-Muse-Config-Version names the config that scored it.",
                            "headers": {
                                "X-Muse-Config-Version": {
                                    "required": True,
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Score"},
                                            {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Score"},
                                            },
                                        ]
                                    }
                                }
                            },
                        },
                        **errors,
                    },
                }
            },
            "/health/live": {
                "get": {
                    "operationId": "live",
                    "summary": "Process is alive",
                    "responses": {"200": _json("alive", {"$ref": "#/components/schemas/Status"})},
                }
            },
            "/health/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Ready for traffic (warmed up, not shutting down)",
                    "responses": {
                        "200": _json("ready", {"$ref": "#/components/schemas/Status"}),
                        "503": _json("not ready", {"$ref": "#/components/schemas/Status"}),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/admin/reload": {
                "post": {
                    "operationId": "reload",
                    "summary": "Reload the config file; the old one keeps serving if the new one "
                    "is invalid. A replica following a deployment store answers 409: versions "
                    "reach it by `muse promote`",
                    "security": bearer,
                    "responses": {
                        "200": _json("reloaded", {"$ref": "#/components/schemas/Status"}),
                        **admin,
                        "409": _error(
                            "This replica follows a deployment store. Codes: `follows_store`."
                        ),
                        "422": _error(
                            "The new config is invalid; the old one keeps serving. Codes: "
                            "`invalid_config`, `invalid_request`."
                        ),
                        "503": errors["503"],
                    },
                }
            },
            "/admin/config": {
                "get": {
                    "operationId": "config",
                    "summary": "Config version, routes, predictors with fingerprints and map "
                    "versions",
                    "security": bearer,
                    "responses": {
                        "200": _json("the deployment", {"type": "object"}),
                        **admin,
                        "503": errors["503"],
                    },
                }
            },
        },
    }
