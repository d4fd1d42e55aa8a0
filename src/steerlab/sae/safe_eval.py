"""Evaluate arithmetic without ``eval``: an AST walk that accepts numbers, + - * / // % **, unary signs, parens."""

from __future__ import annotations

import ast
import operator

_BIN = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 100
MAX_LEN = 200


def safe_arith_eval(expr: str) -> float:
    """The value of an arithmetic expression; anything else raises ValueError naming what was found."""
    if not isinstance(expr, str) or len(expr) > MAX_LEN:
        raise ValueError(f"expected an arithmetic expression of at most {MAX_LEN} characters")
    try:
        tree = ast.parse(expr.replace("×", "*").replace("÷", "/").replace(",", ""), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {expr!r} ({err.msg})") from None
    return float(_walk(tree.body))


def _walk(node: ast.AST) -> float:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ValueError("division by zero")
        return _BIN[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    raise ValueError(f"only numbers and + - * / // % ** are allowed, found {type(node).__name__}")
