"""From the model's native call text to OpenAI's shape, and the streaming splitter, without a model."""

from __future__ import annotations

import json

import pytest

from steerlab.serve.engine import Engine, GateInfo, RowOutput
from steerlab.serve.reply import StreamSplitter, completion
from steerlab.tools import render_tool_call

TOOLS = Engine.default_tools()


def out(
    text: str, fmt: str = "tool_call_json", finish: str = "eos", stop_hit: str | None = None
) -> RowOutput:
    return RowOutput(text, finish, 10, 5, GateInfo(True, "math", 0.9, 1, 1.0, 0.6, 21), fmt, stop_hit)


@pytest.mark.parametrize("fmt", ["tool_call_json", "lfm2_pythonic", "functioncall"])
def test_native_calls_become_openai_tool_calls(fmt):
    calls = [
        {"name": "calculator", "arguments": {"expression": "2*3"}},
        {"name": "web_search", "arguments": {"query": "Oslo weather"}},
    ]
    text = render_tool_call(calls if fmt != "functioncall" else calls[0], fmt)
    c = completion(out(text, fmt), "m", TOOLS, parse=True)
    msg = c["choices"][0]["message"]
    want = calls if fmt != "functioncall" else calls[:1]
    assert [tc["function"]["name"] for tc in msg["tool_calls"]] == [w["name"] for w in want]
    assert [json.loads(tc["function"]["arguments"]) for tc in msg["tool_calls"]] == [
        w["arguments"] for w in want
    ]
    assert all(tc["type"] == "function" and tc["id"].startswith("call_") for tc in msg["tool_calls"])
    assert len({tc["id"] for tc in msg["tool_calls"]}) == len(want)
    assert msg["content"] is None and c["choices"][0]["finish_reason"] == "tool_calls"
    assert c["steerlab"]["gate"] == 1 and c["steerlab"]["domain"] == "math"


def test_validation_report_names_schema_problems():
    text = '<tool_call>{"name": "calculator", "arguments": {"expr": 5}}</tool_call>'
    rep = completion(out(text), "m", TOOLS, parse=True)["steerlab"]["calls"][0]
    assert rep["name"] == "calculator" and rep["valid"] is False
    assert any("expression" in p for p in rep["problems"])


def test_broken_call_is_not_returned_and_the_parse_error_is_reported():
    text = 'Let me check. <tool_call>{"name": "calculator", "arguments": {'
    c = completion(out(text, finish="length"), "m", TOOLS, parse=True)
    msg = c["choices"][0]["message"]
    assert msg["content"] == "Let me check." and "tool_calls" not in msg  # never the raw markup
    assert c["choices"][0]["finish_reason"] == "length" and c["steerlab"]["parse_errors"]
    assert "did not parse" in c["steerlab"]["note"]


@pytest.mark.parametrize(
    "call, problem",
    [
        ({"name": "translated_goodnight", "arguments": {"expression": "Good Night"}}, "unknown tool"),
        ({"name": "translator", "arguments": {"text": "good night"}}, "target_language"),
    ],
)
def test_invalid_calls_never_reach_the_agent_as_tool_calls(call, problem):
    valid = {"name": "calculator", "arguments": {"expression": "2*3"}}
    c = completion(out(render_tool_call([call, valid], "tool_call_json")), "m", TOOLS, parse=True)
    msg = c["choices"][0]["message"]
    assert [tc["function"]["name"] for tc in msg["tool_calls"]] == ["calculator"]
    rep = c["steerlab"]
    assert rep["dropped_calls"] == 1 and rep["calls"][0]["valid"] is False
    assert any(problem in x for x in rep["calls"][0]["problems"])
    only_bad = completion(out(render_tool_call(call, "tool_call_json")), "m", TOOLS, parse=True)
    assert "tool_calls" not in only_bad["choices"][0]["message"]
    assert (
        only_bad["choices"][0]["finish_reason"] == "stop"
        and only_bad["choices"][0]["message"]["content"] == ""
    )


def test_tool_choice_none_does_not_parse_and_stop_string_is_cut():
    text = '<tool_call>{"name": "calculator", "arguments": {}}</tool_call>'
    assert completion(out(text), "m", TOOLS, parse=False)["choices"][0]["message"]["content"] == text
    c = completion(out("one two END three", finish="stop", stop_hit="END"), "m", [], parse=False)
    assert c["choices"][0]["message"]["content"] == "one two "


@pytest.mark.parametrize(
    "text",
    [
        "Plain answer, no call at all.",
        'Sure. <tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>',
        "a <tool almost a marker but not",
        "ends with a partial <tool_",
    ],
)
def test_splitter_streams_exactly_the_final_content(text):
    o = out(text)
    final = completion(o, "m", TOOLS, parse=True)["choices"][0]["message"]
    for step in (1, 3, 7):
        sp = StreamSplitter("tool_call_json", (), parse=True)
        sent = "".join(sp.feed(text[i : i + step]) for i in range(0, len(text), step))
        assert "<tool_call>" not in sent
        if final.get("tool_calls"):
            assert sent.strip() == (final["content"] or "")
        else:
            assert sent + sp.rest(final["content"]) == final["content"]


def test_splitter_holds_back_a_stop_string():
    sp = StreamSplitter("tool_call_json", ("STOP",), parse=False)
    got = [sp.feed(x) for x in ("hello S", "TO", "P and more")]
    assert "".join(got) == "hello " and got[0] == "hello "
