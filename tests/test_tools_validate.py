import pytest

from steerlab.tools import ToolCall, normalize_schema, tool_spec, validate_call

TOOLS = [
    {  # OpenAI style
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "evaluate arithmetic",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
    {  # bare style, BFCL-ish type names
        "name": "translator",
        "parameters": {
            "type": "dict",
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "target_language": {"type": "string", "enum": ["French", "German"]},
                "n": {"type": "integer", "minimum": 1, "maximum": 5},
                "score": {"type": "float"},
                "flags": {"type": "tuple", "items": {"type": "boolean"}, "maxItems": 2},
                "extra": {"type": "any"},
                "opts": {
                    "type": "dict",
                    "properties": {"formal": {"type": "boolean"}},
                    "required": ["formal"],
                    "additionalProperties": False,
                },
                "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
                "id": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
            "required": ["text", "target_language"],
        },
    },
]


def v(args: dict, name: str = "translator", **kw) -> list[str]:
    return validate_call(ToolCall(name, args), TOOLS, **kw)


BASE = {"text": "hi", "target_language": "French"}


def test_valid_calls():
    assert validate_call(ToolCall("calculator", {"expression": "1+1"}), TOOLS) == []
    assert validate_call({"name": "calculator", "arguments": {"expression": "1"}}, TOOLS) == []
    assert validate_call({"name": "calculator", "parameters": '{"expression": "1"}'}, TOOLS) == []
    full = {
        **BASE,
        "n": 5,
        "score": 2,
        "flags": [True, False],
        "extra": object(),
        "opts": {"formal": True},
        "code": "FR",
        "id": "x7",
    }
    assert v(full) == []


def test_unknown_tool_and_missing_required():
    assert v({}, name="calc") == ["unknown tool 'calc'; known tools: calculator, translator"]
    assert validate_call(ToolCall("calculator", {}), TOOLS) == ["missing required argument 'expression'"]
    assert v({"text": "hi"}) == ["missing required argument 'target_language'"]
    assert validate_call({"arguments": {}}, TOOLS) == ["a call needs a non-empty string 'name', got None"]


def test_types_integer_number_boolean():
    assert v({**BASE, "n": 1.5}) == ["argument 'n' should be of type integer, got float 1.5"]
    assert v({**BASE, "n": 2.0}) == ["argument 'n' should be of type integer, got float 2.0"]
    assert v({**BASE, "n": True}) == ["argument 'n' should be of type integer, got bool True"]
    assert v({**BASE, "score": 2}) == [] and v({**BASE, "score": 2.5}) == []
    assert v({**BASE, "score": "2"}) == ["argument 'score' should be of type number, got str '2'"]
    assert v({**BASE, "text": 3}) == ["argument 'text' should be of type string, got int 3"]
    assert v({**BASE, "flags": [True, 1]}) == ["argument 'flags[1]' should be of type boolean, got int 1"]


def test_enums_bounds_patterns_nested():
    assert v({**BASE, "target_language": "Klingon"}) == [
        "argument 'target_language' = 'Klingon' is not one of ['French', 'German']"
    ]
    assert v({**BASE, "n": 0}) == ["argument 'n' = 0 violates minimum 1"]
    assert v({**BASE, "n": 6}) == ["argument 'n' = 6 violates maximum 5"]
    assert v({**BASE, "text": ""}) == ["argument 'text' is shorter than minLength 1"]
    assert v({**BASE, "flags": [True] * 3}) == ["argument 'flags' has more than maxItems 2 items"]
    assert v({**BASE, "code": "fr"}) == ["argument 'code' = 'fr' does not match pattern '^[A-Z]{2}$'"]
    assert v({**BASE, "opts": {}}) == ["argument 'opts' is missing required key 'formal'"]
    assert v({**BASE, "opts": {"formal": True, "tone": 1}}) == [
        "argument 'opts' has unknown key 'tone'; allowed: formal"
    ]
    assert v({**BASE, "id": 1.5}) == ["argument 'id' = 1.5 must match at least one schema of anyOf"]


def test_unknown_arguments():
    probs = v({**BASE, "x": 1})
    assert probs == [
        "unknown argument 'x'; allowed: text, target_language, n, score, flags, extra, opts, code, id"
    ]
    assert v({**BASE, "x": 1}, allow_unknown_args=True) == []
    assert (
        validate_call(ToolCall("calculator", {"expression": "1", "y": 2}), TOOLS, allow_unknown_args=True)
        == []
    )


def test_several_problems_reported_together():
    assert v({"text": 3, "target_language": "Klingon", "n": 1.5, "x": 1}) == [
        "argument 'text' should be of type string, got int 3",
        "argument 'target_language' = 'Klingon' is not one of ['French', 'German']",
        "argument 'n' should be of type integer, got float 1.5",
        "unknown argument 'x'; allowed: text, target_language, n, score, flags, extra, opts, code, id",
    ]


def test_bad_tool_definitions_are_errors():
    with pytest.raises(ValueError, match="a tool definition needs a 'name'"):
        validate_call(ToolCall("f"), [{"function": {"description": "no name"}}])
    with pytest.raises(ValueError, match="tools must be a list of tool definitions, got dict"):
        validate_call(ToolCall("f"), {"name": "f"})  # type: ignore[arg-type]
    assert tool_spec({"type": "function", "function": {"name": "f"}}) == {"name": "f"}


def test_normalize_schema_maps_bfcl_types():
    schema = {
        "type": "dict",
        "properties": {
            "type": {"type": "String"},  # a property named "type" is a name, not a keyword
            "xs": {"type": "tuple", "items": {"type": "float"}},
            "anything": {"type": "any", "description": "d"},
        },
    }
    assert normalize_schema(schema) == {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "xs": {"type": "array", "items": {"type": "number"}},
            "anything": {"description": "d"},
        },
    }
