"""The OpenAPI 3.1 document served at ``/openapi.json``.

Written out rather than generated: the wire format is small and a contract, so it is
reviewed as one, and the request/response schemas come from the same msgspec structs the
server decodes with.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from muse.serving.wire import EventIn

__all__ = ["openapi_document"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


@cache
def openapi_document() -> dict[str, Any]:
    (event_schema,), components = msgspec.json.schema_components(
        [EventIn], ref_template="#/components/schemas/{name}"
    )
    schemas: dict[str, Any] = dict(components)
    schemas["Batch"] = {
        "type": "object",
        "properties": {"events": {"type": "array", "items": event_schema, "minItems": 1}},
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
    }
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                    "index": {"type": "integer", "description": "event of a batch"},
                },
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    bearer: list[dict[str, list[str]]] = [{"apiKey": []}]
    errors = {
        "400": _error("Malformed JSON."),
        "401": _error("Missing or unknown API key."),
        "403": _error("The key's tenant is not the intent's tenant."),
        "404": _error("No scoring rule matches the intent."),
        "413": _error("Body or batch too large."),
        "422": _error(
            "Missing, extra, non-numeric or non-finite features; unknown intent attributes."
        ),
        "503": _error(
            "Not ready, a model is unavailable (`model_unavailable`), or the feature store "
            "that provides features the request omits is (`feature_store_unavailable`)."
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "muse scoring API",
            "version": "1",
            "description": "Risk scores whose distribution on each tenant's traffic follows a fixed "
            "reference distribution, across model updates. Clients send intents, never model names.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/score": {
                "post": {
                    "summary": "Score one event or a batch",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [event_schema, {"$ref": "#/components/schemas/Batch"}]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One score, or one per event in request order. The "
                            "header X-Muse-Config-Version names the config that scored it.",
                            "headers": {"X-Muse-Config-Version": {"schema": {"type": "string"}}},
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
                    "summary": "Process is alive",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/health/ready": {
                "get": {
                    "summary": "Ready for traffic (warmed up, not shutting down)",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition"}},
                }
            },
            "/admin/reload": {
                "post": {
                    "summary": "Reload the config file; the old one keeps serving if the new one "
                    "is invalid. A replica following a deployment store answers 409: versions "
                    "reach it by `muse promote`",
                    "security": bearer,
                    "responses": {
                        "200": {"description": "reloaded"},
                        "401": errors["401"],
                        "403": errors["403"],
                        "409": _error(
                            "This replica follows a deployment store (code follows_store)."
                        ),
                        "503": errors["503"],
                    },
                }
            },
            "/admin/config": {
                "get": {
                    "summary": "Config version, routes, predictors with fingerprints and map versions",
                    "security": bearer,
                    "responses": {
                        "200": {"description": "the deployment"},
                        "401": errors["401"],
                        "403": errors["403"],
                    },
                }
            },
        },
    }
