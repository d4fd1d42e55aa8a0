"""Validate calls against JSON-schema tool definitions (OpenAI style or bare {name, parameters}).

The checker is written here rather than delegated to ``jsonschema`` (not a steerlab dependency) because tool
schemas in the wild use Python-ish type names (BFCL's ``dict``, ``float``, ``tuple``, ``any``) and because
JSON schema counts ``1.0`` as an integer while a tool that wants an integer should get one. Covered keywords:
type (or a list of types), enum, const, required, properties, additionalProperties (nested objects), items,
minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength, pattern, minItems, maxItems,
anyOf, oneOf. Other keywords are not checked.
"""

from __future__ import annotations

import re

from .calls import ToolCall

# BFCL and others use Python-ish type names; map them onto JSON schema's (None: any value)
TYPE_ALIASES: dict[str, str | None] = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "tuple": "array",
    "list": "array",
    "int": "integer",
    "long": "integer",
    "bool": "boolean",
    "str": "string",
    "String": "string",
    "any": None,
}


def normalize_schema(node: object) -> object:
    """A copy of a schema with Python-ish type names mapped to JSON schema's (``any`` drops the type)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "type" and isinstance(v, str):
                mapped = TYPE_ALIASES.get(v, v)
                if mapped is not None:
                    out[k] = mapped
            elif k == "type" and isinstance(v, list):
                mapped_list = [TYPE_ALIASES.get(t, t) if isinstance(t, str) else t for t in v]
                if None not in mapped_list:
                    out[k] = mapped_list
            elif k == "properties" and isinstance(v, dict):  # property names are not schema keywords
                out[k] = {name: normalize_schema(sub) for name, sub in v.items()}
            else:
                out[k] = normalize_schema(v)
        return out
    if isinstance(node, list):
        return [normalize_schema(x) for x in node]
    return node


def tool_spec(tool: dict) -> dict:
    """The {name, description, parameters} part of a tool definition (OpenAI's wrapper removed)."""
    fn = tool.get("function", tool) if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ValueError(f"a tool definition needs a 'name' (optionally under 'function'), got {tool!r:.120}")
    return fn


def _type_ok(value: object, typ: object) -> bool:
    typ = TYPE_ALIASES.get(typ, typ) if isinstance(typ, str) else typ
    if typ is None:
        return True
    if typ == "string":
        return isinstance(value, str)
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "array":
        return isinstance(value, (list, tuple))
    if typ == "object":
        return isinstance(value, dict)
    if typ == "null":
        return value is None
    return True  # a type name no one defined is the schema author's problem, not the call's


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bounds(path: str, value: object, schema: dict, problems: list[str]) -> None:
    if _is_num(value):
        for key, bad in (
            ("minimum", lambda v, b: v < b),
            ("maximum", lambda v, b: v > b),
            ("exclusiveMinimum", lambda v, b: v <= b),
            ("exclusiveMaximum", lambda v, b: v >= b),
        ):
            b = schema.get(key)
            if _is_num(b) and bad(value, b):
                problems.append(f"argument {path!r} = {value!r} violates {key} {b!r}")
    if isinstance(value, str):
        if _is_num(schema.get("minLength")) and len(value) < schema["minLength"]:
            problems.append(f"argument {path!r} is shorter than minLength {schema['minLength']}")
        if _is_num(schema.get("maxLength")) and len(value) > schema["maxLength"]:
            problems.append(f"argument {path!r} is longer than maxLength {schema['maxLength']}")
        pat = schema.get("pattern")
        if isinstance(pat, str):
            try:
                if re.search(pat, value) is None:
                    problems.append(f"argument {path!r} = {value!r:.60} does not match pattern {pat!r}")
            except re.error:
                pass  # a pattern Python cannot compile (ECMA-only syntax) is not the call's fault
    if isinstance(value, (list, tuple)):
        if _is_num(schema.get("minItems")) and len(value) < schema["minItems"]:
            problems.append(f"argument {path!r} has fewer than minItems {schema['minItems']} items")
        if _is_num(schema.get("maxItems")) and len(value) > schema["maxItems"]:
            problems.append(f"argument {path!r} has more than maxItems {schema['maxItems']} items")


def _check_value(path: str, value: object, schema: object, problems: list[str]) -> None:
    if not isinstance(schema, dict):
        return
    typ = schema.get("type")
    types = typ if isinstance(typ, list) else [typ]
    if typ is not None and not any(_type_ok(value, t) for t in types):
        problems.append(
            f"argument {path!r} should be of type {typ}, got {type(value).__name__} {value!r:.60}"
        )
        return
    enum = schema.get("enum")
    if isinstance(enum, list):
        if isinstance(value, (list, tuple)) and not any(isinstance(e, list) for e in enum):
            # an enum of scalars on an array (as BFCL writes it) constrains each item
            for i, item in enumerate(value):
                if not any(_same(item, e) for e in enum):
                    problems.append(f"argument {path}[{i}] = {item!r:.60} is not one of {enum}")
        elif not any(_same(value, e) for e in enum):
            problems.append(f"argument {path!r} = {value!r:.60} is not one of {enum}")
    if "const" in schema and not _same(value, schema["const"]):
        problems.append(f"argument {path!r} = {value!r:.60} must be {schema['const']!r}")
    _bounds(path, value, schema, problems)
    for key, need in (("anyOf", "at least one"), ("oneOf", "exactly one")):
        subs = schema.get(key)
        if isinstance(subs, list) and subs:
            passing = 0
            for sub in subs:
                trial: list[str] = []
                _check_value(path, value, sub, trial)
                passing += not trial
            if passing == 0 or (key == "oneOf" and passing > 1):
                problems.append(f"argument {path!r} = {value!r:.60} must match {need} schema of {key}")
    if isinstance(value, (list, tuple)) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, schema["items"], problems)
    if isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        for k, v in value.items():
            if k in props:
                _check_value(f"{path}.{k}", v, props[k], problems)
            elif schema.get("additionalProperties") is False:
                problems.append(
                    f"argument {path!r} has unknown key {k!r}; allowed: {', '.join(props) or 'none'}"
                )
            elif isinstance(schema.get("additionalProperties"), dict):
                _check_value(f"{path}.{k}", v, schema["additionalProperties"], problems)
        for k in schema.get("required", []) or []:
            if k not in value:
                problems.append(f"argument {path!r} is missing required key {k!r}")


