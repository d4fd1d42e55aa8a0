"""Pythonic calls (LFM2's ``[f(a=1, b="x"), g()]``): read from the syntax tree, literals only; and written back.

Reading never evaluates the text: ``ast.parse`` builds the tree and only literal values (strings, numbers, bools,
None, lists, tuples, dicts, a sign on a number, and JSON's true/false/null) are accepted as arguments.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re

from .calls import ParseError, ParseResult, ToolCall
from .json_calls import SNIP

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


def parse_call_list(text: str, offset: int, fmt: str, res: ParseResult, closed: bool = True) -> None:
    """Add the calls of a Pythonic call list (``text``, found at ``offset`` of the parsed text) to ``res``."""
    body = text.strip()
    offset += len(text) - len(text.lstrip())
    try:
        tree, body = _parse_call_list(body, closed)
    except SyntaxError as err:
        res.errors.append(
            ParseError(fmt, f"not a Python call list: {err.msg}", body[:SNIP], (offset, offset + len(body)))
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
            res.errors.append(ParseError(fmt, str(err), snippet[:SNIP], span))


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


def _is_ident(s: object) -> bool:
    return isinstance(s, str) and s.isidentifier() and not keyword.iskeyword(s)


def call_list_text(calls: list[ToolCall], fmt: str) -> str:
    """``f(a=1), g(b="x")``: the calls as Python keyword calls (a ValueError for what could not be read back)."""
    for c in calls:
        if not all(_is_ident(part) for part in c.name.split(".")):
            raise ValueError(f"tool name {c.name!r} is not a (dotted) Python identifier; {fmt} needs one")
        bad = [k for k in c.arguments if not _is_ident(k)]
        if bad:
            raise ValueError(f"argument names {bad!r} are not Python identifiers; {fmt} needs them")
    return ", ".join(
        f"{c.name}({', '.join(f'{k}={_py_literal(v)}' for k, v in c.arguments.items())})" for c in calls
    )
