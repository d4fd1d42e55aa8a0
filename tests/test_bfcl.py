import pytest

from steerlab.data.bfcl import CATEGORIES, load_bfcl
from steerlab.tools import ToolCall, ast_match, validate_call

pytest.importorskip("steerlab.data.bfcl")


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_loads(category):
    items = load_bfcl(category)
    assert len(items) > 100
    it = items[0]
    assert it.messages and it.messages[-1]["role"] == "user" and it.functions
    assert it.functions[0]["function"]["parameters"].get("type") in ("object", None)
    assert it.expects_call == (category not in ("irrelevance", "live_irrelevance"))
    if it.expects_call:
        assert it.possible_answer
    assert [i.id for i in load_bfcl(category, limit=5, seed=1)] == [
        i.id for i in load_bfcl(category, limit=5, seed=1)
    ]


def test_unknown_category():
    with pytest.raises(ValueError, match="unknown BFCL category 'simple'"):
        load_bfcl("simple")


def test_bfcl_types_are_mapped_for_validation():
    item = load_bfcl("simple_python")[
        0
    ]  # calculate_triangle_area(base: integer, height: integer, unit: string)
    call = ToolCall("calculate_triangle_area", {"base": 10, "height": 5})
    assert validate_call(call, item.functions) == []
    assert ast_match(call, item.possible_answer) == (True, "ok")


ANSWER = [{"math.hypot": {"x": [4], "y": [5], "z": ["", 0]}}]


def test_ast_match_cases():
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 5}), ANSWER)[0]
    assert ast_match(ToolCall("math_hypot", {"x": 4.0, "y": 5, "z": 0}), ANSWER)[0]  # dotted name, int/float
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 6}), ANSWER)[1].startswith("argument 'y' = 6")
    assert ast_match(ToolCall("math.hypot", {"x": 4}), ANSWER) == (False, "missing argument 'y'")
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 5, "w": 1}), ANSWER) == (
        False,
        "unexpected argument 'w'",
    )
    assert not ast_match(ToolCall("math.pow", {"x": 4, "y": 5}), ANSWER)[0]
    strings = [{"search": {"city": ["New York, NY", "NYC"]}}]
    assert ast_match(ToolCall("search", {"city": "new york ny"}), strings)[0]
    parallel = [{"f": {"a": [1]}}, {"f": {"a": [2]}}]
    assert ast_match([ToolCall("f", {"a": 2}), ToolCall("f", {"a": 1})], parallel)[0]
    assert ast_match([ToolCall("f", {"a": 2})], parallel) == (False, "1 call(s), expected 2")


def test_bfcl_eval_runs_on_a_tiny_model(tiny_models):
    from steerlab.eval.bfcl_eval import BfclConfig, bfcl_markdown, evaluate_bfcl

    res = evaluate_bfcl(
        tiny_models("llama"), BfclConfig(limit=3, max_new_tokens=4, n_boot=50), progress=False
    )
    assert res["n"] == 6 and set(res["categories"]) == {"irrelevance", "simple_python"}
    assert "ast_accuracy" in res["categories"]["simple_python"]["baseline"]
    assert "| irrelevance | baseline | 3 |" in bfcl_markdown(res)
