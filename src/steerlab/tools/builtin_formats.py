"""The built-in tool-call formats, registered in this order (``TOOL_CALL_FORMATS``):

- ``tool_call_json``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen, SmolLM2), one or many
- ``lfm2_pythonic``: ``<|tool_call_start|>[f(a=1, b="x"), g()]<|tool_call_end|>`` (LFM2), read with ``ast``, literals only
- ``functioncall``: ``<functioncall>{json}``
- ``json``: a bare JSON object or list (``arguments``, or Llama-3's ``parameters``)
- ``markdown_json``: JSON in a fenced ``json`` (or untagged) code block
- ``calculator``: ``<tool_call>calculator(12 * 7)</tool_call>`` (the transcoder study's finetuned format); only on
  request, never detected (it shares ``tool_call_json``'s marker)
"""

from __future__ import annotations

import re

from ..base import UserError
from .calls import ParseError, ParseResult, ToolCall
from .formats import JsonBodyFormat, ToolCallFormat, one_or_list, register_format
from .json_calls import SNIP, bare_json, call_head, json_at
from .pythonic import call_list_text, parse_call_list

_ANSWER = " If no tool is needed, answer directly."


@register_format("tool_call_json")
class ToolCallJson(JsonBodyFormat):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one or many (Hermes, Qwen, SmolLM2)."""

    marker, closer = "<tool_call>", "</tool_call>"
    example = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    instruction = (
        'To use a tool, reply with only <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>.'
        + _ANSWER
    )
    schema_constrained = True


@register_format("lfm2_pythonic")
class Lfm2Pythonic(ToolCallFormat):
    """``<|tool_call_start|>[f(a=1, b="x"), g()]<|tool_call_end|>`` (LFM2): read from the syntax tree, literals only."""

    marker, closer = "<|tool_call_start|>", "<|tool_call_end|>"
    example = "<|tool_call_start|>[f(a=1)]<|tool_call_end|>"
    instruction = (
        "To use a tool, reply with only <|tool_call_start|>[tool_name(arg=value)]<|tool_call_end|>." + _ANSWER
    )

    def parse(self, text: str) -> ParseResult:
        res = ParseResult(format=self.name)
        for off, body, closed in self.bodies(text):
            parse_call_list(body, off, self.name, res, closed)
        return res

    def render(self, calls: list[ToolCall]) -> str:
        return f"{self.marker}[{call_list_text(calls, self.name)}]{self.closer}"

    def prefill(self, name: str | None = None) -> str:
        return self.marker if name is None else f"{self.marker}[{name}("


@register_format("functioncall")
class FunctionCall(JsonBodyFormat):
    """``<functioncall>{json}``: a marker and a JSON call (or list), no closer."""

    marker = "<functioncall>"
    example = '<functioncall>{"name": "f", "arguments": {}}'
    instruction = (
        'To use a tool, reply with only <functioncall>{"name": "<tool>", "arguments": {...}}.' + _ANSWER
    )


@register_format("json")
class BareJson(ToolCallFormat):
    """A bare JSON call object or list (``arguments``, or Llama-3's ``parameters``). Its marker ``{`` is too common
    to be evidence, so it is detected last: only when no other format is, from a ``{"name"``-like key."""

    marker = "{"
    example = '{"name": "f", "arguments": {}}'
    instruction = 'To use a tool, reply with only {"name": "<tool>", "arguments": {...}}.' + _ANSWER

    def detect(self, text: str) -> tuple[int, int] | None:
        if re.search(r'\{\s*"', text) and re.search(r'"(name|function)"\s*:', text):
            return (2, 0)
        return None

    def parse(self, text: str) -> ParseResult:
        res = ParseResult(format=self.name)
        bare_json(text, self.name, res)
        return res

    def render(self, calls: list[ToolCall]) -> str:
        return one_or_list(calls)

    def prefill(self, name: str | None = None) -> str:
        return self.marker if name is None else call_head(name)


_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", flags=re.S)
_UNTAGGED_JSON_FENCE = re.compile(r"```[ \t]*\n\s*[\[{]")


@register_format("markdown_json")
class MarkdownJson(ToolCallFormat):
    """JSON in a fenced ``json`` code block; an untagged fence holding JSON is weaker evidence (tier 1)."""

    marker, closer = "```json", "```"
    example = '```json\n{"name": "f", "arguments": {}}\n```'
    instruction = (
        'To use a tool, reply with only a ```json code block holding {"name": "<tool>", "arguments": {...}}.'
        + _ANSWER
    )

    def detect(self, text: str) -> tuple[int, int] | None:
        found = super().detect(text)
        if found is None:
            m = _UNTAGGED_JSON_FENCE.search(text)
            return None if m is None else (1, m.start())
        return found

    def parse(self, text: str) -> ParseResult:
        res = ParseResult(format=self.name)
        for m in _FENCE.finditer(text):
            if m.group(1).lower() not in ("", "json") or not m.group(2).strip():
                continue
            json_at(text[: m.end(2)], m.start(2), self.name, res, tail_ok=False)
        return res

    def render(self, calls: list[ToolCall]) -> str:
        return f"{self.marker}\n{one_or_list(calls)}\n{self.closer}"

    def prefill(self, name: str | None = None) -> str:
        return self.marker if name is None else f"{self.marker}\n{call_head(name)}"


_CALC = re.compile(r"\s*calculator\((.*)\)\s*", flags=re.S)


@register_format("calculator")
class Calculator(ToolCallFormat):
    """``<tool_call>calculator(12 * 7)</tool_call>``: the transcoder study's finetuned format. The expression is
    kept as text (evaluate it with a safe evaluator). Only on request: it shares ``tool_call_json``'s marker."""

    marker, closer = "<tool_call>", "</tool_call>"
    example = "<tool_call>calculator(12 * 7)</tool_call>"
    instruction = (
        "To use the calculator, reply with only <tool_call>calculator(<arithmetic expression>)</tool_call>."
        + _ANSWER
    )
    detectable = False

    def parse(self, text: str) -> ParseResult:
        res = ParseResult(format=self.name)
        for off, body, _closed in self.bodies(text):
            m = _CALC.fullmatch(body)
            if m is None or not m.group(1).strip():
                span = (off, off + len(body))
                res.errors.append(
                    ParseError(self.name, "expected calculator(<expression>)", body[:SNIP], span)
                )
                continue
            res.calls.append(ToolCall("calculator", {"expression": m.group(1).strip()}))
        return res

    def render(self, calls: list[ToolCall]) -> str:
        for c in calls:
            expr = c.arguments.get("expression")
            if c.name != "calculator" or set(c.arguments) != {"expression"} or not isinstance(expr, str):
                raise ValueError(
                    f"the calculator format holds calculator(expression=<str>) only, got {c!r:.80}"
                )
            if ")" in expr and expr.count("(") != expr.count(")"):
                raise ValueError(f"unbalanced parentheses in calculator expression {expr!r}")
        return "".join(f"{self.marker}calculator({c.arguments['expression']}){self.closer}" for c in calls)

    def prefill(self, name: str | None = None) -> str:
        if name not in (None, "calculator"):
            raise UserError(f"the calculator format calls only 'calculator', not {name!r}")
        return self.marker if name is None else f"{self.marker}calculator("
