"""Parse and render tool calls in every common format; parsing never raises and never evaluates code.

Formats:
- ``tool_call_json``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen, SmolLM2), one or many
- ``lfm2_pythonic``: ``<|tool_call_start|>[f(a=1, b="x"), g()]<|tool_call_end|>`` (LFM2), parsed with ``ast``
- ``functioncall``: ``<functioncall>{json}``
- ``json``: a bare JSON object or list (``arguments`` or Llama-3's ``parameters``)
- ``markdown_json``: JSON in a fenced ``json`` code block
"""

from __future__ import annotations

import ast
import json
import re

from .calls import ParseError, ParseResult, ToolCall

TOOL_CALL_FORMATS = ("tool_call_json", "lfm2_pythonic", "functioncall", "json", "markdown_json")
_MARKERS = {
    "tool_call_json": "<tool_call>",
    "lfm2_pythonic": "<|tool_call_start|>",
    "functioncall": "<functioncall>",
    "json": "{",
    "markdown_json": "```json",
}


def check_format(fmt: str) -> str:
    if fmt not in TOOL_CALL_FORMATS:
        raise ValueError(f"unknown tool-call format {fmt!r}; valid: {', '.join(TOOL_CALL_FORMATS)}")
    return fmt


def trigger_marker(fmt: str) -> str:
    """The literal whose appearance in the output means the model decided to call a tool."""
    return _MARKERS[check_format(fmt)]


def has_trigger(text: str, fmt: str) -> bool:
    return trigger_marker(fmt) in text


def could_still_trigger(prefix_text: str, fmt: str) -> bool:
    """True while the output so far (leading whitespace ignored) is a prefix of the marker or contains it."""
    marker = trigger_marker(fmt)
    s = prefix_text.lstrip()
    return marker in s or marker.startswith(s)


def _call_from_obj(obj: object) -> ToolCall:
    if not isinstance(obj, dict):
        raise ValueError(f"a call must be a JSON object, got {type(obj).__name__}")
    if "function" in obj and isinstance(
        obj["function"], dict
    ):  # OpenAI {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a call needs a non-empty string 'name'")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # OpenAI style: arguments as a JSON string
        args = json.loads(args) if args.strip() else {}
    if not isinstance(args, dict):
        raise ValueError(f"'arguments' must be an object, got {type(args).__name__}")
    return ToolCall(name, args)


def _calls_from_json_text(body: str, fmt: str, result: ParseResult) -> None:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as err:
        result.errors.append(ParseError(fmt, f"invalid JSON: {err.msg} at column {err.colno}", body[:200]))
        return
    for item in obj if isinstance(obj, list) else [obj]:
        try:
            result.calls.append(_call_from_obj(item))
        except (ValueError, json.JSONDecodeError) as err:
            result.errors.append(ParseError(fmt, str(err), json.dumps(item)[:200] if _jsonable(item) else ""))


def _jsonable(x: object) -> bool:
    try:
        json.dumps(x)
        return True
    except (TypeError, ValueError):
        return False


