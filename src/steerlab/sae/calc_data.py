"""Calculator tool-call data: tool prompts, copy prompts and out-of-distribution tool prompts."""

from __future__ import annotations

import random

from ..tools import ToolCall, render_tool_call

TOOL_TEMPLATES = [
    "What is {a} {opw} {b}?",
    "Calculate {a} {opw} {b}.",
    "Can you work out {a} {opw} {b}?",
    "I need {a} {opw} {b}, please.",
    "How much is {a} {opw} {b}?",
    "Compute {a} {opw} {b} for me.",
    "Quick: {a} {opw} {b}?",
    "Tell me the result of {a} {opw} {b}.",
]
OOD_TEMPLATES = [
    "My invoice lists {a} units at {b} each; the total is {a} {opw} {b}. Figure it out.",
    "Solve this for my homework: {a} {opw} {b}",
    "Hey calculator friend, {a} {opw} {b}?",
    "Evaluate the expression {a} {opw} {b} exactly.",
]
COPY_TEMPLATES = [
    "Repeat exactly: {text}",
    "Copy this line: {text}",
    "Please echo back: {text}",
    "Say this again word for word: {text}",
]
COPY_TEXTS = [
    "Room {a} is on floor {b}.",
    "Order {a} ships with {b} boxes.",
    "Flight {a} boards at gate {b}.",
    "The code is {a}-{b}.",
    "Bus {b} leaves at {a}.",
    "Invoice {a}, line {b}.",
    "Locker {a}, shelf {b}.",
]
OPS = {"plus": "+", "minus": "-", "times": "*", "divided by": "/"}


def _tool(rng: random.Random, templates: list[str], lo: int, hi: int, decimals: bool) -> dict:
    opw = rng.choice(list(OPS))
    a = round(rng.uniform(lo, hi), 2) if decimals else rng.randint(lo, hi)
    b = round(rng.uniform(2, 99), 2) if decimals else rng.randint(2, 999)
    expr = f"{a} {OPS[opw]} {b}"
    from ..tools.safe_eval import safe_arith_eval

    return {
        "prompt": rng.choice(templates).format(a=a, b=b, opw=opw),
        "completion": render_tool_call(ToolCall("calculator", {"expression": expr}), "calculator"),
        "expression": expr,
        "answer": safe_arith_eval(expr),
    }


def make_calc_splits(
    n_train: int = 2000, n_eval_per_subset: int = 200, seed: int = 0
) -> dict[str, list[dict]]:
    """train (tool + copy, in-distribution), eval_tool, eval_copy, eval_ood (other phrasing and number ranges).
    Evaluation prompts never appear in training."""
    rng = random.Random(seed)
    seen: set[str] = set()

    def draw(kind: str, n: int) -> list[dict]:
        out = []
        while len(out) < n:
            if kind == "tool":
                it = _tool(rng, TOOL_TEMPLATES, 10, 9999, False)
            elif kind == "ood":
                it = _tool(rng, OOD_TEMPLATES, 10000, 99999, rng.random() < 0.5)
            else:
                text = rng.choice(COPY_TEXTS).format(a=rng.randint(10, 9999), b=rng.randint(2, 999))
                it = {
                    "prompt": rng.choice(COPY_TEMPLATES).format(text=text),
                    "completion": text,
                    "expression": None,
                    "answer": None,
                }
            if it["prompt"] in seen:
                continue
            seen.add(it["prompt"])
            out.append({**it, "subset": kind})
        return out

    evals = {
        "eval_tool": draw("tool", n_eval_per_subset),
        "eval_copy": draw("copy", n_eval_per_subset),
        "eval_ood": draw("ood", n_eval_per_subset),
    }
    train = draw("tool", n_train // 2) + draw("copy", n_train - n_train // 2)
    rng.shuffle(train)
    return {"train": train, **evals}
