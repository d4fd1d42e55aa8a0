"""JSON calls: read ``{"name", "arguments"}`` objects (one or a list) out of text, and write them back.

Shared by every format whose call body is JSON (``tool_call_json``, ``functioncall``, ``json``, ``markdown_json``).
Reading never raises on the model's text: what does not decode becomes a ``ParseError`` in the result.
"""

from __future__ import annotations

import json
import re

from .calls import ParseError, ParseResult, ToolCall

SNIP = 200  # characters of the offending text kept in a ParseError
_MAX_JSON_STARTS = 64  # bare-JSON search: how many '{' / '[' positions to try before giving up


def call_from_obj(obj: object) -> ToolCall:
    """A call from ``{"name", "arguments"}``, ``{"name", "parameters"}`` or OpenAI's ``{"function": {...}}``."""
    if not isinstance(obj, dict):
        raise ValueError(f"a call must be a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a call needs a non-empty string 'name', got {name!r:.60}")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # OpenAI style: arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"'arguments' is a string but not valid JSON: {err.msg}") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError(f"'arguments' must be an object, got {type(args).__name__}")
    return ToolCall(name, args)


def _add_calls(obj: object, fmt: str, res: ParseResult, snippet: str, span: tuple[int, int]) -> None:
    for item in obj if isinstance(obj, list) else [obj]:
        try:
            res.calls.append(call_from_obj(item))
        except ValueError as err:
            res.errors.append(ParseError(fmt, str(err), snippet, span))


def json_at(text: str, start: int, fmt: str, res: ParseResult, tail_ok: bool) -> None:
    """Decode the JSON value that starts at ``text[start]`` (after whitespace) and add its calls to ``res``.

    ``tail_ok``: text after the value is allowed (a missing closing tag, or free text after the call).
    """
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    try:
        obj, end = json.JSONDecoder().raw_decode(text, i)
    except json.JSONDecodeError as err:
        msg = f"invalid JSON: {err.msg} at column {err.colno}"
        res.errors.append(ParseError(fmt, msg, text[i : i + SNIP], (i, len(text))))
        return
    if not tail_ok and text[end:].strip():
        msg = f"unexpected text after the JSON call: {text[end:].strip()[:40]!r}"
        res.errors.append(ParseError(fmt, msg, text[i : i + SNIP], (i, len(text))))
        return
    _add_calls(obj, fmt, res, text[i:end][:SNIP], (i, end))


def bare_json(text: str, fmt: str, res: ParseResult) -> None:
    """The first JSON object or list in free text that decodes (and looks like calls); an error if none does."""
    starts = [m.start() for m in re.finditer(r"[\[{]", text)][:_MAX_JSON_STARTS]
    first_err: ParseError | None = None
    decoder = json.JSONDecoder()
    for i in starts:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as err:
            if first_err is None:
                msg = f"invalid JSON: {err.msg} at column {err.colno}"
                first_err = ParseError(fmt, msg, text[i : i + SNIP], (i, len(text)))
            continue
        if isinstance(obj, dict) or (isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj)):
            _add_calls(obj, fmt, res, text[i:end][:SNIP], (i, end))
            return
    if first_err is not None:
        res.errors.append(first_err)


def json_text(obj: object) -> str:
    """``obj`` as JSON text (non-ASCII kept literal); a ValueError names what cannot be serialised."""
    try:
        return json.dumps(obj, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"call arguments are not JSON-serialisable: {err}") from None


def call_objects(calls: list[ToolCall]) -> list[dict]:
    return [{"name": c.name, "arguments": c.arguments} for c in calls]


def call_head(name: str) -> str:
    """The start of a JSON call to ``name``, up to where its arguments object begins."""
    return json.dumps({"name": name})[:-1] + ', "arguments": '
