"""Validate an OpenAI chat-completions request body into a ``RowSpec``; every refusal names the bad value.

Written by hand rather than as pydantic models so that each message says what is allowed in OpenAI's terms and
so that nothing is silently ignored: a known parameter that steerlab cannot honour is refused by name, an
unknown one is refused as OpenAI does ("Unrecognized request argument").
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .engine import RowSpec
from .errors import ApiError, bad_request

ROLES = ("system", "developer", "user", "assistant", "tool")
SUPPORTED = {
    "model",
    "messages",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stream",
    "stream_options",
    "stop",
    "steerlab",
    "n",
}
# accepted and without effect on a single local model (said in docs/serve.md)
HARMLESS = {"user", "metadata", "store", "service_tier", "parallel_tool_calls"}
# accepted only at their neutral value
NEUTRAL = {
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": None,
    "response_format": None,
    "functions": None,
    "function_call": None,
    "modalities": None,
    "audio": None,
    "prediction": None,
    "reasoning_effort": None,
    "web_search_options": None,
}
STEERLAB_KEYS = ("asa", "strength", "tau", "alpha")  # alpha: the old name of strength, still accepted
MAX_STRENGTH = 10.0
MAX_JSON_DEPTH = 64  # deeper bodies are refused before anything walks them (deep tool schemas are ~10)
JSON_TYPES = ("string", "number", "integer", "boolean", "object", "array", "null")
# JSON-schema keywords whose values are schemas: one, a list of them, or a map of names to them
_ONE_SCHEMA = (
    "items",
    "additionalProperties",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
)
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


@dataclass
class ChatRequest:
    spec: RowSpec
    stream: bool
    include_usage: bool


def json_depth(x: object) -> int:
    """How deeply arrays and objects nest in ``x`` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(x, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break  # deep enough to refuse; no need to walk the rest
        stack.extend((v, depth + 1) for v in node)
    return deepest


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def parse_json_body(raw: bytes, content_type: str | None) -> object:
    """The request body as JSON: 415 for a body declared as something else (``text/plain``), 400 for invalid
    JSON (NaN and Infinity included) or for nesting deeper than ``MAX_JSON_DEPTH``, never a RecursionError."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            f"the request body must be JSON with Content-Type: application/json, got Content-Type {media!r}",
            None,
            "unsupported_media_type",
        )
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        body, depth = None, MAX_JSON_DEPTH + 1
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, bad UTF-8, a NaN, a huge integer
        raise bad_request(f"the request body is not valid JSON: {err}", None, "invalid_json") from None
    else:
        depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise bad_request(
            f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
            None,
            "invalid_json",
        )
    return body


def _integral(v: object) -> object:
    """``5.0`` as 5: JSON (and its schema) do not tell an integral number from an integer."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _num(body: dict, key: str, lo: float, hi: float, default: float, lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise bad_request(f"'{key}' must be a number, got {v!r:.60}", key)
    if v < lo or v > hi or (lo_open and v == lo):
        rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise bad_request(f"'{key}' must be in {rng}, got {v}", key)
    return float(v)


def _content(m: dict, i: int) -> str | None:
    c = m.get("content")
    if c is None or isinstance(c, str):
        return c
    if isinstance(c, list):
        parts = []
        for j, p in enumerate(c):
            if isinstance(p, dict) and p.get("type") == "text" and not isinstance(p.get("text"), str):
                raise bad_request(
                    f"messages[{i}].content[{j}].text must be a string, got {p.get('text')!r:.60}",
                    f"messages[{i}].content[{j}]",
                )
            if not isinstance(p, dict) or p.get("type") != "text":
                kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                raise bad_request(
                    f"messages[{i}].content[{j}] is a {kind!r} part; this model takes only "
                    "{'type': 'text', 'text': ...} parts",
                    f"messages[{i}].content[{j}]",
                )
            parts.append(p["text"])
        return "".join(parts)
    raise bad_request(
        f"messages[{i}].content must be a string, a list of text parts or null, got {type(c).__name__}",
        f"messages[{i}].content",
    )


def _tool_calls(m: dict, i: int) -> list[dict]:
    calls = m.get("tool_calls")
    if not isinstance(calls, list):
        raise bad_request(
            f"messages[{i}].tool_calls must be a list, got {type(calls).__name__}",
            f"messages[{i}].tool_calls",
        )
    out = []
    for j, c in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise bad_request(
                f"{where} must be {{'type': 'function', 'function': {{'name', 'arguments'}}}}", where
            )
        args = fn.get("arguments", "{}")
        if isinstance(args, str):
            try:
                parsed = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                raise bad_request(
                    f"{where}.function.arguments is not valid JSON: {args!r:.80}", where
                ) from None
        else:
            parsed = args
        if not isinstance(parsed, dict):
            raise bad_request(f"{where}.function.arguments must encode a JSON object", where)
        out.append(
            {"id": c.get("id"), "type": "function", "function": {"name": fn["name"], "arguments": parsed}}
        )
    return out


def _tool_call_id(m: dict, i: int, calls: list[str | None]) -> str | None:
    """A tool message answers one call of the assistant message just before it (only tool messages between them):
    the call its ``tool_call_id`` names, or, without an id, the next call not yet answered. The answered call is
    removed from ``calls``; a tool message that answers no call is refused."""
    tid = m.get("tool_call_id")
    where = f"messages[{i}].tool_call_id"
    if tid is not None and (not isinstance(tid, str) or not tid):
        raise bad_request(f"messages[{i}].tool_call_id must be a non-empty string, got {tid!r:.60}", where)
    if tid is None and calls:
        calls.pop(0)
        return None
    if tid is not None and tid in calls:
        calls.remove(tid)
        return tid
    named = [c for c in calls if c is not None]
    have = (
        f"its unanswered calls are {', '.join(map(repr, named))}"
        if named
        else "it has no unanswered call"
        if not calls
        else "its unanswered calls have no ids"
    )
    what = f"tool_call_id {tid!r:.60}" if tid is not None else "no call"
    raise bad_request(
        f"messages[{i}] (tool) answers {what}, which is no call of the assistant message before it ({have}); "
        "a tool message must follow the assistant message whose tool_calls it answers",
        where,
    )


def parse_messages(raw: object) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        got = "an empty list" if raw == [] else type(raw).__name__
        raise bad_request(f"'messages' must be a non-empty list of messages, got {got}", "messages")
    out = []
    calls: list[
        str | None
    ] = []  # the unanswered calls (ids) of the assistant message before these tool messages
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise bad_request(
                f"messages[{i}] must be an object with 'role' and 'content', got {type(m).__name__}",
                f"messages[{i}]",
            )
        role = m.get("role")
        if role not in ROLES:
            raise bad_request(
                f"messages[{i}].role is {role!r}; allowed: {', '.join(ROLES)}", f"messages[{i}].role"
            )
        msg: dict = {"role": role, "content": _content(m, i)}
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _tool_calls(m, i)
        elif msg["content"] is None:
            raise bad_request(f"messages[{i}] ({role}) has no content", f"messages[{i}].content")
        if role == "tool":
            msg["tool_call_id"] = _tool_call_id(m, i, calls)
        elif role == "assistant" and "tool_calls" in msg:
            calls = [c["id"] if isinstance(c["id"], str) and c["id"] else None for c in msg["tool_calls"]]
        else:
            calls = []
        out.append(msg)
    if out[-1]["role"] == "assistant":
        raise bad_request(
            "the last message is from the assistant; end with a user or tool message "
            "(continuing an assistant message is not supported)",
            f"messages[{len(out) - 1}]",
        )
    return out


def parse_tools(raw: object) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request(f"'tools' must be a list of tool definitions, got {type(raw).__name__}", "tools")
    seen = set()
    out = []
    for i, t in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise bad_request(
                f"{where} must be {{'type': 'function', 'function': {{'name', 'description', "
                f"'parameters'}}}}, got {json.dumps(t)[:120] if _jsonable(t) else t!r:.120}",
                where,
            )
        fn = t["function"]
        name = fn.get("name")
        if (
            not isinstance(name, str)
            or not name
            or len(name) > 64
            or not all(c.isascii() and (c.isalnum() or c in "_-.") for c in name)
        ):
            raise bad_request(
                f"{where}.function.name must be 1-64 letters, digits, '_', '-' or '.', got {name!r}",
                f"{where}.function.name",
            )
        if name in seen:
            raise bad_request(f"tool name {name!r} is defined twice", f"{where}.function.name")
        seen.add(name)
        desc = fn.get("description", "")
        if not isinstance(desc, str):
            raise bad_request(
                f"{where}.function.description must be a string", f"{where}.function.description"
            )
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise bad_request(
                f"{where}.function.parameters must be a JSON schema of type 'object', got {params!r:.100}",
                f"{where}.function.parameters",
            )
        props = params.get("properties", {})
        if not isinstance(props, dict) or not all(isinstance(v, dict) for v in props.values()):
            raise bad_request(
                f"{where}.function.parameters.properties must map names to schemas",
                f"{where}.function.parameters",
            )
        req = params.get("required", [])
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
            raise bad_request(
                f"{where}.function.parameters.required must be a list of names",
                f"{where}.function.parameters",
            )
        missing = [r for r in req if r not in props]
        if missing:
            raise bad_request(
                f"{where}.function.parameters.required names {missing}, which are not in its "
                f"properties ({sorted(props)})",
                f"{where}.function.parameters",
            )
        check_schema(params, f"{where}.function.parameters")
        out.append(
            {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}
        )
    return out


def check_schema(schema: object, where: str) -> None:
    """A tool's parameter schema as JSON schema: every subschema an object (or true/false), every ``type`` one of
    JSON's seven types (or a list of them), ``required`` and ``enum`` lists. A typo such as ``"strng"`` would
    otherwise reach the model as a type no argument can have."""
    from ..config import did_you_mean

    stack: list[tuple[object, str]] = [(schema, "")]
    while stack:
        node, path = stack.pop()
        here = f"{where}{path}"
        if isinstance(node, bool):
            continue
        if not isinstance(node, dict):
            raise bad_request(f"{here} must be a JSON schema (an object), got {node!r:.60}", where)
        typ = node.get("type")
        if typ is not None:
            types = typ if isinstance(typ, list) else [typ]
            bad = [t for t in types if t not in JSON_TYPES]
            if bad or not types:
                first = bad[0] if bad else typ
                hint = did_you_mean(first, list(JSON_TYPES)) if isinstance(first, str) else ""
                raise bad_request(
                    f"{here}.type is {first!r:.60}{hint}; JSON schema types are {', '.join(JSON_TYPES)}",
                    where,
                )
        for key in ("required", "enum"):
            if key in node and not isinstance(node[key], list):
                raise bad_request(f"{here}.{key} must be a list, got {node[key]!r:.60}", where)
        for key in _ONE_SCHEMA:
            if key in node and not isinstance(node[key], list):
                stack.append((node[key], f"{path}.{key}"))
            elif key in node:  # items as a list: the old tuple form
                stack.extend((s, f"{path}.{key}[{k}]") for k, s in enumerate(node[key]))
        for key in _SCHEMA_LISTS:
            if key in node:
                if not isinstance(node[key], list):
                    raise bad_request(f"{here}.{key} must be a list of schemas", where)
                stack.extend((s, f"{path}.{key}[{k}]") for k, s in enumerate(node[key]))
        for key in _SCHEMA_MAPS:
            if key in node:
                if not isinstance(node[key], dict):
                    raise bad_request(f"{here}.{key} must map names to schemas", where)
                stack.extend((s, f"{path}.{key}.{name}") for name, s in node[key].items())


def _jsonable(x: object) -> bool:
    try:
        json.dumps(x)
        return True
    except (TypeError, ValueError):
        return False


def parse_tool_choice(raw: object, tools: list[dict]) -> tuple[str, str | None]:
    names = [t["function"]["name"] for t in tools]
    if raw is None:
        return ("auto" if tools else "none"), None
    if isinstance(raw, str):
        if raw not in ("none", "auto", "required"):
            raise bad_request(
                f"tool_choice {raw!r} is not one of 'none', 'auto', 'required' or "
                "{'type': 'function', 'function': {'name': ...}}",
                "tool_choice",
            )
        if raw == "required" and not tools:
            raise bad_request("tool_choice 'required' needs a non-empty 'tools' list", "tool_choice")
        return raw, None
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        name = raw["function"].get("name")
        if name not in names:
            raise bad_request(
                f"tool_choice names function {name!r}, which is not in 'tools' ({', '.join(names) or 'none given'})",
                "tool_choice",
            )
        return "function", name
    raise bad_request(
        f"tool_choice must be 'none', 'auto', 'required' or {{'type': 'function', 'function': "
        f"{{'name': ...}}}}, got {raw!r:.100}",
        "tool_choice",
    )


def parse_steerlab(raw: object, has_asset: bool) -> tuple[bool | None, float | None, float | None]:
    if raw is None:
        return None, None, None
    if not isinstance(raw, dict):
        raise bad_request(
            f"'steerlab' must be an object with keys {', '.join(STEERLAB_KEYS)}, got {raw!r:.60}", "steerlab"
        )
    unknown = sorted(set(raw) - set(STEERLAB_KEYS))
    if unknown:
        raise bad_request(
            f"unknown steerlab option(s) {unknown}; allowed: {', '.join(STEERLAB_KEYS)}", "steerlab"
        )
    asa = raw.get("asa")
    if asa is not None and not isinstance(asa, bool):
        raise bad_request(f"steerlab.asa must be true or false, got {asa!r}", "steerlab.asa")
    if "alpha" in raw and "strength" in raw:
        raise bad_request(
            "give steerlab.strength (or its old name steerlab.alpha), not both", "steerlab.strength"
        )
    key = "alpha" if "alpha" in raw else "strength"  # the push size, under whichever name the request used
    wants = asa is True or key in raw or "tau" in raw
    if wants and not has_asset:
        raise bad_request(
            "this server has no ASA asset (start it with --asset DIR); steerlab.asa/strength/tau need one",
            "steerlab",
            "no_asset",
        )
    strength = raw.get(key)
    if strength is not None and (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not math.isfinite(strength)
        or abs(strength) > MAX_STRENGTH
    ):
        old = " (the old name of steerlab.strength)" if key == "alpha" else ""
        raise bad_request(
            f"steerlab.{key}{old} must be a number in [-{MAX_STRENGTH}, {MAX_STRENGTH}] (units of the mean "
            f"hidden-state norm), got {strength!r}",
            f"steerlab.{key}",
        )
    tau = raw.get("tau")
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.5 < tau < 1):
        raise bad_request(
            f"steerlab.tau must satisfy 0.5 < tau < 1 (a strict ternary gate), got {tau!r}", "steerlab.tau"
        )
    return asa, None if strength is None else float(strength), None if tau is None else float(tau)


