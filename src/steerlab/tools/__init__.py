"""Tool calls: a registered class per call format (parse, render, stop rules, prefill), schema validation,
trigger detection."""

from . import builtin_formats  # noqa: F401 - registers the built-in call formats
from .ast_match import ast_match, values_match
from .calls import ParseError, ParseResult, ToolCall
from .formats import (
    FORMAT_SPECS,
    TOOL_CALL_FORMATS,
    TRIGGER_MODES,
    JsonBodyFormat,
    ToolCallFormat,
    check_format,
    could_still_trigger,
    format_spec,
    has_trigger,
    parse_tool_calls,
    register_format,
    render_tool_call,
    schema_constrained_formats,
    trigger_marker,
)
from .triggers import call_complete, call_stop, call_success, decision_stop, is_triggered
from .validate import TYPE_ALIASES, normalize_schema, tool_spec, validate_call

__all__ = [
    "FORMAT_SPECS",
    "TOOL_CALL_FORMATS",
    "TRIGGER_MODES",
    "TYPE_ALIASES",
    "JsonBodyFormat",
    "ParseError",
    "ParseResult",
    "ToolCall",
    "ToolCallFormat",
    "ast_match",
    "call_complete",
    "call_stop",
    "call_success",
    "decision_stop",
    "is_triggered",
    "check_format",
    "could_still_trigger",
    "format_spec",
    "has_trigger",
    "normalize_schema",
    "parse_tool_calls",
    "register_format",
    "render_tool_call",
    "schema_constrained_formats",
    "tool_spec",
    "trigger_marker",
    "validate_call",
    "values_match",
]
