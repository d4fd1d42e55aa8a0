"""Tool-behaviour metrics on generated text, with Wilson intervals."""

from __future__ import annotations

import re

from ..eval.stats import wilson_interval
from .safe_eval import safe_arith_eval

CALL = re.compile(r"<tool_call>\s*calculator\((.*?)\)\s*</tool_call>", re.S)


def call_metrics(texts: list[str], answers: list[float | None]) -> dict:
    """tool_call_rate (marker present), valid_tool_format_rate (exact calculator(<arithmetic>) call),
    math_correct_rate (its safe-evaluated value equals the answer), each as (rate, lo, hi)."""
    n = len(texts)
    trig = valid = correct = 0
    for text, ans in zip(texts, answers):
        if "<tool_call>" in text:
            trig += 1
        m = CALL.search(text)
        if not m:
            continue
        try:
            val = safe_arith_eval(m.group(1))
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
