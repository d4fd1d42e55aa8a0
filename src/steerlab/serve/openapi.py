"""The OpenAPI description of ``POST /v1/chat/completions``: the request body ``protocol.parse_request`` accepts
and the responses it gives, so that clients, ``/docs``-style tools and schema fuzzers (schemathesis, in the tests)
see the same contract the server enforces. The model ids and the ``max_tokens`` limit are the running server's."""

from __future__ import annotations

from collections.abc import Sequence

from .protocol import HARMLESS, MAX_STRENGTH

_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["text"]}, "text": {"type": "string"}},
}
_TOOL_CALL = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "id": {"type": "string", "description": "what a later tool message's tool_call_id names"},
        "type": {"enum": ["function"]},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "arguments": {
                    "anyOf": [{"type": "string"}, {"type": "object"}],
                    "description": "a JSON object, encoded as a string (OpenAI) or not",
                },
            },
        },
    },
}
_TEXT = {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]}
# one shape per role; what a schema cannot say is checked by the server (400): the last message is not the
# assistant's, an assistant message has content or tool_calls, a tool message follows the call it answers
_MESSAGE = {
    "oneOf": [
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["system", "developer", "user"]},
                "content": _TEXT,
                "name": {"type": "string"},
            },
        },
        {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"enum": ["assistant"]},
                "content": {"anyOf": [*_TEXT["anyOf"], {"type": "null"}]},
                "tool_calls": {"type": "array", "items": _TOOL_CALL},
                "name": {"type": "string"},
            },
            "anyOf": [  # a reply to show: text, or calls
                {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
                {"required": ["tool_calls"], "properties": {"tool_calls": {"minItems": 1}}},
            ],
        },
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["tool"]},
                "content": _TEXT,
                "tool_call_id": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the call answered (without one: the next unanswered call before it)",
                },
            },
        },
    ]
}
_TOOL = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"enum": ["function"]},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                "description": {"type": "string"},
                "parameters": {"type": "object", "description": "a JSON schema of type 'object'"},
            },
        },
    },
}
HARMLESS_TYPES = {
    "user": {"type": "string"},
    "metadata": {"type": "object"},
    "store": {"type": "boolean"},
    "service_tier": {"type": "string"},
    "parallel_tool_calls": {"type": "boolean"},
}
ERROR = {
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
}
_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "message": {"type": "object", "required": ["role"]},
                    "finish_reason": {"enum": ["stop", "length", "tool_calls"]},
                },
            },
        },
        "usage": {"type": "object"},
    },
}


def request_schema(model_ids: Sequence[str] | None, max_tokens_limit: int) -> dict:
    """The JSON schema of a chat-completions request this server accepts (``model_ids`` None: any string)."""
    model: dict = {"type": "string", "description": "the served model's id (GET /v1/models)"}
    if model_ids:
        model["enum"] = list(model_ids)
    tokens = {"type": "integer", "minimum": 1, "maximum": max_tokens_limit}
    return {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": False,
        "properties": {
            "model": model,
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            "tools": {"type": "array", "items": _TOOL},
            "tool_choice": {
                "anyOf": [
                    {"enum": ["none", "auto", "required"]},
                    {
                        "type": "object",
                        "required": ["type", "function"],
                        "properties": {
                            "type": {"enum": ["function"]},
                            "function": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            },
                        },
                    },
                ]
            },
            "max_tokens": tokens,
            "max_completion_tokens": tokens,
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            "stream": {"type": "boolean"},
            "stream_options": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"include_usage": {"type": "boolean"}},
            },
            "stop": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}},
                ]
            },
            "n": {"enum": [1]},
            "steerlab": {
                "type": "object",
                "additionalProperties": False,
                "description": "per-request ASA (needs a server started with --asset)",
                "properties": {
                    "asa": {"type": "boolean"},
                    "strength": {
                        "type": "number",
                        "minimum": -MAX_STRENGTH,
                        "maximum": MAX_STRENGTH,
                        "description": "the push size, in units of the mean hidden-state norm",
                    },
                    "alpha": {
                        "type": "number",
                        "minimum": -MAX_STRENGTH,
                        "maximum": MAX_STRENGTH,
                        "deprecated": True,
                        "description": "the old name of strength (still accepted; give one of the two)",
                    },
                    "tau": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1},
                },
            },
            **{k: HARMLESS_TYPES.get(k, {}) for k in sorted(HARMLESS)},
        },
    }


def chat_operation(model_ids: Sequence[str] | None, max_tokens_limit: int) -> dict:
    """The OpenAPI fields of ``POST /v1/chat/completions`` beyond what FastAPI infers (it sees a raw body)."""
    error = {"content": {"application/json": {"schema": ERROR}}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema(model_ids, max_tokens_limit)}},
        },
        "responses": {
            "200": {
                "description": "a chat completion, or server-sent chunks with stream: true",
                "content": {
                    "application/json": {"schema": _COMPLETION},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            "400": {"description": "a malformed request (OpenAI's error shape)", **error},
            "404": {"description": "a model this server does not serve (model_not_found)", **error},
            "413": {"description": "a body or prompt over the server's limits", **error},
            "415": {"description": "a body that is not declared as JSON", **error},
            "500": {"description": "generation failed inside the server", **error},
            "503": {"description": "the model is loading (Retry-After) or failed to load", **error},
        },
    }
