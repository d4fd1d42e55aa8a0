"""Parse and render tool calls in every common format; parsing never raises and never evaluates code.

Formats (``TOOL_CALL_FORMATS``, details in ``FORMAT_SPECS``):
- ``tool_call_json``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen, SmolLM2), one or many
- ``lfm2_pythonic``: ``<|tool_call_start|>[f(a=1, b="x"), g()]<|tool_call_end|>`` (LFM2), read with ``ast``, literals only
- ``functioncall``: ``<functioncall>{json}``
- ``json``: a bare JSON object or list (``arguments``, or Llama-3's ``parameters``)
- ``markdown_json``: JSON in a fenced ``json`` (or untagged) code block
- ``calculator``: ``<tool_call>calculator(12 * 7)</tool_call>`` (the transcoder study's finetuned format); only on
  request, never detected (it shares ``tool_call_json``'s marker)

Each registry entry carries everything a method needs about its syntax: the marker whose appearance means "the
model called a tool", the closer that ends a call, the instruction text that teaches it in a system prompt, an
example; parsing, rendering and the stop rules (``steerlab.tools.triggers``) read them from here.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re
from dataclasses import dataclass

from .calls import ParseError, ParseResult, ToolCall


@dataclass(frozen=True)
class ToolCallFormat:
    """A call syntax: the marker whose appearance means "the model called a tool", its closer if any, the
    instruction that teaches it in a system prompt, and an example."""

    name: str
    marker: str
    closer: str | None
    example: str
    instruction: str = ""
    detectable: bool = True  # found by parse_tool_calls(text) without a format


_ANSWER = " If no tool is needed, answer directly."


FORMAT_SPECS: dict[str, ToolCallFormat] = {
    f.name: f
    for f in (
        ToolCallFormat(
            "tool_call_json",
            "<tool_call>",
            "</tool_call>",
            '<tool_call>{"name": "f", "arguments": {}}</tool_call>',
            'To use a tool, reply with only <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>.'
            + _ANSWER,
        ),
        ToolCallFormat(
            "lfm2_pythonic",
            "<|tool_call_start|>",
            "<|tool_call_end|>",
            "<|tool_call_start|>[f(a=1)]<|tool_call_end|>",
            "To use a tool, reply with only <|tool_call_start|>[tool_name(arg=value)]<|tool_call_end|>."
            + _ANSWER,
        ),
        ToolCallFormat(
            "functioncall",
            "<functioncall>",
            None,
            '<functioncall>{"name": "f", "arguments": {}}',
            'To use a tool, reply with only <functioncall>{"name": "<tool>", "arguments": {...}}.' + _ANSWER,
        ),
        ToolCallFormat(
            "json",
            "{",
            None,
            '{"name": "f", "arguments": {}}',
            'To use a tool, reply with only {"name": "<tool>", "arguments": {...}}.' + _ANSWER,
        ),
        ToolCallFormat(
            "markdown_json",
            "```json",
            "```",
            '```json\n{"name": "f", "arguments": {}}\n```',
            'To use a tool, reply with only a ```json code block holding {"name": "<tool>", "arguments": {...}}.'
            + _ANSWER,
        ),
        ToolCallFormat(
            "calculator",
            "<tool_call>",
            "</tool_call>",
            "<tool_call>calculator(12 * 7)</tool_call>",
            "To use the calculator, reply with only <tool_call>calculator(<arithmetic expression>)</tool_call>."
            + _ANSWER,
            detectable=False,
        ),
    )
}
TOOL_CALL_FORMATS: tuple[str, ...] = tuple(FORMAT_SPECS)  # the registry's names, in a stable order
TRIGGER_MODES = ("prefix", "anywhere")
_SNIP = 200
_MAX_JSON_STARTS = 64  # bare-JSON search: how many '{' / '[' positions to try before giving up


def check_format(fmt: str) -> str:
    """``fmt`` itself if it names a known format, else a ValueError listing the known ones."""
    if not isinstance(fmt, str) or fmt not in TOOL_CALL_FORMATS:
        raise ValueError(f"unknown tool-call format {fmt!r}; valid: {', '.join(TOOL_CALL_FORMATS)}")
    return fmt


def trigger_marker(fmt: str) -> str:
    """The literal whose appearance in the output means the model decided to call a tool."""
    return format_spec(fmt).marker


def format_spec(fmt: str) -> ToolCallFormat:
    """The registry entry of ``fmt`` (marker, closer, an example)."""
    return FORMAT_SPECS[check_format(fmt)]


def has_trigger(text: str, fmt: str) -> bool:
    """Whether the call marker of ``fmt`` appears anywhere in ``text``."""
    return trigger_marker(fmt) in text


def could_still_trigger(prefix_text: str, fmt: str, mode: str = "prefix") -> bool:
    """Whether generation must go on to know if the reply triggers a call (False lets a row stop early).

    prefix: a call counts only at the start of the reply, so this is True while the output so far (leading
    whitespace ignored) is a prefix of the marker or contains it. anywhere: the marker may still come later,
    so this is always True; use ``has_trigger`` on the finished text.
    """
    if mode not in TRIGGER_MODES:
        raise ValueError(f"unknown trigger mode {mode!r}; valid: {', '.join(TRIGGER_MODES)}")
    marker = trigger_marker(fmt)
    if mode == "anywhere":
        return True
    s = prefix_text.lstrip()
    return marker in s or marker.startswith(s)


# ---------------------------------------------------------------- JSON


def _call_from_obj(obj: object) -> ToolCall:
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
            res.calls.append(_call_from_obj(item))
        except ValueError as err:
            res.errors.append(ParseError(fmt, str(err), snippet, span))


def _json_at(text: str, start: int, fmt: str, res: ParseResult, tail_ok: bool) -> None:
    """Decode the JSON value that starts at ``text[start]`` (after whitespace) and add its calls.

    ``tail_ok``: text after the value is allowed (a missing closing tag, or free text after the call).
    """
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    try:
        obj, end = json.JSONDecoder().raw_decode(text, i)
    except json.JSONDecodeError as err:
        msg = f"invalid JSON: {err.msg} at column {err.colno}"
        res.errors.append(ParseError(fmt, msg, text[i : i + _SNIP], (i, len(text))))
        return
    if not tail_ok and text[end:].strip():
        msg = f"unexpected text after the JSON call: {text[end:].strip()[:40]!r}"
        res.errors.append(ParseError(fmt, msg, text[i : i + _SNIP], (i, len(text))))
        return
    _add_calls(obj, fmt, res, text[i:end][:_SNIP], (i, end))


def _bare_json(text: str, offset: int, fmt: str, res: ParseResult) -> None:
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
                first_err = ParseError(fmt, msg, text[i : i + _SNIP], (offset + i, offset + len(text)))
            continue
        if isinstance(obj, dict) or (isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj)):
            _add_calls(obj, fmt, res, text[i:end][:_SNIP], (offset + i, offset + end))
            return
    if first_err is not None:
        res.errors.append(first_err)


# ---------------------------------------------------------------- Pythonic (LFM2)

_KEY_TYPES = (str, int, float, bool, type(None))


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
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise ValueError("dict unpacking (**) is not a literal")
            key = _literal(k)
            if not isinstance(key, _KEY_TYPES):
                raise ValueError(
                    f"a dict key must be a string, number, bool or None, got {type(key).__name__}"
                )
            out[key] = _literal(v)
        return out
    if isinstance(node, ast.Name) and node.id in ("true", "false", "null"):  # JSON spellings
        return {"true": True, "false": False, "null": None}[node.id]
    raise ValueError(f"not a literal: {ast.unparse(node)[:80]!r}")


def _dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise ValueError("the called object must be a (dotted) name")


def _parse_call_list(body: str, closed: bool) -> tuple[ast.Expression, str]:
    """The syntax tree of the call list; without a closing tag, free text after the last ``]`` is dropped."""
    try:
        return ast.parse(body, mode="eval"), body
    except SyntaxError:
        if closed:
            raise
        ends = [m.end() for m in re.finditer(r"\]", body)][-20:]
        for end in reversed(ends):
            try:
                return ast.parse(body[:end], mode="eval"), body[:end]
            except SyntaxError:
                continue
        raise


def _pythonic(text: str, offset: int, res: ParseResult, closed: bool = True) -> None:
    fmt = "lfm2_pythonic"
    body = text.strip()
    offset += len(text) - len(text.lstrip())
    try:
        tree, body = _parse_call_list(body, closed)
    except SyntaxError as err:
        res.errors.append(
            ParseError(fmt, f"not a Python call list: {err.msg}", body[:_SNIP], (offset, offset + len(body)))
        )
        return
    node = tree.body
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    line_starts = [0]
    for ln in body.split("\n")[:-1]:
        line_starts.append(line_starts[-1] + len(ln) + 1)
    for item in items:
        snippet = ast.get_source_segment(body, item) or ""
        span = None
        if snippet:  # ast columns count UTF-8 bytes; turn them into character offsets
            line = body.split("\n")[item.lineno - 1]
            col = len(line.encode("utf-8")[: item.col_offset].decode("utf-8", errors="ignore"))
            start = offset + line_starts[item.lineno - 1] + col
            span = (start, start + len(snippet))
        try:
            if not isinstance(item, ast.Call):
                raise ValueError(f"each element must be a call like f(a=1), got {snippet[:60]!r}")
            if item.args:
                raise ValueError("positional arguments are not allowed; use keyword arguments")
            if any(k.arg is None for k in item.keywords):
                raise ValueError("**kwargs is not allowed")
            names = [k.arg for k in item.keywords]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"argument(s) given twice: {', '.join(dup)}")
            res.calls.append(
                ToolCall(_dotted_name(item.func), {k.arg: _literal(k.value) for k in item.keywords})
            )
        except (ValueError, RecursionError) as err:
            res.errors.append(ParseError(fmt, str(err), snippet[:_SNIP], span))


# ---------------------------------------------------------------- calculator

_CALC = re.compile(r"\s*calculator\((.*)\)\s*", flags=re.S)


def _calculator(body: str, offset: int, res: ParseResult) -> None:
    """``calculator(<expression>)``: the expression is kept as text (evaluate it with a safe evaluator)."""
    m = _CALC.fullmatch(body)
    if m is None or not m.group(1).strip():
        res.errors.append(
            ParseError(
                "calculator", "expected calculator(<expression>)", body[:_SNIP], (offset, offset + len(body))
            )
        )
        return
    res.calls.append(ToolCall("calculator", {"expression": m.group(1).strip()}))


# ---------------------------------------------------------------- framing


def _between(text: str, start: str, end: str | None) -> list[tuple[int, str, bool]]:
    """``(offset, body, closed)`` after each ``start`` up to ``end``, or to the next start / end of text."""
    out = []
    pos = 0
    while True:
        i = text.find(start, pos)
        if i < 0:
            return out
        j0 = i + len(start)
        j = text.find(end, j0) if end else -1
        nxt = text.find(start, j0)
        if j < 0 or (0 <= nxt < j):
            j = nxt if nxt >= 0 else len(text)
            out.append((j0, text[j0:j], False))
            pos = j
        else:
            out.append((j0, text[j0:j], True))
            pos = j + len(end)


_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", flags=re.S)


def _parse_fmt(text: str, fmt: str) -> ParseResult:
    res = ParseResult(format=fmt)
    if fmt == "tool_call_json":
        for off, body, closed in _between(text, "<tool_call>", "</tool_call>"):
            if not body.strip():
                res.errors.append(ParseError(fmt, "empty <tool_call>", "", (off, off + len(body))))
            else:
                _json_at(text[: off + len(body)], off, fmt, res, tail_ok=not closed)
    elif fmt == "lfm2_pythonic":
        for off, body, closed in _between(text, "<|tool_call_start|>", "<|tool_call_end|>"):
            _pythonic(body, off, res, closed)
    elif fmt == "calculator":
        for off, body, _closed in _between(text, "<tool_call>", "</tool_call>"):
            _calculator(body, off, res)
    elif fmt == "functioncall":
        for off, body, _closed in _between(text, "<functioncall>", None):
            if not body.strip():
                res.errors.append(ParseError(fmt, "no JSON after <functioncall>", "", (off, off)))
            else:
                _json_at(text[: off + len(body)], off, fmt, res, tail_ok=True)
    elif fmt == "markdown_json":
        for m in _FENCE.finditer(text):
            if m.group(1).lower() not in ("", "json") or not m.group(2).strip():
                continue
            off = m.start(2)
            _json_at(text[: m.end(2)], off, fmt, res, tail_ok=False)
    else:
        _bare_json(text, 0, fmt, res)
    return res


def _detect(text: str) -> str | None:
    """The format whose call syntax appears in ``text``: the earliest marker wins."""
    found = [
        (text.find(f.marker), name) for name, f in FORMAT_SPECS.items() if name != "json" and f.detectable
    ]
    found = [(i, name) for i, name in found if i >= 0]
    if not found and re.search(r"```[ \t]*\n\s*[\[{]", text):  # untagged fence holding JSON
        return "markdown_json"
    if found:
        return min(found)[1]
    if re.search(r'\{\s*"', text) and re.search(r'"(name|function)"\s*:', text):
        return "json"
    return None


def parse_tool_calls(text: str, fmt: str | None = None) -> ParseResult:
    """Calls found in ``text`` (``fmt=None`` detects the format); malformed calls become ``errors``.

    Never raises on any text and never evaluates it: Pythonic calls are read from the syntax tree and only
    literal values are accepted. An unknown ``fmt`` is a ValueError (a caller's mistake, not the model's).
    """
    if fmt is not None:
        check_format(fmt)
    if not isinstance(text, str):
        return ParseResult(
            format=fmt, errors=[ParseError(fmt or "?", f"expected text, got {type(text).__name__}")]
        )
    try:
        use = fmt or _detect(text)
        if use is None:
            return ParseResult()
        return _parse_fmt(text, use)
    except (RecursionError, MemoryError, ValueError, TypeError) as err:  # pathological nesting, huge numbers
        return ParseResult(
            format=fmt, errors=[ParseError(fmt or "?", f"could not parse: {type(err).__name__}")]
        )


# ---------------------------------------------------------------- rendering


_SURROGATE = re.compile("[\ud800-\udfff]")


def _py_literal(v: object) -> str:
    if isinstance(v, str):  # a JSON string is a valid Python literal (non-ASCII kept literal)
        # a lone surrogate cannot be encoded as source text (ast.parse fails): written as its escape
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(v, ensure_ascii=False))
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot render the non-finite number {v!r} in a Pythonic call")
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_py_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"cannot render a value of type {type(v).__name__} in a Pythonic call")


def _json_text(obj: object) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"call arguments are not JSON-serialisable: {err}") from None


def _is_ident(s: object) -> bool:
    return isinstance(s, str) and s.isidentifier() and not keyword.iskeyword(s)


def render_tool_call(call: ToolCall | dict | list, fmt: str) -> str:
    """Text of one call (or a list of calls) in ``fmt``; ``parse_tool_calls(render_tool_call(c, f), f)`` gives c."""
    check_format(fmt)
    calls = call if isinstance(call, list) else [call]
    calls = [c if isinstance(c, ToolCall) else _call_from_obj(c) for c in calls]
    if fmt == "lfm2_pythonic":
        for c in calls:
            if not all(_is_ident(part) for part in c.name.split(".")):
                raise ValueError(
                    f"tool name {c.name!r} is not a (dotted) Python identifier; lfm2_pythonic needs one"
                )
            bad = [k for k in c.arguments if not _is_ident(k)]
            if bad:
                raise ValueError(
                    f"argument names {bad!r} are not Python identifiers; lfm2_pythonic needs them"
                )
        inner = ", ".join(
            f"{c.name}({', '.join(f'{k}={_py_literal(v)}' for k, v in c.arguments.items())})" for c in calls
        )
        return f"<|tool_call_start|>[{inner}]<|tool_call_end|>"
    if fmt == "calculator":
        for c in calls:
            expr = c.arguments.get("expression")
            if c.name != "calculator" or set(c.arguments) != {"expression"} or not isinstance(expr, str):
                raise ValueError(
                    f"the calculator format holds calculator(expression=<str>) only, got {c!r:.80}"
                )
            if ")" in expr and expr.count("(") != expr.count(")"):
                raise ValueError(f"unbalanced parentheses in calculator expression {expr!r}")
        return "".join(f"<tool_call>calculator({c.arguments['expression']})</tool_call>" for c in calls)
    objs = [{"name": c.name, "arguments": c.arguments} for c in calls]
    if fmt == "tool_call_json":
        return "".join(f"<tool_call>{_json_text(o)}</tool_call>" for o in objs)
    body = _json_text(objs[0] if len(objs) == 1 else objs)
    if fmt == "functioncall":
        return f"<functioncall>{body}"
    if fmt == "markdown_json":
        return f"```json\n{body}\n```"
    return body
