"""Trigger decisions, stop rules and call checks on generated text, for any registered tool-call format.

"prefix" mode: a reply triggers a call when it starts with the format's marker (leading whitespace aside);
"anywhere": when the marker appears anywhere. The stop rules let a batch stop a row as soon as its decision (or its
call) is complete, which is most of the speed of a trigger evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

from .formats import check_mode, format_spec, parse_tool_calls
from .validate import validate_call


def is_triggered(text: str, fmt: str, mode: str = "prefix") -> bool:
    """prefix: the reply starts with the call marker; anywhere: the marker appears somewhere."""
    return format_spec(fmt).triggered(text, mode)


def decision_stop(fmt: str, mode: str = "prefix") -> Callable[[str], bool] | None:
    """Stop a row as soon as the trigger decision is known (prefix mode only)."""
    if check_mode(mode) != "prefix":
        return None
    spec = format_spec(fmt)
    return lambda text: spec.marker in text or not spec.could_still_trigger(text)


def call_complete(text: str, fmt: str) -> bool:
    """Whether the first call in ``text`` is closed (formats without a closer: never known before the end)."""
    return format_spec(fmt).call_complete(text)


def call_stop(fmt: str, mode: str = "prefix") -> Callable[[str], bool]:
    """Stop a non-triggered row early (prefix mode), let a triggered row finish its call."""
    spec = format_spec(fmt)
    check_mode(mode)

    def stop(text: str) -> bool:
        if spec.marker in text:
            return spec.call_complete(text)
        return mode == "prefix" and not spec.could_still_trigger(text)

    return stop


def call_success(text: str, fmt: str, tools: list[dict], expected_tool: str | None) -> tuple[bool, str]:
    """A triggered call succeeds when it parses, validates against the schema and names the right tool."""
    res = parse_tool_calls(text, fmt)
    if not res.calls:
        return False, "no parsable call" + (f": {res.errors[0].message}" if res.errors else "")
    call = res.calls[0]
    problems = validate_call(call, tools)
    if problems:
        return False, "; ".join(problems)
    if expected_tool is not None and call.name != expected_tool:
        return False, f"called {call.name}, expected {expected_tool}"
    return True, "ok"
