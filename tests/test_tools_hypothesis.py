"""Properties: the parser never raises on any text; render -> parse gives the calls back in every format."""

import keyword

from hypothesis import example, given, settings
from hypothesis import strategies as st

from steerlab.tools import (
    TOOL_CALL_FORMATS,
    ParseError,
    ToolCall,
    ast_match,
    could_still_trigger,
    parse_tool_calls,
    render_tool_call,
    validate_call,
)

# pieces a model's broken output is made of: markers, closers, brackets, quotes, keywords, literals
_FRAGMENTS = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "<|tool_call_start|>",
        "<|tool_call_end|>",
        "<functioncall>",
        "```json\n",
        "```",
        "```\n",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        '"',
        "'",
        "\\",
        ",",
        ":",
        "=",
        "**",
        '"name"',
        '"arguments"',
        '"parameters"',
        '"function"',
        "f",
        "a.b",
        "x",
        "1",
        "-2.5e3",
        "True",
        "null",
        "os.system('x')",
        "lambda: 0",
        " ",
        "\n",
        "é",
    ]
)
_messy = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=4)), max_size=40).map("".join)


def _well_formed(res) -> bool:
    return (
        all(
            isinstance(c, ToolCall) and isinstance(c.name, str) and isinstance(c.arguments, dict)
            for c in res.calls
        )
        and all(isinstance(e, ParseError) and isinstance(e.message, str) for e in res.errors)
        and (res.format is None or res.format in TOOL_CALL_FORMATS)
    )


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_parser_never_raises_on_any_text(text):
    for fmt in (None, *TOOL_CALL_FORMATS):
        for t in (text, "<tool_call>" + text, "<|tool_call_start|>[" + text, "<functioncall>" + text):
            assert _well_formed(parse_tool_calls(t, fmt))
        could_still_trigger(text, fmt or "tool_call_json")


@settings(max_examples=300, deadline=None)
@given(_messy)
def test_parser_never_raises_on_call_like_garbage(text):
    for fmt in (None, *TOOL_CALL_FORMATS):
        assert _well_formed(parse_tool_calls(text, fmt))


def test_parser_survives_deep_nesting():
    for fmt in TOOL_CALL_FORMATS:
        for t in (
            "[" * 5000,
            "<tool_call>" + "[" * 5000 + "]" * 5000,
            "<|tool_call_start|>[f(a=" + "[" * 3000,
        ):
            assert _well_formed(parse_tool_calls(t, fmt))


# strings rich in what breaks naive quoting: quotes, backslashes, brackets, markers' characters, non-ASCII
_tricky_text = st.text(
    alphabet=st.one_of(st.sampled_from("\\\"'[](){},=:\n\t<>|`#é€"), st.characters()), max_size=12
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    _tricky_text,
)
_json_val = st.recursive(
    _json_leaf,
    lambda ch: st.one_of(st.lists(ch, max_size=3), st.dictionaries(_tricky_text, ch, max_size=3)),
    max_leaves=10,
)
_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s)
)
_name = st.lists(_ident, min_size=1, max_size=3).map(".".join)  # dotted names, as BFCL has
_call = st.builds(ToolCall, _name, st.dictionaries(_ident, _json_val, max_size=4))


GENERAL = [f for f in TOOL_CALL_FORMATS if f != "calculator"]  # formats for any tool (calculator: one tool)


@settings(max_examples=150, deadline=None)
@given(_call, st.sampled_from(GENERAL))
@example(ToolCall("f", {"x": "\ud800", "y": ["a\udfffb"]}), "lfm2_pythonic")  # lone surrogates (found by CI)
def test_render_parse_round_trip_one_call(call, fmt):
    back = parse_tool_calls(render_tool_call(call, fmt), fmt)
    assert back.errors == [] and back.calls == [call]
    assert parse_tool_calls(render_tool_call(call, fmt)).calls == [call]  # detection finds the format too


@settings(max_examples=100, deadline=None)
@given(st.lists(_call, min_size=1, max_size=3), st.sampled_from(GENERAL), st.text(max_size=20))
def test_render_parse_round_trip_several_calls_after_prose(calls, fmt, prose):
    prose = "".join(ch for ch in prose if ch not in "{[<`")  # prose that opens no call of its own
    back = parse_tool_calls(prose + render_tool_call(calls, fmt), fmt)
    assert back.errors == [] and back.calls == calls


def _as_answer(v):
    """A value as BFCL writes an allowed value: dict entries become lists of options."""
    if isinstance(v, dict):
        return {k: [_as_answer(x)] for k, x in v.items()}
    if isinstance(v, list):
        return [_as_answer(x) for x in v]
    return v


@settings(max_examples=150, deadline=None)
@given(_call)
def test_a_call_matches_its_own_answer_and_schema(call):
    answer = [{call.name: {k: [_as_answer(v)] for k, v in call.arguments.items()}}]
    assert ast_match(call, answer) == (True, "ok")
    tool = {
        "name": call.name,
        "parameters": {"type": "object", "properties": {k: {} for k in call.arguments}},
    }
    assert validate_call(call, [tool]) == []


_expr = st.recursive(
    st.integers(0, 10**6).map(str) | st.floats(0, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}"),
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    ),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_expr, min_size=1, max_size=3))
def test_calculator_round_trip(exprs):
    calls = [ToolCall("calculator", {"expression": e}) for e in exprs]
    text = render_tool_call(calls, "calculator")
    back = parse_tool_calls(text, "calculator")
    assert back.errors == [] and back.calls == calls
