"""Forwards over prompt tokens: after an optional shared prefix, with each forward's phase declared, and the
decision of when a prefix or a context computed once is exact."""

from __future__ import annotations

import copy

import torch

from ..models import LoadedModel, left_pad
from ..models.hf_compat import cache_kwargs
from ..models.phase import PROMPT, forward_phase
from ..models.prefix import common_prefix_len, sharing_allowed


def shared_len(
    lm: LoadedModel,
    ids: list[list[int]],
    shared_prefix: bool | str,
    min_shared: int,
    width: int,
    keep: int = 1,
) -> int:
    """Tokens of prefix to compute once: 0 when off, too short under 'auto', or not exact for this model (LFM2's
    conv state; a sliding window the padded rows could exceed). ``width``: the widest row's cache slots (prompt +
    generated tokens); ``keep``: tokens every row must keep after the prefix."""
    if shared_prefix not in (True, False, "auto"):
        raise ValueError(f"shared_prefix must be True, False or 'auto', got {shared_prefix!r}")
    if not shared_prefix or not sharing_allowed(lm, width):
        return 0
    share = min(common_prefix_len(ids), min(len(x) for x in ids) - keep)
    if shared_prefix == "auto" and (share < min_shared or len(ids) < 2):
        return 0
    return max(0, share)


def prefill(
    lm: LoadedModel, rows: list[list[int]], share: int, pcache: object, phase: str = PROMPT
) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Forward the rows' tokens after the shared prefix; returns (output, the mask later forwards extend, last
    position ids). The mask covers the prefix's columns only where the prefix is copied into every row."""
    bsz = len(rows)
    suffix_ids, suffix_mask, pos = suffix_inputs(lm, rows, share)
    cache = None
    if share:
        from ..models.prefix import cache_for_rows

        cache, cols = cache_for_rows(lm, pcache, bsz)
        mask = torch.cat([torch.ones(bsz, cols, dtype=torch.long, device=lm.device), suffix_mask], dim=1)
    else:
        mask = suffix_mask
    with forward_phase(lm, phase):
        out = lm.model(
            input_ids=suffix_ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            **cache_kwargs(lm.model, cache),
        )
    return out, mask, pos[:, -1:]


def suffix_inputs(
    lm: LoadedModel, rows: list[list[int]], share: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's tokens after the first ``share``, left-padded: (ids, mask, position ids [n, L]), positions counted
    from the start of the whole sequence (pads at 0)."""
    ids, mask = left_pad([r[share:] for r in rows], lm.tokenizer.pad_token_id, lm.device)
    return ids, mask, (share + mask.cumsum(-1) - 1).clamp(min=0)


def last_token_forward(
    lm: LoadedModel, last: torch.Tensor, mask: torch.Tensor, ctx_pos: torch.Tensor, cache: object
) -> object:
    """Each row's last prompt token alone, after its cached context."""
    with forward_phase(lm, PROMPT):
        return lm.model(
            input_ids=last,
            attention_mask=mask,
            position_ids=ctx_pos + 1,
            use_cache=True,
            logits_to_keep=1,
            **cache_kwargs(lm.model, cache),
        )


def croppable(cache: object) -> bool:
    """Plain full-attention caches (and the rows of a shared-prefix cache) can be restored by reference and have
    rows dropped; sliding-window and other layer kinds are copied."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(
        type(x).__name__ in ("DynamicLayer", "RowsLayer") and hasattr(x, "keys") for x in layers
    )


class ContextCache:
    """A context's KV cache that several conditions extend in turn: each gets it as it was."""

    def __init__(self, cache: object) -> None:
        self.cache = cache
        self._snap = [(x.keys, x.values) for x in cache.layers] if croppable(cache) else None

    def fresh(self) -> object:
        if self._snap is None:
            return copy.deepcopy(self.cache)
        # decoding only ever replaces the per-layer tensors (concatenation, row selection): restoring the
        # references restores the context
        for layer, (k, v) in zip(self.cache.layers, self._snap):
            layer.keys, layer.values = k, v
        return self.cache
