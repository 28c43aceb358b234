"""The OpenAPI 3.1 description of /v1/, served at /v1/openapi.json (built once per process)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from conversations.api.parsing import MAX_BODY_BYTES, MAX_MESSAGES
from conversations.upstream.params import PARAM_SPECS, ParamSpec

REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _param_schema(spec: ParamSpec) -> dict[str, Any]:
    if spec.type == "stop":
        schema: dict[str, Any] = {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]
        }
    elif spec.type == "logit_bias":
        schema = {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": spec.min, "maximum": spec.max},
        }
    else:
        schema = {"type": spec.type}
        if spec.min is not None:
            schema["exclusiveMinimum" if not spec.min_inclusive else "minimum"] = spec.min
        if spec.max is not None:
            schema["exclusiveMaximum" if not spec.max_inclusive else "maximum"] = spec.max
    schema["description"] = spec.help
    return schema


def _sampling() -> dict[str, Any]:
    return {name: _param_schema(spec) for name, spec in PARAM_SPECS.items()}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("ErrorResponse")}}}


COMMON_ERRORS = {
    "400": _error(
        "Malformed JSON or an invalid parameter (`error.param` names it); `upstream_bad_request` when "
        "the provider refused the request."
    ),
    "401": _error("Missing, unknown or revoked API key (`invalid_api_key`)."),
    "404": _error("Unknown model, or one this key's user may not use (`model_not_found`)."),
    "413": _error(f"Body larger than {MAX_BODY_BYTES} bytes (`request_too_large`)."),
    "429": _error(
        "Monthly budget used up (`type: insufficient_quota`, `code: budget_exceeded`) or the key's "
        "requests-per-minute limit reached (`rate_limit_exceeded`), or too many wrong keys from the "
        "client's address (`too_many_failed_keys`); the last two with Retry-After."
    ),
    "502": _error(
        "The provider failed (`upstream_unavailable`, `upstream_unreachable`, `upstream_rate_limited`, "
        "`upstream_auth`, `insufficient_credits`, `upstream_stream_broken`)."
    ),
    "504": _error("The provider did not answer in time (`upstream_timeout`)."),
}


def _completion_op(summary: str, request: str, response: str, chunk: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {
            "200": {
                "description": "The whole reply (JSON), or with `stream: true` server-sent events: "
                "one chunk per `data:` line, ending with `data: [DONE]`.",
                "content": {
                    "application/json": {"schema": _ref(response)},
                    "text/event-stream": {"schema": {"type": "string"}, "x-chunk-schema": _ref(chunk)},
                },
            },
            **COMMON_ERRORS,
        },
    }


def _schemas() -> dict[str, Any]:
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
            "estimated_cost": {
                "type": "number",
                "description": "USD, as recorded in chatweb's ledger (exact decimal).",
            },
            "estimated": {
                "type": "boolean",
                "description": "Token counts estimated offline (the provider sent none).",
            },
        },
    }
    stream_fields = {
        "model": {
            "type": "string",
            "description": "A public model name from /v1/models; omitted or `auto`: "
            "chatweb picks one (see docs/api.md).",
        },
        "stream": {"type": "boolean", "default": False},
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
            "description": "`include_usage`: a last chunk with `choices: []` carries `usage`.",
        },
    }
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
            "content": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "null"},
                    {"type": "array", "items": {"type": "object", "required": ["type"]}},
                ]
            },
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"},
        },
    }
    finish = {"enum": ["stop", "length", "tool_calls", "content_filter", "function_call", None]}
    return {
        "ErrorResponse": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "Model": {
            "type": "object",
            "required": ["id", "object", "created", "owned_by"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
                "context_length": {"type": "integer"},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}},
        },
        "Usage": usage,
        "ChatMessage": message,
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                **stream_fields,
                "messages": {
                    "type": "array",
                    "items": _ref("ChatMessage"),
                    "minItems": 1,
                    "maxItems": MAX_MESSAGES,
                },
                "max_completion_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Same as max_tokens.",
                },
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "parallel_tool_calls": {"type": "boolean"},
                "response_format": {"type": "object"},
                "reasoning_effort": {"type": "string"},
                **_sampling(),
            },
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "message": {
                                "type": "object",
                                "properties": {
                                    "role": {"const": "assistant"},
                                    "content": {"type": ["string", "null"]},
                                    "reasoning_content": {"type": "string"},
                                    "refusal": {"type": ["string", "null"]},
                                    "tool_calls": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "finish_reason": finish,
                        },
                    },
                },
                "usage": _ref("Usage"),
            },
        },
        "ChatCompletionChunk": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion.chunk"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "delta": {
                                "type": "object",
                                "properties": {
                                    "role": {"const": "assistant"},
                                    "content": {"type": "string"},
                                    "reasoning_content": {"type": "string"},
                                    "refusal": {"type": "string"},
                                    "tool_calls": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "finish_reason": finish,
                        },
                    },
                },
                "usage": {"oneOf": [_ref("Usage"), {"type": "null"}]},
            },
        },
        "CompletionRequest": {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                **stream_fields,
                "prompt": {
                    "oneOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                    ]
                },
                "suffix": {"type": "string"},
                **_sampling(),
            },
        },
        "Completion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "text_completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "index": {"type": "integer"},
                            "finish_reason": finish,
                        },
                    },
                },
                "usage": {"oneOf": [_ref("Usage"), {"type": "null"}]},
            },
        },
    }


def openapi_spec() -> dict[str, Any]:
    """The document as a dict."""
    auth_errors = {k: COMMON_ERRORS[k] for k in ("401", "429")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatweb OpenAI-compatible API",
            "version": "1",
            "description": "OpenAI's Chat Completions, Completions and Models endpoints in front of the "
            "providers configured in chatweb. Authenticate with a personal key from /settings/ "
            "(`Authorization: Bearer cw-...`). Every call lands in the same usage ledger and budget as chat.",
        },
        "servers": [{"url": "/v1"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/models": {
                "get": {
                    "summary": "The models this key may use (`auto` first).",
                    "responses": {
                        "200": {
                            "description": "A list of models.",
                            "content": {"application/json": {"schema": _ref("ModelList")}},
                        },
                        **auth_errors,
                    },
                }
            },
            "/models/{model}": {
                "get": {
                    "summary": "One model.",
                    "parameters": [
                        {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "The model.",
                            "content": {"application/json": {"schema": _ref("Model")}},
                        },
                        "404": COMMON_ERRORS["404"],
                        **auth_errors,
                    },
                }
            },
            "/chat/completions": {
                "post": _completion_op(
                    "A chat reply, streamed or whole.",
                    "ChatCompletionRequest",
                    "ChatCompletion",
                    "ChatCompletionChunk",
                )
            },
            "/completions": {
                "post": _completion_op(
                    "A text completion (completion-only models), streamed or whole.",
                    "CompletionRequest",
                    "Completion",
                    "Completion",
                )
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API key (cw-...).",
                }
            },
            "schemas": _schemas(),
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> bytes:
    """The document as JSON bytes."""
    return json.dumps(openapi_spec(), indent=1).encode()
