"""BFCL-style AST checking of calls against possible answers (written for steerlab, BFCL's semantics).

A possible answer is ``[{function_name: {param: [allowed values...]}}, ...]``; ``""`` among the allowed values
means the parameter may be omitted. Rules:
- names match exactly, or with the answer's dots replaced by underscores (``math.hypot`` ~ ``math_hypot``);
- every parameter the answer does not mark optional must be given, and no parameter outside the answer;
- with ``functions`` (the item's tool definitions) also: the function's own required parameters must be given
  and each value must have the declared type ("number"/BFCL "float" accepts ints, "integer" rejects floats,
  "array"/BFCL "tuple" accepts lists);
- strings compare after lower-casing and removing whitespace and the punctuation ``,./-_*^'"!?;:()[]{}``;
  numbers compare by value (int 5 equals float 5.0); lists element by element in order; dicts key by key, with
  nested allowed-value lists;
- parallel answers (several expected calls) match as an unordered set: each call takes one expected call.
"""

from __future__ import annotations

import re

from .calls import ToolCall
from .validate import _type_ok, normalize_schema, tool_spec

_PUNCT = re.compile(r"[\s,./\-_*^'\"!?;:()\[\]{}]")


def _norm_str(s: str) -> str:
    return _PUNCT.sub("", s).lower()


def values_match(pred: object, allowed: object) -> bool:
    """Whether a predicted value equals one allowed value under BFCL's loose comparison."""
    if isinstance(allowed, bool) or isinstance(pred, bool):
        return isinstance(pred, bool) and isinstance(allowed, bool) and pred == allowed
    if isinstance(allowed, (int, float)) and isinstance(pred, (int, float)):
        return float(pred) == float(allowed)
    if isinstance(allowed, str) and isinstance(pred, str):
        return _norm_str(pred) == _norm_str(allowed)
    if isinstance(allowed, (list, tuple)) and isinstance(pred, (list, tuple)):
        return len(pred) == len(allowed) and all(values_match(p, a) for p, a in zip(pred, allowed))
    if isinstance(allowed, dict) and isinstance(pred, dict):
        for k, opts in allowed.items():  # nested possible answers list allowed values per key
            opts = opts if isinstance(opts, list) else [opts]
            if k not in pred:
                if "" in opts:
                    continue
                return False
            if not any(values_match(pred[k], o) for o in opts):
                return False
        return set(pred) <= set(allowed)
    return pred == allowed


def _names_match(pred: str, expected: str) -> bool:
    return pred == expected or pred == expected.replace(".", "_")


def _find_spec(name: str, functions: list[dict] | None) -> dict | None:
    for f in functions or []:
        spec = tool_spec(f)
        if spec["name"] == name:
            return spec
    return None


def match_one(call: ToolCall, expected: dict, functions: list[dict] | None = None) -> tuple[bool, str]:
    """One call against one expected ``{name: {param: [allowed...]}}``: (matched, reason)."""
    if not isinstance(expected, dict) or len(expected) != 1:
        raise ValueError(
            f"an expected call must be a one-key dict {{name: {{param: [values]}}}}, got {expected!r:.80}"
        )
    ((fname, params),) = expected.items()
    if not _names_match(call.name, fname):
        return False, f"called {call.name!r}, expected {fname!r}"
    spec = _find_spec(fname, functions)
    if spec is not None:
        schema = normalize_schema(spec.get("parameters") or {})
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in call.arguments:
                return False, f"missing required argument {req!r}"
        for k, v in call.arguments.items():
            typ = props.get(k, {}).get("type") if isinstance(props.get(k), dict) else None
            types = typ if isinstance(typ, list) else [typ]
            if typ is not None and not any(_type_ok(v, t) for t in types):
                return False, f"argument {k!r} should be of type {typ}, got {type(v).__name__}"
    for k in call.arguments:
        if k not in params:
            return False, f"unexpected argument {k!r}"
    for k, allowed in params.items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if k not in call.arguments:
            if "" in allowed:
                continue
            return False, f"missing argument {k!r}"
        if not any(values_match(call.arguments[k], a) for a in allowed):
            return False, f"argument {k!r} = {call.arguments[k]!r:.60} not among {allowed!r:.80}"
    return True, "ok"


def ast_match(
    calls: list[ToolCall] | ToolCall, possible_answer: list[dict], functions: list[dict] | None = None
) -> tuple[bool, str]:
    """Whether the predicted call(s) match the possible answer: (matched, reason); see the module docstring.

    ``functions``: the item's tool definitions (OpenAI style or BFCL's own); when given, required parameters
    and declared types are checked too.
    """
    calls = [calls] if isinstance(calls, ToolCall) else list(calls)
    if not isinstance(possible_answer, list):
        raise ValueError(
            f"possible_answer must be a list of expected calls, got {type(possible_answer).__name__}"
        )
    if len(calls) != len(possible_answer):
        return False, f"{len(calls)} call(s), expected {len(possible_answer)}"
    results = [[match_one(c, exp, functions) for exp in possible_answer] for c in calls]
    owner: dict[int, int] = {}  # expected index -> call index; Kuhn's augmenting paths (n is small)

    def place(ci: int, seen: set[int]) -> bool:
        for ei, (ok, _why) in enumerate(results[ci]):
            if ok and ei not in seen:
                seen.add(ei)
                if ei not in owner or place(owner[ei], seen):
                    owner[ei] = ci
                    return True
        return False

    for ci in range(len(calls)):
        if not place(ci, set()):
            reasons = [why for ok, why in results[ci] if not ok]
            if len(reasons) < len(results[ci]):
                why = "the expected calls it matches are taken by other calls"
            else:
                why = reasons[0]
            return False, (
                f"call {ci} ({calls[ci].name}) matches no expected call left: {why}"
                if len(calls) > 1
                else why
            )
    return True, "ok"
