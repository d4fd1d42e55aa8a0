import pytest

from steerlab.tools import (
    TOOL_CALL_FORMATS,
    ToolCall,
    could_still_trigger,
    format_spec,
    has_trigger,
    parse_tool_calls,
    render_tool_call,
    trigger_marker,
)

# ------------------------------------------------------------------ tool_call_json


def test_tool_call_json_one_and_many():
    r = parse_tool_calls('<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>')
    assert r.format == "tool_call_json" and r.errors == []
    assert r.calls == [ToolCall("calculator", {"expression": "2+2"})]
    two = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": "{\\"x\\": 1}"}\n</tool_call>'
    )
    assert two.calls == [ToolCall("a", {}), ToolCall("b", {"x": 1})]  # OpenAI-style string arguments decoded


def test_tool_call_json_missing_closer_and_trailing_text():
    assert parse_tool_calls('<tool_call>{"name": "a", "arguments": {"k": "v"}}').calls == [
        ToolCall("a", {"k": "v"})
    ]
    # no closer: free text after the object is the model talking on, not part of the call
    r = parse_tool_calls('<tool_call>{"name": "a", "arguments": {}}\nLet me know')
    assert r.calls == [ToolCall("a", {})] and r.errors == []
    # with a closer, text inside the tags after the object is an error
    bad = parse_tool_calls('<tool_call>{"name": "a"} junk</tool_call>')
    assert bad.calls == [] and bad.errors[0].message == "unexpected text after the JSON call: 'junk'"


def test_tool_call_json_errors_are_structured():
    text = 'ok <tool_call>{not json}</tool_call> <tool_call>{"arguments": {}}</tool_call>'
    r = parse_tool_calls(text)
    assert r.calls == [] and len(r.errors) == 2
    e0, e1 = r.errors
    assert (
        e0.format == "tool_call_json"
        and e0.message == "invalid JSON: Expecting property name enclosed in double quotes at column 16"
    )
    assert text[e0.span[0] : e0.span[1]] == "{not json}" and e0.snippet == "{not json}"
    assert e1.message == "a call needs a non-empty string 'name', got None"
    assert text[e1.span[0] : e1.span[1]] == '{"arguments": {}}'
    assert parse_tool_calls("<tool_call></tool_call>").errors[0].message == "empty <tool_call>"
    nondict = parse_tool_calls('<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>')
    assert nondict.errors[0].message == "'arguments' must be an object, got list"
    badstr = parse_tool_calls('<tool_call>{"name": "f", "arguments": "{oops"}</tool_call>')
    assert badstr.errors[0].message.startswith("'arguments' is a string but not valid JSON")


# ------------------------------------------------------------------ lfm2_pythonic


def test_lfm2_pythonic_nested_and_tricky_strings():
    text = (
        '<|tool_call_start|>[search(query="a [b], c", opts={"k": [1, 2, {"z": None}]}, n=-3), '
        "calc(expr='it\\'s (1+2)*3, \"q\"', flag=True, t=(1, 2.5)), ping()]<|tool_call_end|>"
    )
    r = parse_tool_calls(text)
    assert r.format == "lfm2_pythonic" and r.errors == []
    assert r.calls == [
        ToolCall("search", {"query": "a [b], c", "opts": {"k": [1, 2, {"z": None}]}, "n": -3}),
        ToolCall("calc", {"expr": 'it\'s (1+2)*3, "q"', "flag": True, "t": [1, 2.5]}),
        ToolCall("ping", {}),
    ]


def test_lfm2_pythonic_single_call_dotted_name_json_spellings():
    r = parse_tool_calls("<|tool_call_start|>math.hypot(x=3, y=+4.0, ok=true, nothing=null)<|tool_call_end|>")
    assert r.calls == [ToolCall("math.hypot", {"x": 3, "y": 4.0, "ok": True, "nothing": None})]


def test_lfm2_pythonic_free_text_after_an_unclosed_list():
    r = parse_tool_calls('<|tool_call_start|>[f(a=[1]), g(b="]")] Done, I called it.')
    assert r.calls == [ToolCall("f", {"a": [1]}), ToolCall("g", {"b": "]"})] and r.errors == []


