"""Each tool-call format class one to one (render -> parse, marker and closer, stop rules, the prefill that forces a
call), and a format registered from outside steerlab (``@register_format``) working in every part that reads
formats: the registry, prompts, parsing, the server's prefill and its reply splitting, whole and streamed."""

import pytest

from steerlab.tools import (
    FORMAT_SPECS,
    TOOL_CALL_FORMATS,
    JsonBodyFormat,
    ToolCall,
    ToolCallFormat,
    format_spec,
    parse_tool_calls,
    register_format,
    render_tool_call,
    schema_constrained_formats,
)

WEATHER = ToolCall("get_weather", {"city": "Oslo", "days": 2})
CALC = ToolCall("calculator", {"expression": "12 * 7"})
HEAD = '{"name": "get_weather", "arguments": '

# format -> (call, its exact text, the prefill naming its function, the rest of the reply after that prefill)
CASES = {
    "tool_call_json": (
        WEATHER,
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}</tool_call>',
        "<tool_call>" + HEAD,
        '{"city": "Oslo", "days": 2}}</tool_call>',
    ),
    "lfm2_pythonic": (
        WEATHER,
        '<|tool_call_start|>[get_weather(city="Oslo", days=2)]<|tool_call_end|>',
        "<|tool_call_start|>[get_weather(",
        'city="Oslo", days=2)]<|tool_call_end|>',
    ),
    "functioncall": (
        WEATHER,
        '<functioncall>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}',
        "<functioncall>" + HEAD,
        '{"city": "Oslo", "days": 2}}',
    ),
    "json": (
        WEATHER,
        '{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}',
        HEAD,
        '{"city": "Oslo", "days": 2}}',
    ),
    "markdown_json": (
        WEATHER,
        '```json\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}\n```',
        "```json\n" + HEAD,
        '{"city": "Oslo", "days": 2}}\n```',
    ),
    "calculator": (
        CALC,
        "<tool_call>calculator(12 * 7)</tool_call>",
        "<tool_call>calculator(",
        "12 * 7)</tool_call>",
    ),
}
MARKERS = {
    "tool_call_json": ("<tool_call>", "</tool_call>"),
    "lfm2_pythonic": ("<|tool_call_start|>", "<|tool_call_end|>"),
    "functioncall": ("<functioncall>", None),
    "json": ("{", None),
    "markdown_json": ("```json", "```"),
    "calculator": ("<tool_call>", "</tool_call>"),
}


def test_every_built_in_format_has_a_case():
    assert set(CASES) == set(TOOL_CALL_FORMATS) == set(MARKERS)


@pytest.mark.parametrize("name", list(CASES))
def test_render_parse_round_trip(name):
    call, text, _, _ = CASES[name]
    fmt = format_spec(name)
    assert fmt.name == name and isinstance(fmt, ToolCallFormat)
    assert fmt.render([call]) == text == render_tool_call(call, name)
    res = fmt.parse(text)
    assert res.calls == [call] and res.errors == [] and res.format == name
    assert parse_tool_calls(text, name).calls == [call]


@pytest.mark.parametrize("name", list(CASES))
def test_marker_closer_and_stop_rules(name):
    call, text, _, _ = CASES[name]
    fmt = format_spec(name)
    assert (fmt.marker, fmt.closer) == MARKERS[name]
    assert fmt.triggered("  " + text) and not fmt.triggered("Sure. " + text)
    assert fmt.triggered("Sure. " + text, mode="anywhere")
    assert fmt.could_still_trigger(fmt.marker[:2]) and fmt.could_still_trigger(text)
    assert not fmt.could_still_trigger("Sure") and fmt.could_still_trigger("Sure", mode="anywhere")
    if fmt.closer is None:  # no closer: a call is never known complete before the reply ends
        assert not fmt.call_complete(text) and not fmt.calls_done(text + "\nDone.")
        return
    assert fmt.call_complete(text) and not fmt.call_complete(text[: -len(fmt.closer)])
    assert not fmt.calls_done(text)  # nothing after the call yet: another may follow
    assert fmt.calls_done(text + "\nThat is all.")
    assert not fmt.calls_done(text + "\n" + fmt.marker[:3])  # may open a second call
    assert not fmt.calls_done(text + fmt.marker)


@pytest.mark.parametrize("name", list(CASES))
def test_prefill_starts_the_call_it_names(name):
    call, text, named, rest = CASES[name]
    fmt = format_spec(name)
    assert fmt.prefill() == fmt.marker
    assert fmt.prefill(call.name) == named
    assert named + rest == text  # the prefill is the start of the call's own text
    assert fmt.parse(named + rest).calls == [call]


def test_calculator_prefill_names_only_the_calculator():
    with pytest.raises(ValueError, match="calls only 'calculator', not 'get_weather'"):
        format_spec("calculator").prefill("get_weather")


