"""Tool calls: parsing and rendering for every common format, schema validation, trigger detection."""

from .ast_match import ast_match, values_match
from .calls import ParseError, ParseResult, ToolCall
from .formats import (
    TOOL_CALL_FORMATS,
    check_format,
    could_still_trigger,
    has_trigger,
    parse_tool_calls,
    render_tool_call,
    trigger_marker,
)
from .validate import tool_spec, validate_call

__all__ = [
    "TOOL_CALL_FORMATS",
    "ParseError",
    "ParseResult",
    "ToolCall",
    "ast_match",
    "values_match",
    "check_format",
    "could_still_trigger",
    "has_trigger",
    "parse_tool_calls",
    "render_tool_call",
    "tool_spec",
    "trigger_marker",
    "validate_call",
]