def parse_request(
    body: object,
    *,
    has_asset: bool,
    max_tokens_limit: int,
    default_temperature: float,
    model_ids: Sequence[str] | None = None,
) -> ChatRequest:
    """The whole body; raises ``ApiError`` (400, or 404 for a model this server does not serve, as OpenAI's
    ``model_not_found``) on the first problem found. ``model_ids``: the served models (None: any name)."""
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    for key in body:
        if key in SUPPORTED or key in HARMLESS:
            continue
        if key in NEUTRAL:
            v = body[key]
            if v in (NEUTRAL[key], None) or v == {} or v == {"type": "text"}:
                continue
            raise bad_request(
                f"'{key}' = {v!r:.60} is not supported by steerlab serve (only its default)",
                key,
                "unsupported_parameter",
            )
        raise bad_request(f"Unrecognized request argument supplied: {key}", key, "unrecognized_argument")
    if not isinstance(body.get("model"), str):
        raise bad_request(f"'model' must be a string, got {body.get('model')!r:.60}", "model")
    if model_ids is not None and body["model"] not in model_ids:
        raise ApiError(
            404,
            f"The model {body['model']!r:.80} does not exist on this server; it serves "
            f"{', '.join(map(repr, model_ids))} (GET /v1/models lists them)",
            "model",
            "model_not_found",
        )
    n = body.get("n", 1)
    if n not in (1, None):
        raise bad_request(f"'n' = {n!r}: steerlab serve returns one choice per request (n must be 1)", "n")
    messages = parse_messages(body.get("messages"))
    tools = parse_tools(body.get("tools"))
    choice, forced = parse_tool_choice(body.get("tool_choice"), tools)
    asa, strength, tau = parse_steerlab(body.get("steerlab"), has_asset)
    mt = _integral(body.get("max_completion_tokens", body.get("max_tokens")))
    if mt is None:
        mt = min(256, max_tokens_limit)
    if isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= max_tokens_limit:
        raise bad_request(
            f"'max_tokens' must be an integer in [1, {max_tokens_limit}], got {mt!r}", "max_tokens"
        )
    seed = _integral(body.get("seed"))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise bad_request(f"'seed' must be a non-negative integer, got {seed!r}", "seed")
    stop = body.get("stop")
    stops = (
        (stop,)
        if isinstance(stop, str)
        else tuple(stop)
        if isinstance(stop, list)
        else ()
        if stop is None
        else None
    )
    if stops is None or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise bad_request(f"'stop' must be a non-empty string or a list of up to 4, got {stop!r:.80}", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"'stream' must be true or false, got {stream!r}", "stream")
    so = body.get("stream_options") or {}
    if not isinstance(so, dict) or set(so) - {"include_usage", "include_obfuscation"}:
        raise bad_request(f"'stream_options' may only hold include_usage, got {so!r:.80}", "stream_options")
    spec = RowSpec(
        messages=messages,
        tools=tools,
        tool_choice=choice,
        forced_name=forced,
        asa=asa,
        strength=strength,
        tau=tau,
        temperature=_num(body, "temperature", 0.0, 2.0, default_temperature),
        top_p=_num(body, "top_p", 0.0, 1.0, 1.0, lo_open=True),
        seed=seed,
        max_tokens=mt,
        stop=tuple(sorted(set(stops))),
        stream=stream,
    )
    return ChatRequest(spec, stream, bool(so.get("include_usage")))


__all__ = ["ApiError", "ChatRequest", "parse_request"]