def test_detection_strength_order():
    """A marker beats an untagged fence, which beats a bare JSON object; the earliest marker wins."""
    fence = '```\n{"name": "f", "arguments": {}}\n```'
    assert format_spec("markdown_json").detect(fence) == (1, 0)
    assert format_spec("json").detect(fence) == (2, 0)
    assert format_spec("tool_call_json").detect("a <tool_call>") == (0, 2)
    assert format_spec("calculator").detect("<tool_call>calculator(1)</tool_call>") is None  # on request only
    assert parse_tool_calls(fence).format == "markdown_json"
    assert parse_tool_calls('<functioncall>{"name": "a"} <tool_call>{"name": "b"}').format == "functioncall"


def test_schema_constrained_formats():
    assert schema_constrained_formats() == ["tool_call_json"]


# ------------------------------------------------------------------ a format from outside steerlab


@pytest.fixture
def registry():
    """The registry as it was before the test (a format registered by the test is gone after it)."""
    saved = dict(FORMAT_SPECS)
    yield FORMAT_SPECS
    FORMAT_SPECS.clear()
    FORMAT_SPECS.update(saved)


def _register_xml_call():
    @register_format("xml_call")
    class XmlCall(JsonBodyFormat):
        """``<call>{"name": ..., "arguments": {...}}</call>``"""

        marker, closer = "<call>", "</call>"
        example = '<call>{"name": "f", "arguments": {}}</call>'
        instruction = 'To use a tool, reply with only <call>{"name": "<tool>", "arguments": {...}}</call>.'

    return XmlCall


@pytest.mark.usefixtures("registry")
def test_registered_format_is_listed_and_checked():
    cls = _register_xml_call()
    assert "xml_call" in TOOL_CALL_FORMATS and TOOL_CALL_FORMATS[-1] == "xml_call"
    assert isinstance(format_spec("xml_call"), cls) and format_spec("xml_call").name == "xml_call"
    with pytest.raises(ValueError, match="'xml_call' is already registered"):
        _register_xml_call()

    with pytest.raises(ValueError, match="does not contain its marker"):

        @register_format("broken")
        class Broken(JsonBodyFormat):
            marker, closer = "<x>", "</x>"
            example = '{"name": "f", "arguments": {}}'
            instruction = "To use a tool, ..."

    assert "broken" not in TOOL_CALL_FORMATS


@pytest.mark.usefixtures("registry")
def test_registered_format_works_everywhere(tiny_models):
    """One class and its decorator, no other file edited: prompts teach it, the parser reads it (also when it must
    guess the format), the server prefills a forced call with it and splits its replies, whole and streamed."""
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.prompt import PromptBuilder
    from steerlab.config import UserError
    from steerlab.data.asa_data import load_asa_tools
    from steerlab.serve.engine import Engine, GateInfo, RowOutput, RowSpec
    from steerlab.serve.reply import StreamSplitter, split_reply

    _register_xml_call()
    tools = load_asa_tools()
    call = ToolCall("calculator", {"expression": "12 * 7"})
    text = render_tool_call(call, "xml_call")
    assert text == '<call>{"name": "calculator", "arguments": {"expression": "12 * 7"}}</call>'

    msgs = PromptBuilder(tools, call_format="xml_call").messages("What is 12 times 7?")
    assert format_spec("xml_call").instruction in msgs[0]["content"]
    assert msgs[2] == {
        "role": "assistant",
        "content": render_tool_call(ToolCall("calculator", {"expression": "1234 * 56"}), "xml_call"),
    }  # the few-shot call is written in the new format

    cfg = AsaConfig.from_dict({"call_format": "xml_call", "constrain": "none"})  # a config may name it
    assert (
        PromptBuilder(tools, call_format=cfg.call_format).instruction == format_spec("xml_call").instruction
    )
    with pytest.raises(UserError, match="needs a call_format with a JSON body \\(tool_call_json\\)"):
        AsaConfig.from_dict({"call_format": "xml_call", "constrain": "router"})

    assert parse_tool_calls("Sure. " + text).format == "xml_call"  # detected without being named
    assert parse_tool_calls(text, "xml_call").calls == [call]

    engine = Engine(tiny_models("llama"), call_format="xml_call")
    forced = engine.render(
        RowSpec([{"role": "user", "content": "hi"}], tools, tool_choice="function", forced_name="calculator")
    )
    assert forced.prefill == '<call>{"name": "calculator", "arguments": '
    stop = engine._stop_rule((), prefilled=False)
    assert not stop(text) and stop(text + "\nDone.")

    reply = "Let me compute that. " + text
    out = RowOutput(reply, "eos", 10, 20, GateInfo(), "xml_call")
    content, calls, report = split_reply(reply, out, tools, parse=True)
    assert content == "Let me compute that."
    assert [c["function"]["name"] for c in calls] == ["calculator"] and report["dropped_calls"] == 0
    splitter = StreamSplitter("xml_call", (), parse=True)
    streamed = "".join(splitter.feed(reply[i : i + 3]) for i in range(0, len(reply), 3))
    assert streamed == "Let me compute that. "  # the call itself never streams as content
