import importlib.util
import json

import pytest

from steerlab.data import bfcl as bfcl_mod
from steerlab.data.bfcl import CALL_CATEGORIES, CATEGORIES, load_bfcl, to_openai_tool
from steerlab.tools import ToolCall, ast_match, validate_call

needs_bfcl = pytest.mark.skipif(
    importlib.util.find_spec("bfcl_eval") is None,
    reason="bfcl-eval not installed (pip install --no-deps bfcl-eval)",
)


@needs_bfcl
@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_loads(category):
    items = load_bfcl(category)
    assert len(items) > 100 and len({i.id for i in items}) == len(items)
    assert all(i.category == category and i.id.startswith(category) for i in items)
    it = items[0]
    assert it.messages[-1]["role"] == "user" and isinstance(it.messages[-1]["content"], str)
    assert it.functions[0]["type"] == "function"
    assert it.functions[0]["function"]["parameters"]["type"] == "object"  # BFCL's "dict" mapped
    assert it.expects_call == (category in CALL_CATEGORIES)
    if it.expects_call:
        assert all(isinstance(i.possible_answer, list) and i.possible_answer for i in items)
    else:
        assert all(i.possible_answer is None for i in items)


@needs_bfcl
def test_sampling_is_fixed_by_seed_and_keeps_file_order():
    a = [i.id for i in load_bfcl("simple_python", limit=5, seed=1)]
    assert a == [i.id for i in load_bfcl("simple_python", limit=5, seed=1)]
    assert a != [i.id for i in load_bfcl("simple_python", limit=5, seed=2)]
    assert a == sorted(a, key=lambda s: int(s.rsplit("_", 1)[1])) and len(set(a)) == 5
    assert len(load_bfcl("multiple", limit=10_000)) == len(load_bfcl("multiple"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown BFCL category 'simple'; valid: simple_python, multiple"):
        load_bfcl("simple")
    with pytest.raises(ValueError, match="limit must be a positive integer or None, got 0"):
        load_bfcl("simple_python", limit=0)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(bfcl_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps bfcl-eval"):
        load_bfcl("simple_python")


def test_function_docs_become_openai_tools():
    fn = {
        "name": "a.b",
        "description": "d",
        "parameters": {"type": "dict", "properties": {"x": {"type": "float"}, "t": {"type": "tuple"}}},
    }
    assert to_openai_tool(fn) == {
        "type": "function",
        "function": {
            "name": "a.b",
            "description": "d",
            "parameters": {"type": "object", "properties": {"x": {"type": "number"}, "t": {"type": "array"}}},
        },
    }


@needs_bfcl
def test_first_item_validates_and_matches():
    item = load_bfcl("simple_python")[
        0
    ]  # calculate_triangle_area(base: integer, height: integer, unit: string)
    call = ToolCall("calculate_triangle_area", {"base": 10, "height": 5})
    assert validate_call(call, item.functions) == []
    assert ast_match(call, item.possible_answer, item.functions) == (True, "ok")
    assert (
        ast_match(ToolCall("calculate_triangle_area", {"base": 10, "height": 6}), item.possible_answer)[0]
        is False
    )


def _first_allowed(v):
    """The first concrete value of an allowed-values entry (nested dicts hold option lists)."""
    if isinstance(v, dict):
        out = {}
        for k, opts in v.items():
            first = opts[0] if isinstance(opts, list) and opts else opts
            if first != "":
                out[k] = _first_allowed(first)
        return out
    if isinstance(v, list):
        return [_first_allowed(x) for x in v]
    return v


@needs_bfcl
@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel"])
def test_every_ground_truth_matches_itself(category):
    """BFCL's own first allowed answer must pass the checker (agreement with BFCL on real data)."""
    failed = []
    for it in load_bfcl(category):
        calls = [
            ToolCall(name, {k: _first_allowed(v[0]) for k, v in params.items() if v[0] != ""})
            for expected in reversed(it.possible_answer)  # reversed: parallel order must not matter
            for name, params in expected.items()
        ]
        if not ast_match(calls, it.possible_answer, it.functions)[0]:
            failed.append(it.id)
    # simple_python_200: the answer marks fuel_efficiency optional ("" first) but the doc requires it
    assert failed == (["simple_python_200"] if category == "simple_python" else [])


ANSWER = [{"math.hypot": {"x": [4], "y": [5], "z": ["", 0]}}]
HYPOT = [
    {
        "name": "math.hypot",
        "parameters": {
            "type": "dict",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}, "z": {"type": "float"}},
            "required": ["x", "y"],
        },
    }
]


def test_ast_match_cases():
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 5}), ANSWER) == (True, "ok")  # optional z omitted
    assert ast_match(ToolCall("math_hypot", {"x": 4.0, "y": 5, "z": 0}), ANSWER) == (
        True,
        "ok",
    )  # dots, int/float
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 6}), ANSWER) == (
        False,
        "argument 'y' = 6 not among [5]",
    )
    assert ast_match(ToolCall("math.hypot", {"x": 4}), ANSWER) == (False, "missing argument 'y'")
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 5, "w": 1}), ANSWER) == (
        False,
        "unexpected argument 'w'",
    )
    assert ast_match(ToolCall("math.pow", {"x": 4, "y": 5}), ANSWER) == (
        False,
        "called 'math.pow', expected 'math.hypot'",
    )
    assert ast_match(ToolCall("math-hypot", {"x": 4, "y": 5}), ANSWER)[0] is False
    assert ast_match([], ANSWER) == (False, "0 call(s), expected 1")


