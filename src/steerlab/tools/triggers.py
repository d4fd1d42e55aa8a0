"""Trigger decisions, stop rules and call checks on generated text, for any registered tool-call format.

"prefix" mode: a reply triggers a call when it starts with the format's marker (leading whitespace aside);
"anywhere": when the marker appears anywhere. The stop rules let a batch stop a row as soon as its decision (or its
call) is complete, which is most of the speed of a trigger evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

from .formats import TRIGGER_MODES, could_still_trigger, format_spec, has_trigger, parse_tool_calls
from .validate import validate_call


def _check_mode(mode: str) -> str:
    if mode not in TRIGGER_MODES:
        raise ValueError(f"unknown trigger mode {mode!r}; valid: {', '.join(TRIGGER_MODES)}")
    return mode


def is_triggered(text: str, fmt: str, mode: str = "prefix") -> bool:
    """prefix: the reply starts with the call marker; anywhere: the marker appears somewhere."""
    if _check_mode(mode) == "prefix":
        return text.lstrip().startswith(format_spec(fmt).marker)
    return has_trigger(text, fmt)


def decision_stop(fmt: str, mode: str = "prefix") -> Callable[[str], bool] | None:
    """Stop a row as soon as the trigger decision is known (prefix mode only)."""
    if _check_mode(mode) != "prefix":
        return None
    marker = format_spec(fmt).marker
    return lambda text: marker in text or not could_still_trigger(text, fmt)


def call_complete(text: str, fmt: str) -> bool:
    """Whether the first call in ``text`` is closed (formats without a closer: never known before the end)."""
    spec = format_spec(fmt)
    if spec.marker not in text or spec.closer is None:
        return False
    return spec.closer in text.split(spec.marker, 1)[1]


def call_stop(fmt: str, mode: str = "prefix") -> Callable[[str], bool]:
    """Stop a non-triggered row early (prefix mode), let a triggered row finish its call."""
    marker = format_spec(fmt).marker
    _check_mode(mode)

    def stop(text: str) -> bool:
        if marker in text:
            return call_complete(text, fmt)
        return mode == "prefix" and not could_still_trigger(text, fmt)

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
