"""Tool-behaviour metrics on generated text, with Wilson intervals, in the calculator call format of the
``steerlab.tools`` registry."""

from __future__ import annotations

from ..eval.stats import wilson_interval
from ..tools import has_trigger, parse_tool_calls
from ..tools.safe_eval import safe_arith_eval


def call_metrics(texts: list[str], answers: list[float | None]) -> dict:
    """tool_call_rate (marker present), valid_tool_format_rate (a calculator(<arithmetic>) call that evaluates),
    math_correct_rate (its safe-evaluated value equals the answer), each as (rate, lo, hi)."""
    n = len(texts)
    trig = valid = correct = 0
    for text, ans in zip(texts, answers):
        if has_trigger(text, "calculator"):
            trig += 1
        calls = parse_tool_calls(text, "calculator").calls
        if not calls:
            continue
        try:
            val = safe_arith_eval(calls[0].arguments["expression"])
        except ValueError:
            continue
        valid += 1
        if ans is not None and abs(val - ans) <= 1e-6 * max(1.0, abs(ans)):
            correct += 1
    return {
        name: (k / n if n else 0.0, *wilson_interval(k, n))
        for name, k in (
            ("tool_call_rate", trig),
            ("valid_tool_format_rate", valid),
            ("math_correct_rate", correct),
        )
    }
