"""Evaluate arithmetic without ``eval``: an AST walk that accepts numbers, + - * / // % **, unary signs, parens."""

from __future__ import annotations

import ast
import math
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
MAX_MAGNITUDE = 1e300  # any intermediate result beyond this is refused (a float would overflow)


def safe_arith_eval(expr: str) -> float:
    """The value of an arithmetic expression; anything else raises ValueError naming what was found."""
    if not isinstance(expr, str) or len(expr) > MAX_LEN:
        raise ValueError(f"expected an arithmetic expression of at most {MAX_LEN} characters")
    try:
        tree = ast.parse(expr.replace("×", "*").replace("÷", "/").replace(",", ""), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {expr!r} ({err.msg})") from None
    return float(_walk(tree.body))


def _short(x: float) -> str:
    return f"{float(x):.4g}" if abs(x) >= 1e6 else repr(x)


def _bounded(value: float) -> float:
    if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE or value != value:
        raise ValueError(f"a result is out of range (complex, NaN or beyond {MAX_MAGNITUDE:g})")
    return value


def _walk(node: ast.AST) -> float:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return _bounded(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ValueError(f"exponent {_short(right)} is too large (at most {MAX_EXPONENT})")
            if left != 0 and abs(right) * math.log10(abs(left)) > math.log10(MAX_MAGNITUDE):
                raise ValueError(
                    f"{_short(left)} ** {_short(right)} is too large (results are bounded by {MAX_MAGNITUDE:g})"
                )
            if left == 0 and right < 0:
                raise ValueError("division by zero")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ValueError("division by zero")
        try:
            return _bounded(_BIN[type(node.op)](left, right))
        except OverflowError:
            raise ValueError(f"a result overflows (results are bounded by {MAX_MAGNITUDE:g})") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    raise ValueError(f"only numbers and + - * / // % ** are allowed, found {type(node).__name__}")
