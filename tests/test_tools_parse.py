import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steerlab.tools import (
    TOOL_CALL_FORMATS,
    ToolCall,
    could_still_trigger,
    parse_tool_calls,
    render_tool_call,
    validate_call,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
    {
        "name": "translator",
        "parameters": {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "target_language": {"type": "string", "enum": ["French", "German"]},
                "n": {"type": "integer"},
                "score": {"type": "number"},
            },
            "required": ["text", "target_language"],
        },
    },
]


def test_tool_call_json_one_and_many():
    r = parse_tool_calls('<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>')
    assert r.format == "tool_call_json" and r.calls == [ToolCall("calculator", {"expression": "2+2"})]
    two = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": "{\\"x\\": 1}"}</tool_call>'
    )
    assert [c.name for c in two.calls] == ["a", "b"] and two.calls[1].arguments == {"x": 1}
    unclosed = parse_tool_calls('<tool_call>{"name": "a", "arguments": {"k": "v"}}')
    assert unclosed.calls == [ToolCall("a", {"k": "v"})]


def test_lfm2_pythonic_nested_and_tricky_strings():
    text = (
        '<|tool_call_start|>[search(query="a [b], c", opts={"k": [1, 2, {"z": None}]}, n=-3), '
        "calc(expr='it\\'s (1+2)*3', flag=True), ping()]<|tool_call_end|>"
    )
    r = parse_tool_calls(text)
    assert r.format == "lfm2_pythonic" and not r.errors
    assert r.calls[0] == ToolCall(
        "search", {"query": "a [b], c", "opts": {"k": [1, 2, {"z": None}]}, "n": -3}
    )
    assert r.calls[1] == ToolCall("calc", {"expr": "it's (1+2)*3", "flag": True})
    assert r.calls[2] == ToolCall("ping", {})


def test_lfm2_never_executes_and_reports_errors():
    r = parse_tool_calls("<|tool_call_start|>[f(a=__import__('os').system('echo hi'))]<|tool_call_end|>")
    assert r.calls == [] and "not a literal" in r.errors[0].message
    assert "positional" in parse_tool_calls("<|tool_call_start|>[f(1)]<|tool_call_end|>").errors[0].message
    assert parse_tool_calls("<|tool_call_start|>[f(a=1<|tool_call_end|>").errors[0].format == "lfm2_pythonic"


def test_other_formats():
    assert parse_tool_calls('<functioncall>{"name": "f", "arguments": {"a": 1}} trailing').calls == [
        ToolCall("f", {"a": 1})
    ]
    llama = parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Oslo"}}')
    assert llama.format == "json" and llama.calls == [ToolCall("get_weather", {"city": "Oslo"})]
    md = parse_tool_calls(
        'Sure:\n```json\n[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]\n```'
    )
    assert md.format == "markdown_json" and [c.name for c in md.calls] == ["f", "g"]
    bad = parse_tool_calls("<tool_call>{not json}</tool_call>")
    assert bad.calls == [] and "invalid JSON" in bad.errors[0].message
    assert parse_tool_calls("The answer is 42.").calls == []
    with pytest.raises(ValueError, match="unknown tool-call format 'xml'"):
        parse_tool_calls("x", "xml")


def test_could_still_trigger():
    assert could_still_trigger("", "tool_call_json") and could_still_trigger("  <tool", "tool_call_json")
    assert not could_still_trigger("The", "tool_call_json")
    assert could_still_trigger('<tool_call>{"na', "tool_call_json")


def test_validation():
    assert validate_call(ToolCall("calculator", {"expression": "1+1"}), TOOLS) == []
    assert "unknown tool 'calc'" in validate_call(ToolCall("calc", {}), TOOLS)[0]
    assert validate_call(ToolCall("calculator", {}), TOOLS) == ["missing required argument 'expression'"]
    probs = validate_call(
        ToolCall("translator", {"text": 3, "target_language": "Klingon", "n": 1.5, "x": 1}), TOOLS
    )
    assert any("'text' should be of type string" in p for p in probs)
    assert any("not one of ['French', 'German']" in p for p in probs)
    assert any("'n' should be of type integer" in p for p in probs)
    assert any("unknown argument 'x'" in p for p in probs)
    ok_num = ToolCall("translator", {"text": "hi", "target_language": "French", "score": 2})
    assert validate_call(ok_num, TOOLS) == []
    assert (
        validate_call(ToolCall("calculator", {"expression": "1", "y": 2}), TOOLS, allow_unknown_args=True)
        == []
    )


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parser_never_raises(text):
    for fmt in (None, *TOOL_CALL_FORMATS):
        parse_tool_calls(text, fmt)
        parse_tool_calls("<tool_call>" + text, fmt)
        parse_tool_calls("<|tool_call_start|>[" + text, fmt)


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)
_json_val = st.recursive(
    _json_leaf,
    lambda ch: st.one_of(st.lists(ch, max_size=3), st.dictionaries(st.text(max_size=5), ch, max_size=3)),
    max_leaves=8,
)
_ident = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(_ident, st.dictionaries(_ident, _json_val, max_size=4), st.sampled_from(TOOL_CALL_FORMATS))
def test_render_parse_round_trip(name, args, fmt):
    call = ToolCall(name, args)
    back = parse_tool_calls(render_tool_call(call, fmt), fmt)
    assert back.errors == [] and back.calls == [call]
