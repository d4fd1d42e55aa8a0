"""The KV cache under both of transformers' names.

transformers 5.24 renamed the forward argument and the output field ``past_key_values`` to ``cache`` (the old name
still works, with a warning, until 5.40). steerlab passes and reads the cache through these helpers so that the same
code is right on every version ``pyproject.toml`` allows, and a forward hook finds the cache whichever name the
caller (steerlab, or ``model.generate``) used.
"""

from __future__ import annotations

import functools
import inspect

from torch import nn

NAMES = ("cache", "past_key_values")


@functools.cache
def _forward_takes_cache(cls: type) -> bool:
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False
    return "cache" in params


def cache_kwargs(model: nn.Module, cache: object) -> dict:
    """The keyword argument that hands ``cache`` to ``model``'s forward, under the name its forward declares."""
    return {"cache" if _forward_takes_cache(type(model)) else "past_key_values": cache}


def output_cache(out: object) -> object:
    """The KV cache of a model output (``out.cache`` on new versions, ``out.past_key_values`` on older ones)."""
    keys = out.keys() if hasattr(out, "keys") else ()
    for name in NAMES:
        if name in keys:
            return out[name]
    for name in NAMES:
        if name in getattr(type(out), "__dataclass_fields__", {}):
            return getattr(out, name)
    return None


def forward_cache(kwargs: dict) -> object:
    """The cache a forward (or a forward pre-hook) was given, whichever name the caller used."""
    for name in NAMES:
        value = kwargs.get(name)
        if value is not None:
            return value
    return None