def _same(a: object, b: object) -> bool:
    """Equality that keeps True apart from 1 (JSON's booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def validate_call(call: ToolCall | dict, tools: list[dict], allow_unknown_args: bool = False) -> list[str]:
    """Problems with ``call``: unknown tool, missing required arguments, types, enums, unknown arguments.

    Type names are mapped through ``TYPE_ALIASES``. "integer" accepts ints only, "number" ints and floats, and
    neither accepts a bool.

    Args:
        call: a ``ToolCall`` or a ``{"name", "arguments"}`` dict.
        tools: OpenAI-style ``{"type": "function", "function": {...}}`` or bare ``{"name", "parameters"}`` dicts.
        allow_unknown_args: accept arguments the schema does not name.

    Returns:
        The problems, each a sentence; empty when the call is valid.
    """
    if not isinstance(tools, (list, tuple)):
        raise ValueError(f"tools must be a list of tool definitions, got {type(tools).__name__}")
    if isinstance(call, dict):
        from .json_calls import call_from_obj

        try:
            call = call_from_obj(call)
        except ValueError as err:
            return [str(err)]
    if not isinstance(call, ToolCall):
        raise ValueError(f"call must be a ToolCall or a dict, got {type(call).__name__}")
    specs = {}
    for t in tools:
        spec = tool_spec(t)
        specs[spec["name"]] = spec
    if call.name not in specs:
        return [f"unknown tool {call.name!r}; known tools: {', '.join(sorted(specs)) or 'none'}"]
    if not isinstance(call.arguments, dict):
        return [f"arguments must be an object, got {type(call.arguments).__name__}"]
    params = normalize_schema(specs[call.name].get("parameters") or {})
    props = params.get("properties", {}) or {}
    problems: list[str] = []
    for req in params.get("required", []) or []:
        if req not in call.arguments:
            problems.append(f"missing required argument {req!r}")
    for k, v in call.arguments.items():
        if k not in props:
            if not allow_unknown_args:
                problems.append(f"unknown argument {k!r}; allowed: {', '.join(props) or 'none'}")
            continue
        _check_value(k, v, props[k], problems)
    return problems
