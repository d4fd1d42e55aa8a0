"""Schema-constrained calls: one grammar compiler per tokenizer, shared by every batch and request."""

from __future__ import annotations

import pytest

pytest.importorskip("xgrammar")

from steerlab.asa import calls  # noqa: E402
from steerlab.asa.apply import call_rules  # noqa: E402
from steerlab.data.asa_data import load_asa_tools  # noqa: E402
from steerlab.generation import generate  # noqa: E402
from steerlab.models import tiny_model  # noqa: E402
from steerlab.tools import parse_tool_calls, validate_call  # noqa: E402


def _grammar(rule: object) -> calls.CallGrammar:
    return next(r for r in rule.rules if isinstance(r, calls.CallGrammar))


def test_a_second_rule_reuses_the_compiler_and_decodes_the_same_calls():
    """The server builds a rule per batch: the second batch must not rebuild the tokenizer's info or recompile the
    schemas (that cost ~1.2 s a request on the embedded model), and its calls must equal the first batch's."""
    lm = tiny_model("llama")
    tools = load_asa_tools()
    names = [t["function"]["name"] for t in tools]
    calls._COMPILERS.pop(lm.tokenizer, None)  # the first rule below compiles from scratch
    prompts = ["What is the weather in Paris?", "Book a table for two.", "Hello there", "Convert 5 USD"]

    def batch() -> tuple[list[str], object]:
        rule = call_rules(
            lm, "tool_call_json", opens=lambda i: True, tools=tools, tool_of=lambda i: names[i % len(names)]
        )
        gens = generate(lm, prompts, chat=False, max_new_tokens=120, logits_rule=rule, batch_size=4)
        return [g.text for g in gens], _grammar(rule)

    first, g1 = batch()
    assert calls._COMPILERS[lm.tokenizer]  # kept for the tokenizer
    second, g2 = batch()
    assert g2._compiler is g1._compiler
    assert second == first
    done = 0
    for i, text in enumerate(first):
        parsed = parse_tool_calls(text, "tool_call_json").calls
        if parsed:  # a call the grammar finished within the token budget names the row's tool and validates
            assert parsed[0].name == names[i % len(names)] and validate_call(parsed[0], tools) == []
            done += 1
    assert done >= 2, first
    # bounded: flat memory under ever new schemas
    assert g1._compiler.cache_limit_bytes == calls.GRAMMAR_CACHE_BYTES