def test_ast_match_with_function_docs_checks_types_and_required():
    assert ast_match(ToolCall("math.hypot", {"x": 4, "y": 5, "z": 0}), ANSWER, HYPOT) == (
        True,
        "ok",
    )  # int for float
    assert ast_match(ToolCall("math.hypot", {"x": 4.0, "y": 5}), ANSWER, HYPOT) == (
        False,
        "argument 'x' should be of type integer, got float",
    )
    loose = [{"math.hypot": {"x": [4], "y": ["", 5]}}]  # answer says optional, the doc says required
    assert ast_match(ToolCall("math.hypot", {"x": 4}), loose) == (True, "ok")
    assert ast_match(ToolCall("math.hypot", {"x": 4}), loose, HYPOT) == (
        False,
        "missing required argument 'y'",
    )


def test_ast_match_strings_lists_dicts_bools():
    strings = [{"search": {"city": ["New York, NY", "NYC"]}}]
    assert ast_match(ToolCall("search", {"city": "new york ny"}), strings) == (True, "ok")
    assert ast_match(ToolCall("search", {"city": " N.Y.C. "}), strings) == (True, "ok")
    assert ast_match(ToolCall("search", {"city": "Boston"}), strings)[0] is False
    lists = [{"f": {"xs": [[1, 2], [2, 1]]}}]
    assert ast_match(ToolCall("f", {"xs": [2, 1.0]}), lists) == (True, "ok")
    assert ast_match(ToolCall("f", {"xs": [1, 2, 3]}), lists)[0] is False
    nested = [{"f": {"o": [{"size": ["large"], "milk": ["", "oat"]}]}}]
    assert ast_match(ToolCall("f", {"o": {"size": "Large"}}), nested) == (True, "ok")
    assert ast_match(ToolCall("f", {"o": {"size": "large", "milk": "soy"}}), nested)[0] is False
    assert ast_match(ToolCall("f", {"o": {"size": "large", "sugar": 1}}), nested)[0] is False
    bools = [{"f": {"b": [True]}}]
    assert ast_match(ToolCall("f", {"b": True}), bools) == (True, "ok")
    assert ast_match(ToolCall("f", {"b": 1}), bools)[0] is False  # 1 is not True
    assert ast_match(ToolCall("f", {"b": ""}), [{"f": {"b": ["", "x"]}}]) == (True, "ok")


def test_ast_match_parallel_is_an_unordered_set():
    parallel = [{"f": {"a": [1]}}, {"f": {"a": [2]}}]
    assert ast_match([ToolCall("f", {"a": 2}), ToolCall("f", {"a": 1})], parallel) == (True, "ok")
    assert ast_match([ToolCall("f", {"a": 1}), ToolCall("f", {"a": 1})], parallel) == (
        False,
        "call 1 (f) matches no expected call left: the expected calls it matches are taken by other calls",
    )
    assert ast_match([ToolCall("f", {"a": 2})], parallel) == (False, "1 call(s), expected 2")
    # a greedy pairing would give call 0 the first answer and strand call 1; the matching must search
    overlapping = [{"f": {"a": [1, 2]}}, {"f": {"a": [1]}}]
    assert ast_match([ToolCall("f", {"a": 1}), ToolCall("f", {"a": 2})], overlapping) == (True, "ok")


@needs_bfcl
def test_bfcl_eval_runs_on_a_tiny_model(tiny_models, tmp_path):
    from steerlab.asa.bfcl import BfclConfig, bfcl_markdown, evaluate_bfcl, write_bfcl

    res = evaluate_bfcl(
        tiny_models("llama"), BfclConfig(limit=3, max_new_tokens=4, n_boot=50), progress=False
    )
    assert res["n"] == 6 and set(res["categories"]) == {"irrelevance", "simple_python"}
    assert "ast_accuracy" in res["categories"]["simple_python"]["baseline"]
    assert "| irrelevance | baseline | 3 |" in bfcl_markdown(res)
    paths = write_bfcl(res, tmp_path / "out")
    items = [json.loads(x) for x in paths["items"].read_text().splitlines()]
    assert len(items) == 6 and {i["category"] for i in items} == {"irrelevance", "simple_python"}
    assert all("output" in i and "triggered" in i for i in items)
    assert "items" not in json.loads(paths["json"].read_text())