def test_lfm2_never_executes_and_reports_errors(tmp_path):
    marker = tmp_path / "pwned"
    text = f"<|tool_call_start|>[f(a=__import__('os').system('touch {marker}')), g(b=1)]<|tool_call_end|>"
    r = parse_tool_calls(text)
    assert not marker.exists()
    assert r.calls == [ToolCall("g", {"b": 1})]  # the good call survives next to the bad one
    assert r.errors[0].message.startswith("not a literal: ")
    assert text[r.errors[0].span[0] : r.errors[0].span[1]] == r.errors[0].snippet
    assert r.errors[0].snippet.startswith("f(a=__import__")

    def first_error(body: str) -> str:
        return parse_tool_calls(f"<|tool_call_start|>{body}<|tool_call_end|>").errors[0].message

    assert first_error("[f(a=os.system('x'))]") == "not a literal: \"os.system('x')\""
    assert first_error("[f(1)]") == "positional arguments are not allowed; use keyword arguments"
    assert first_error("[f(**d)]") == "**kwargs is not allowed"
    assert first_error("[f(a={**d})]") == "dict unpacking (**) is not a literal"
    assert first_error("[f(a={[1]: 2})]") == "a dict key must be a string, number, bool or None, got list"
    assert first_error("[f(a=1+2)]") == "not a literal: '1 + 2'"
    assert first_error("[f(a=lambda: 0)]") == "not a literal: 'lambda: 0'"
    assert first_error("[42]") == "each element must be a call like f(a=1), got '42'"
    assert first_error("[f()(a=1)]") == "the called object must be a (dotted) name"
    assert first_error("[f(a=1]").startswith("not a Python call list: ")
    assert first_error("[f(a=1, b=2, a=3)]") == "argument(s) given twice: a"


def test_lfm2_span_counts_characters_not_bytes():
    text = '<|tool_call_start|>[ü(a="é"), g(1)]<|tool_call_end|>'
    r = parse_tool_calls(text)
    assert r.calls == [ToolCall("ü", {"a": "é"})]
    s, e = r.errors[0].span
    assert text[s:e] == "g(1)"


# ------------------------------------------------------------------ functioncall, json, markdown_json


def test_functioncall():
    r = parse_tool_calls('<functioncall>{"name": "f", "arguments": {"q": "say \\"hi\\" }"}} trailing')
    assert r.format == "functioncall" and r.calls == [ToolCall("f", {"q": 'say "hi" }'})]
    assert parse_tool_calls("<functioncall>   ").errors[0].message == "no JSON after <functioncall>"


def test_bare_json_llama_openai_and_lists():
    llama = parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Oslo"}}')
    assert llama.format == "json" and llama.calls == [ToolCall("get_weather", {"city": "Oslo"})]
    openai = parse_tool_calls('{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": 2}"}}')
    assert openai.calls == [ToolCall("f", {"a": 2})]
    prose = parse_tool_calls(
        'Sure [1] here: [{"name": "f", "arguments": {"a": 1}}, {"name": "g"}] ok', "json"
    )
    assert prose.calls == [ToolCall("f", {"a": 1}), ToolCall("g", {})]
    assert parse_tool_calls("{broken", "json").errors[0].message.startswith("invalid JSON")


def test_markdown_json():
    md = parse_tool_calls(
        'Sure:\n```json\n[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]\n```'
    )
    assert md.format == "markdown_json" and [c.name for c in md.calls] == ["f", "g"]
    untagged = parse_tool_calls('```\n{"name": "f", "arguments": {"x": [1]}}\n```')
    assert untagged.format == "markdown_json" and untagged.calls == [ToolCall("f", {"x": [1]})]
    python_block = parse_tool_calls("```python\nprint({1: 2})\n```", "markdown_json")
    assert python_block.calls == [] and python_block.errors == []  # other languages are not calls
    unclosed = parse_tool_calls('```json\n{"name": "f", "arguments": {}}', "markdown_json")
    assert unclosed.calls == [ToolCall("f", {})]


def test_plain_text_and_unknown_format():
    r = parse_tool_calls("The answer is 42 (or {about} that).")
    assert r.calls == [] and r.errors == [] and r.format is None
    with pytest.raises(
        ValueError, match="unknown tool-call format 'xml'; valid: tool_call_json, lfm2_pythonic"
    ):
        parse_tool_calls("x", "xml")
    with pytest.raises(ValueError, match="unknown tool-call format 'yaml'"):
        render_tool_call(ToolCall("f"), "yaml")
    assert parse_tool_calls(None).errors[0].message == "expected text, got NoneType"  # type: ignore[arg-type]


