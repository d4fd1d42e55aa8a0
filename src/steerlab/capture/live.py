"""Live hidden states: the tensors a forward computes at chosen (layer, site)s, kept as they are (on the model's
device, in the autograd graph), for methods that differentiate through them (``steerlab.asa.directions``' ``grad``
direction). ``capture`` is the batched, detached, early-exiting reader; this is the one for gradients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from ..models import LoadedModel, hook_site


@contextlib.contextmanager
def live_states(
    lm: LoadedModel, layers: Sequence[int], site: str = "block"
) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, every forward of ``lm`` fills the yielded dict with ``layer -> hidden state`` at ``site``
    (``[batch, seq, d]``, not detached: ``torch.autograd.grad(loss, [states[k] ...])`` gives the gradient with
    respect to it). The hooks are removed on leaving, also on an error.

    Args:
        lm: the loaded model.
        layers: layer numbers (``layer k`` is the output of decoder block k).
        site: a named site (``block``, ``block_in``, ``attn``, ``mlp``, ``mlp_in``).

    Returns:
        A context manager yielding the dict the forwards fill (the latest forward's states).
    """
    for k in layers:
        lm.arch.check_layer(k)
    lm.arch.check_site(site)
    states: dict[int, torch.Tensor] = {}

    def keep(layer: int) -> Callable[[torch.Tensor], None]:
        def grab(hidden: torch.Tensor) -> None:
            states[layer] = hidden

        return grab

    hooks = [hook_site(lm.model, lm.arch, k, site, keep(k)) for k in layers]
    try:
        yield states
    finally:
        for h in hooks:
            h.remove()
