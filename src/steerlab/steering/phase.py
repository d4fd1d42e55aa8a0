"""Which positions of the current forward pass are prompt and which are generated.

A pre-hook on the module that owns the decoder layers sees ``input_ids``, ``attention_mask`` and the KV cache of every
forward. From them: with a cache, a one-token step after a non-empty cache is a generated token and anything longer
is (more) prompt; without a cache, ``generate()`` re-feeds the whole sequence each step, which is recognised by its
prefix being the last prompt seen. So ``prompt_last`` means the same token with the KV cache on and off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_forced_prompt = 0


@contextlib.contextmanager
def prompt_phase() -> Iterator[None]:
    """Treat every forward inside as prompt, e.g. the last prompt token fed alone after a cached prompt prefix."""
    global _forced_prompt
    _forced_prompt += 1
    try:
        yield
    finally:
        _forced_prompt -= 1


@dataclass
class ForwardPositions:
    """For the current forward: real-token mask, prompt mask and the index of each row's last prompt token."""

    valid: torch.Tensor  # [B, S] bool
    prompt: torch.Tensor  # [B, S] bool
    last_prompt: torch.Tensor  # [B] long, -1 where the row has no prompt token in this forward
    past: int = 0  # tokens already in the KV cache before this forward

    @property
    def absolute(self) -> torch.Tensor:
        """Each position's index in its row's real sequence (padding excluded)."""
        return self.past + self.valid.long().cumsum(dim=1) - 1

    @property
    def generated(self) -> torch.Tensor:
        return self.valid & ~self.prompt


def _cache_len(pkv: object) -> int:
    if pkv is None:
        return 0
    if hasattr(pkv, "get_seq_length"):
        try:
            return int(pkv.get_seq_length())
        except (TypeError, IndexError, AttributeError):
            return 0
    if isinstance(pkv, (tuple, list)) and pkv and isinstance(pkv[0], (tuple, list)) and pkv[0]:
        return int(pkv[0][0].shape[-2])
    return 0


class PhaseTracker:
    """Registers one pre-hook and keeps the positions of the forward in flight."""

    def __init__(self, base: nn.Module) -> None:
        self.current: ForwardPositions | None = None
        self._prompt_ids: torch.Tensor | None = None
        self._handle: RemovableHandle = base.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def remove(self) -> None:
        self._handle.remove()

    def _pre_hook(self, _mod: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor) and args[0].dtype == torch.long:
            ids = args[0]
        embeds = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        if ref is None:
            self.current = None
            return
        bsz, seq = int(ref.shape[0]), int(ref.shape[1])
        mask = kwargs.get("attention_mask")
        if (
            isinstance(mask, torch.Tensor)
            and mask.dim() == 2
            and mask.shape[0] == bsz
            and mask.shape[1] >= seq
        ):
            valid = mask[:, -seq:].bool()
        else:
            valid = torch.ones(bsz, seq, dtype=torch.bool, device=ref.device)
        past = _cache_len(kwargs.get("past_key_values"))
        pos = torch.arange(seq, device=ref.device).expand(bsz, seq)
        if past > 0:
            prompt = valid.clone() if (seq > 1 or _forced_prompt) else torch.zeros_like(valid)
        else:
            p_ids = self._prompt_ids
            continuing = (
                ids is not None
                and p_ids is not None
                and p_ids.shape[0] == bsz
                and seq > p_ids.shape[1]
                and p_ids.device == ids.device
                and torch.equal(ids[:, : p_ids.shape[1]], p_ids)
            )
            if continuing:
                prompt = valid & (pos < p_ids.shape[1])
            else:
                self._prompt_ids = ids.detach().clone() if ids is not None else None
                prompt = valid.clone()
        has_prompt = prompt.any(dim=1)
        last = torch.where(prompt, pos, torch.full_like(pos, -1)).max(dim=1).values
        last = torch.where(has_prompt, last, torch.full_like(last, -1))
        self.current = ForwardPositions(valid=valid, prompt=prompt, last_prompt=last, past=past)
