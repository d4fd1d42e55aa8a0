"""A user's mistake and the checks that name it: the bad value and what is allowed, in one line.

``UserError`` is the one class the CLI treats as the user's mistake (exit code 2, no traceback); any other
exception is a bug. Every layer raises these, so they live at the base of the package."""

from __future__ import annotations

import difflib
from typing import Any


class UserError(ValueError):
    """A mistake in what the user asked for (a value, a file, a name): one line, exit code 2.

    The CLI treats this class (and its subclasses) as the user's mistake and any other exception as a bug."""


class DataError(UserError):
    """A data file or dataset the user named is missing, malformed, or cannot be loaded here."""


class LayerError(UserError):
    """A layer or site the model does not have."""


def did_you_mean(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    strict_lo: bool = False,
    strict_hi: bool = False,
) -> None:
    """A number inside its allowed range, or a UserError saying which range."""
    bad = (lo is not None and (value <= lo if strict_lo else value < lo)) or (
        hi is not None and (value >= hi if strict_hi else value > hi)
    )
    if bad:
        left = "" if lo is None else f"{lo} {'<' if strict_lo else '<='} "
        right = "" if hi is None else f" {'<' if strict_hi else '<='} {hi}"
        raise UserError(f"{name} must satisfy {left}{name}{right}, got {value}")


def check_choice(name: str, value: Any, choices: Any) -> None:
    choices = list(choices)
    if value not in choices:
        hint = did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        raise UserError(f"{name}={value!r} is not allowed{hint}; valid: {', '.join(map(str, choices))}")


def check_layer_numbers(name: str, layers: Any) -> None:
    """Layer numbers count decoder blocks from 0; a negative one is refused rather than read from the end (every
    command reads layers the same way, and ``-1`` is more often a slip than a wish for the last block)."""
    bad = [x for x in layers if x < 0]
    if bad:
        raise UserError(
            f"{name} {bad}: layer numbers count decoder blocks from 0 (negative numbers are not allowed; "
            "`steerlab info` lists a model's layers)"
        )
