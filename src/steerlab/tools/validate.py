"""Validate calls against JSON-schema tool definitions (OpenAI style or bare {name, parameters})."""

from __future__ import annotations

from .calls import ToolCall

# BFCL and others use Python-ish type names; map them onto JSON schema's
TYPE_ALIASES = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "list": "array",
    "int": "integer",
    "bool": "boolean",
    "str": "string",
    "String": "string",
    "any": None,
}


def tool_spec(tool: dict) -> dict:
    """The {name, description, parameters} part of a tool definition."""
    fn = tool.get("function", tool) if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ValueError(f"a tool definition needs a 'name' (optionally under 'function'), got {tool!r:.120}")
    return fn


def _type_ok(value: object, typ: str | None) -> bool:
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
        return isinstance(value, list)
    if typ == "object":
        return isinstance(value, dict)
    if typ == "null":
        return value is None
    return True  # unknown type names are not the caller's fault: accept


def _check_value(path: str, value: object, schema: dict, problems: list[str]) -> None:
    typ = schema.get("type")
    types = typ if isinstance(typ, list) else [typ]
    if typ is not None and not any(_type_ok(value, t) for t in types):
        problems.append(
            f"argument {path!r} should be of type {typ}, got {type(value).__name__} {value!r:.60}"
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"argument {path!r} = {value!r:.60} is not one of {schema['enum']}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, schema["items"], problems)
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        for k, v in value.items():
            if k in schema["properties"]:
                _check_value(f"{path}.{k}", v, schema["properties"][k], problems)
        for k in schema.get("required", []):
            if k not in value:
                problems.append(f"argument {path!r} is missing required key {k!r}")


def validate_call(call: ToolCall | dict, tools: list[dict], allow_unknown_args: bool = False) -> list[str]:
    """Problems with ``call`` (empty list = valid): unknown tool, missing required, types, enums, unknown args."""
    if isinstance(call, dict):
        call = ToolCall(call.get("name", ""), call.get("arguments", {}))
    specs = {tool_spec(t)["name"]: tool_spec(t) for t in tools}
    if call.name not in specs:
        return [f"unknown tool {call.name!r}; known tools: {', '.join(sorted(specs))}"]
    params = specs[call.name].get("parameters") or {}
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
