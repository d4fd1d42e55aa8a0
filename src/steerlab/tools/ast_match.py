"""BFCL-style AST checking of calls against possible answers (written for steerlab, BFCL's semantics).

A possible answer is ``[{function_name: {param: [allowed values...]}}, ...]``; ``""`` among the allowed values
means the parameter may be omitted. Strings compare case-insensitively ignoring spaces and punctuation; numbers
compare by value (int 5 equals float 5.0); lists element by element; dicts key by key. Parallel answers match
as an unordered set of calls.
"""

from __future__ import annotations

import re

from .calls import ToolCall

_PUNCT = re.compile(r"[\s,./\-_*^'\"!?;:()\[\]{}]")


def _norm_str(s: str) -> str:
    return _PUNCT.sub("", s).lower()


def values_match(pred: object, allowed: object) -> bool:
    if isinstance(allowed, bool) or isinstance(pred, bool):
        return pred is allowed or pred == allowed and type(pred) is type(allowed)
    if isinstance(allowed, (int, float)) and isinstance(pred, (int, float)):
        return float(pred) == float(allowed)
    if isinstance(allowed, str) and isinstance(pred, str):
        return _norm_str(pred) == _norm_str(allowed)
    if isinstance(allowed, list) and isinstance(pred, (list, tuple)):
        return len(pred) == len(allowed) and all(values_match(p, a) for p, a in zip(pred, allowed))
    if isinstance(allowed, dict) and isinstance(pred, dict):
        for k, opts in allowed.items():  # nested possible answers list allowed values per key
            opts = opts if isinstance(opts, list) else [opts]
            if k not in pred:
                if "" in opts:
                    continue
                return False
            if not any(values_match(pred[k], o) for o in opts if o != ""):
                return False
        return set(pred) <= set(allowed)
    return pred == allowed


def _names_match(pred: str, expected: str) -> bool:
    return pred == expected or pred == expected.replace(".", "_")


def match_one(call: ToolCall, expected: dict) -> tuple[bool, str]:
    ((fname, params),) = expected.items()
    if not _names_match(call.name, fname):
        return False, f"called {call.name!r}, expected {fname!r}"
    for k in call.arguments:
        if k not in params:
            return False, f"unexpected argument {k!r}"
    for k, allowed in params.items():
        if k not in call.arguments:
            if "" in allowed:
                continue
            return False, f"missing argument {k!r}"
        if not any(values_match(call.arguments[k], a) for a in allowed if a != ""):
            return False, f"argument {k!r} = {call.arguments[k]!r:.60} not among {allowed!r:.80}"
    return True, "ok"


def ast_match(calls: list[ToolCall] | ToolCall, possible_answer: list[dict]) -> tuple[bool, str]:
    """Whether the predicted call(s) match the possible answer; parallel answers as an unordered set."""
    calls = [calls] if isinstance(calls, ToolCall) else list(calls)
    if len(calls) != len(possible_answer):
        return False, f"{len(calls)} call(s), expected {len(possible_answer)}"
    remaining = list(possible_answer)
    for call in calls:
        reasons = []
        for i, exp in enumerate(remaining):
            ok, why = match_one(call, exp)
            if ok:
                remaining.pop(i)
                break
            reasons.append(why)
        else:
            return False, reasons[0] if reasons else "no expected call left"
    return True, "ok"
