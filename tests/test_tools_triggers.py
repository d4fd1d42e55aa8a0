"""Trigger decisions, stop rules and call checks on generated text (steerlab.tools.triggers), for any format."""

import pytest

from steerlab.data.asa_data import load_asa_tools
from steerlab.tools import (
    call_complete,
    call_stop,
    call_success,
    could_still_trigger,
    decision_stop,
    is_triggered,
)


def test_triggers_and_call_success():
    fmt = "tool_call_json"
    assert is_triggered(' <tool_call>{"name"', fmt) and not is_triggered("Sure <tool_call>", fmt)
    assert is_triggered("Sure <tool_call>", fmt, mode="anywhere")
    stop = decision_stop(fmt)
    assert stop("The") and stop("<tool_call>") and not stop("<tool")
    cstop = call_stop(fmt)
    assert (
        not cstop('<tool_call>{"name": "x"') and cstop('<tool_call>{"name": "x"}</tool_call>') and cstop("No")
    )
    tools = load_asa_tools()
    ok = '<tool_call>{"name": "calculator", "arguments": {"expression": "2*3"}}</tool_call>'
    assert call_success(ok, fmt, tools, "calculator") == (True, "ok")
    assert call_success(ok, fmt, tools, "web_search")[1] == "called calculator, expected web_search"
    assert not call_success(
        '<tool_call>{"name": "calculator", "arguments": {}}</tool_call>', fmt, tools, None
    )[0]


def test_stop_rules_follow_the_format():
    """A format without a closer never knows its call is complete before the end; prefix mode stops a reply that
    can no longer start with the marker, anywhere mode never does."""
    fc = "functioncall"
    assert not call_complete('<functioncall>{"name": "f", "arguments": {}}', fc)
    assert call_stop(fc)("Sure") and not call_stop(fc)('<functioncall>{"name": "f"}')
    assert decision_stop(fc, mode="anywhere") is None
    assert not call_stop("tool_call_json", mode="anywhere")("Sure")
    lfm = "lfm2_pythonic"
    assert decision_stop(lfm)("<|tool_call_start|>") and not decision_stop(lfm)("<|tool_call")
    assert call_complete("<|tool_call_start|>[f()]<|tool_call_end|>", lfm)
    assert could_still_trigger("  <|tool", lfm) and not could_still_trigger("[f()]", lfm)
    with pytest.raises(ValueError, match="unknown trigger mode 'start'"):
        call_stop(fc, mode="start")
