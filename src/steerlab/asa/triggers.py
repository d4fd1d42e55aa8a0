"""Trigger decisions and call checks on generated text, in the model's tool-call format."""

from __future__ import annotations

from collections.abc import Callable

from ..tools import could_still_trigger, has_trigger, parse_tool_calls, trigger_marker, validate_call


def is_triggered(text: str, fmt: str, mode: str = "prefix") -> bool:
    """prefix: the reply starts with the call marker; anywhere: the marker appears somewhere."""
    if mode == "prefix":
        return text.lstrip().startswith(trigger_marker(fmt))
    return has_trigger(text, fmt)


def decision_stop(fmt: str, mode: str = "prefix") -> Callable[[str], bool] | None:
    """Stop a row as soon as the trigger decision is known (prefix mode only)."""
    if mode != "prefix":
        return None
    marker = trigger_marker(fmt)
    return lambda text: marker in text or not could_still_trigger(text, fmt)


def call_stop(fmt: str, mode: str = "prefix") -> Callable[[str], bool]:
    """Stop a non-triggered row early, let a triggered row finish its call."""
    marker = trigger_marker(fmt)
    closers = {"tool_call_json": "</tool_call>", "lfm2_pythonic": "<|tool_call_end|>"}
    closer = closers.get(fmt)

    def stop(text: str) -> bool:
        if marker in text:
            return closer is not None and closer in text.split(marker, 1)[1]
        return mode == "prefix" and not could_still_trigger(text, fmt)

    return stop


def call_success(text: str, fmt: str, tools: list[dict], expected_tool: str | None) -> tuple[bool, str]:
    """A triggered call counts as a success when it parses, validates against the schema and names the right tool."""
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
