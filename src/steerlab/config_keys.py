"""One check for configuration keys, shared by every method's config."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def check_known_keys(keys: Iterable[str], valid: list[str], what: str) -> None:
    """An unknown key fails with a did-you-mean suggestion and the list of valid keys."""
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {what} key {key!r}{hint}; valid keys: {', '.join(valid)}")