def test_detection_earliest_marker_wins():
    text = 'I will call <functioncall>{"name": "f"} then <tool_call>{"name": "g"}</tool_call>'
    assert parse_tool_calls(text).format == "functioncall"
    assert parse_tool_calls(text, "tool_call_json").calls == [ToolCall("g", {})]


# ------------------------------------------------------------------ rendering and triggers


def test_render_exact_text():
    call = ToolCall("f", {"a": 1, "b": "x y", "c": [True, None]})
    assert render_tool_call(call, "tool_call_json") == (
        '<tool_call>{"name": "f", "arguments": {"a": 1, "b": "x y", "c": [true, null]}}</tool_call>'
    )
    assert render_tool_call(call, "lfm2_pythonic") == (
        '<|tool_call_start|>[f(a=1, b="x y", c=[True, None])]<|tool_call_end|>'
    )
    assert render_tool_call(call, "functioncall").startswith('<functioncall>{"name": "f"')
    assert render_tool_call([ToolCall("f"), ToolCall("g")], "json") == (
        '[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]'
    )
    assert render_tool_call({"name": "f", "arguments": {}}, "markdown_json") == (
        '```json\n{"name": "f", "arguments": {}}\n```'
    )


def test_render_refuses_what_cannot_round_trip():
    with pytest.raises(ValueError, match="tool name 'get-weather' is not a \\(dotted\\) Python identifier"):
        render_tool_call(ToolCall("get-weather", {}), "lfm2_pythonic")
    with pytest.raises(ValueError, match="argument names \\['class'\\] are not Python identifiers"):
        render_tool_call(ToolCall("f", {"class": 1}), "lfm2_pythonic")
    with pytest.raises(ValueError, match="non-finite number inf"):
        render_tool_call(ToolCall("f", {"a": float("inf")}), "lfm2_pythonic")
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        render_tool_call(ToolCall("f", {"a": {1, 2}}), "tool_call_json")


def test_markers_and_registry():
    assert TOOL_CALL_FORMATS == (
        "tool_call_json",
        "lfm2_pythonic",
        "functioncall",
        "json",
        "markdown_json",
        "calculator",
    )
    for fmt in TOOL_CALL_FORMATS:  # every format carries what a prompt and a stop rule need
        spec = format_spec(fmt)
        assert spec.instruction.startswith("To use") and spec.marker in spec.example
    assert trigger_marker("tool_call_json") == "<tool_call>"
    assert trigger_marker("lfm2_pythonic") == "<|tool_call_start|>"
    assert trigger_marker("functioncall") == "<functioncall>"
    assert format_spec("lfm2_pythonic").closer == "<|tool_call_end|>"
    for fmt in TOOL_CALL_FORMATS:  # every registry example parses to exactly one call
        assert len(parse_tool_calls(format_spec(fmt).example, fmt).calls) == 1
    assert has_trigger("Sure. <tool_call>{", "tool_call_json") and not has_trigger("<tool", "tool_call_json")
    with pytest.raises(ValueError, match="unknown tool-call format 'hermes'"):
        trigger_marker("hermes")


def test_could_still_trigger():
    assert could_still_trigger("", "tool_call_json") and could_still_trigger("  <tool", "tool_call_json")
    assert not could_still_trigger("The", "tool_call_json")
    assert not could_still_trigger("<tools", "tool_call_json")
    assert could_still_trigger('<tool_call>{"na', "tool_call_json")
    assert could_still_trigger("<|tool_call", "lfm2_pythonic") and not could_still_trigger(
        "[f()]", "lfm2_pythonic"
    )
    assert could_still_trigger("The", "tool_call_json", mode="anywhere")
    with pytest.raises(ValueError, match="unknown trigger mode 'start'; valid: prefix, anywhere"):
        could_still_trigger("", "tool_call_json", mode="start")


def test_calculator_format_parses_renders_and_is_never_guessed():
    text = "<tool_call>calculator(12 * (3 + 4))</tool_call>"
    res = parse_tool_calls(text, "calculator")
    assert res.ok and res.calls == [ToolCall("calculator", {"expression": "12 * (3 + 4)"})]
    assert render_tool_call(res.calls, "calculator") == text
    assert parse_tool_calls(text).format != "calculator"  # shares <tool_call> with tool_call_json: request it
    bad = parse_tool_calls("<tool_call>calc(1+2)</tool_call>", "calculator")
    assert not bad.calls and "expected calculator(<expression>)" in bad.errors[0].message
    with pytest.raises(ValueError, match="calculator format holds"):
        render_tool_call(ToolCall("web_search", {"query": "x"}), "calculator")
