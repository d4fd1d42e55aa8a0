"""Replace what a site computes (e.g. an MLP by a transcoder) during scoring and generation."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import LoadedModel, base_model, hook_site
from ..models.phase import register, unregister

# fn(site_input, site_output, valid_positions [B, S] bool) -> new output
SpliceFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class SpliceHandle:
    """Replaces the output of an MLP (site ``mlp``) by ``fn(mlp_in, mlp_out, valid)`` at every valid position.

    ``skip_first`` leaves position 0 of each row (BOS) untouched, as transcoder studies do. A splice changes every
    prompt token, so generation and capture never share a prefix computed without it.
    """

    touches_context = True

    def __init__(self, lm: LoadedModel, layer: int, fn: SpliceFn, skip_first: bool = True) -> None:
        lm.arch.check_layer(layer)
        self.lm, self.fn, self.skip_first = lm, fn, skip_first
        self._inp: torch.Tensor | None = None
        self._state = register(lm, base_model(lm.model, lm.arch), self)
        self._pre = hook_site(lm.model, lm.arch, layer, "mlp_in", self._grab)
        self._post = hook_site(lm.model, lm.arch, layer, "mlp", self._replace)
        self._active = True

    def _grab(self, hidden: torch.Tensor) -> None:
        self._inp = hidden

    def _replace(self, out: torch.Tensor) -> torch.Tensor:
        pos = self._state.current
        valid = (
            pos.valid if pos is not None else torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)
        )
        if self.skip_first and pos is not None:
            valid = valid & (pos.absolute > 0)
        new = self.fn(self._inp, out, valid)
        return torch.where(valid.unsqueeze(-1), new.to(out.dtype), out)

    def remove(self) -> None:
        if self._active:
            self._pre.remove()
            self._post.remove()
            unregister(self.lm, self)
            self._active = False

    def __enter__(self) -> SpliceHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def splice(lm: LoadedModel, layer: int, fn: SpliceFn, skip_first: bool = True) -> SpliceHandle:
    """Replace what the MLP of ``layer`` computes, in every forward until the handle is removed.

    Args:
        lm: the loaded model.
        layer: the layer whose MLP is replaced.
        fn: ``fn(mlp_in, mlp_out, valid) -> new mlp_out``, with ``valid`` the ``[B, S]`` positions replaced.
        skip_first: leave each row's position 0 (BOS) as the model computed it.

    Returns:
        The active handle; ``remove()`` it or use it as a context manager.
    """
    return SpliceHandle(lm, layer, fn, skip_first)