def _literal(node: ast.AST) -> object:
    """Only literals: str, numbers, bools, None, lists, tuples, dicts, and unary minus on numbers."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        val = _literal(node.operand)
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            return -val if isinstance(node.op, ast.USub) else val
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking is not a literal")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in ("true", "false", "null"):  # JSON spellings
        return {"true": True, "false": False, "null": None}[node.id]
    raise ValueError(f"not a literal: {ast.dump(node)[:80]}")


def _dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise ValueError("the called object must be a (dotted) name")


def _calls_from_pythonic(body: str, result: ParseResult) -> None:
    fmt = "lfm2_pythonic"
    try:
        tree = ast.parse(body.strip(), mode="eval")
    except SyntaxError as err:
        result.errors.append(ParseError(fmt, f"not a Python call list: {err.msg}", body[:200]))
        return
    node = tree.body
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    for item in items:
        try:
            if not isinstance(item, ast.Call):
                raise ValueError("each element must be a call like f(a=1)")
            if item.args:
                raise ValueError("positional arguments are not allowed; use keyword arguments")
            if any(k.arg is None for k in item.keywords):
                raise ValueError("**kwargs is not allowed")
            result.calls.append(
                ToolCall(_dotted_name(item.func), {k.arg: _literal(k.value) for k in item.keywords})
            )
        except (ValueError, RecursionError) as err:
            result.errors.append(ParseError(fmt, str(err), ast.get_source_segment(body.strip(), item) or ""))


def _between(text: str, start: str, end: str | None) -> list[str]:
    """Bodies after each ``start`` up to ``end`` (or the next start / end of text when the closer is missing)."""
    bodies = []
    pos = 0
    while True:
        i = text.find(start, pos)
        if i < 0:
            return bodies
        j0 = i + len(start)
        j = text.find(end, j0) if end else -1
        nxt = text.find(start, j0)
        if j < 0 or (0 <= nxt < j):
            j = nxt if nxt >= 0 else len(text)
            pos = j
        else:
            pos = j + len(end)
        bodies.append(text[j0:j])


def _raw_json_span(text: str) -> str | None:
    """The first balanced JSON object or array in text, if any."""
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return None
    i = min(starts)
    depth, in_str, esc = 0, False, False
    for j in range(i, len(text)):
        ch = text[j]
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            elif ch != "\\":
                esc = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[i : j + 1]
    return text[i:]


def _parse_fmt(text: str, fmt: str) -> ParseResult:
    res = ParseResult(format=fmt)
    if fmt == "tool_call_json":
        for body in _between(text, "<tool_call>", "</tool_call>"):
            _calls_from_json_text(body.strip(), fmt, res)
    elif fmt == "lfm2_pythonic":
        for body in _between(text, "<|tool_call_start|>", "<|tool_call_end|>"):
            _calls_from_pythonic(body, res)
    elif fmt == "functioncall":
        for body in _between(text, "<functioncall>", None):
            span = _raw_json_span(body)
            if span is None:
                res.errors.append(ParseError(fmt, "no JSON after <functioncall>", body[:200]))
            else:
                _calls_from_json_text(span, fmt, res)
    elif fmt == "markdown_json":
        for m in re.finditer(r"```(?:json)?\s*\n?(.*?)(?:```|$)", text, flags=re.S):
            if m.group(1).strip():
                _calls_from_json_text(m.group(1).strip(), fmt, res)
    else:
        span = _raw_json_span(text)
        if span is not None:
            _calls_from_json_text(span, fmt, res)
    return res


def _detect(text: str) -> str | None:
    for fmt in ("lfm2_pythonic", "tool_call_json", "functioncall"):
        if trigger_marker(fmt) in text:
            return fmt
    if "```" in text:
        return "markdown_json"
    stripped = text.strip()
    if stripped.startswith(("{", "[")) and '"name"' in stripped:
        return "json"
    return None


def parse_tool_calls(text: str, fmt: str | None = None) -> ParseResult:
    """Calls found in ``text``; ``fmt=None`` detects the format. Never raises on any input text."""
    if fmt is not None:
        check_format(fmt)
    if not isinstance(text, str):
        return ParseResult(errors=[ParseError(fmt or "?", f"expected text, got {type(text).__name__}")])
    try:
        use = fmt or _detect(text)
        if use is None:
            return ParseResult()
        return _parse_fmt(text, use)
    except (RecursionError, MemoryError, ValueError) as err:  # pathological nesting and the like
        return ParseResult(
            format=fmt, errors=[ParseError(fmt or "?", f"could not parse: {type(err).__name__}")]
        )


def _py_literal(v: object) -> str:
    if isinstance(v, str):  # a JSON string is a valid Python literal when non-ASCII stays literal
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_py_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot render a value of type {type(v).__name__} in a Pythonic call")


def render_tool_call(call: ToolCall | dict | list, fmt: str) -> str:
    """Text of one call (or a list of calls) in ``fmt``; the inverse of ``parse_tool_calls``."""
    check_format(fmt)
    calls = call if isinstance(call, list) else [call]
    calls = [c if isinstance(c, ToolCall) else _call_from_obj(c) for c in calls]
    objs = [{"name": c.name, "arguments": c.arguments} for c in calls]
    if fmt == "tool_call_json":
        return "".join(f"<tool_call>{json.dumps(o)}</tool_call>" for o in objs)
    if fmt == "lfm2_pythonic":
        inner = ", ".join(
            f"{c.name}({', '.join(f'{k}={_py_literal(v)}' for k, v in c.arguments.items())})" for c in calls
        )
        return f"<|tool_call_start|>[{inner}]<|tool_call_end|>"
    body = json.dumps(objs[0] if len(objs) == 1 else objs)
    if fmt == "functioncall":
        return f"<functioncall>{body}"
    if fmt == "markdown_json":
        return f"```json\n{body}\n```"
    return body
