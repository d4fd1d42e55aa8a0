"""One way to read or rewrite the hidden tensor at (layer, site), whatever the module returns or takes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .registry import ArchInfo

SiteFn = Callable[[torch.Tensor], "torch.Tensor | None"]


def _split_output(out: object) -> tuple[torch.Tensor, Callable[[torch.Tensor], object]]:
    """The hidden tensor inside a module output (tensor, tuple or ModelOutput) and a function to rebuild it."""
    if isinstance(out, torch.Tensor):
        return out, lambda t: t
    if isinstance(out, tuple):
        return out[0], lambda t: (t, *out[1:])
    if isinstance(out, list):
        return out[0], lambda t: [t, *out[1:]]
    if hasattr(out, "to_tuple") and hasattr(out, "keys"):  # ModelOutput
        key = next(iter(out.keys()))

        def rebuild(t: torch.Tensor) -> object:
            out[key] = t
            return out

        return out[key], rebuild
    raise TypeError(f"cannot find the hidden tensor in a module output of type {type(out).__name__}")


def hook_site(model: nn.Module, arch: ArchInfo, layer: int, site: str, fn: SiteFn) -> RemovableHandle:
    """Call ``fn(hidden)`` at (layer, site); a returned tensor replaces the hidden state there."""
    module, where = arch.site_module(model, layer, site)
    if where == "output":

        def out_hook(_mod: nn.Module, _args: tuple, out: object) -> object:
            hidden, rebuild = _split_output(out)
            new = fn(hidden)
            return None if new is None else rebuild(new)

        return module.register_forward_hook(out_hook)

    def pre_hook(_mod: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
        new = fn(kwargs[key])
        if new is None:
            return None
        kwargs = dict(kwargs)
        kwargs[key] = new
        return args, kwargs

    return module.register_forward_pre_hook(pre_hook, with_kwargs=True)
