"""A prompt prefix shared by every row (system prompt, tool list, few-shot turns) is computed once.

Sharing is an optimisation that must not change results, so it is off wherever it would: with LFM2's convolution
state (it cannot be re-batched), and with sliding-window attention when a padded ``[prefix | pads | suffix]`` row
could reach past the window (the window would count the pad slots).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from .hf_compat import output_cache
from .loading import LoadedModel
from .phase import CONTEXT, forward_phase


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common token prefix, leaving at least one token in every sequence."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    k = 0
    while k < n and all(s[k] == first[k] for s in seqs):
        k += 1
    return k


def sharing_allowed(lm: LoadedModel, width: int) -> bool:
    """Whether a shared prefix is exact for rows that span at most ``width`` cache slots (prefix, pads, suffix and
    generated tokens)."""
    if "conv" in lm.arch.layer_kinds:
        return False
    window = lm.arch.sliding_window
    return window is None or width <= window


def prefix_cache(lm: LoadedModel, prefix: list[int]) -> object:
    """The KV cache of ``prefix`` (one row), computed as prompt context: no row's last prompt token is in it."""
    ids = torch.tensor([prefix], device=lm.device)
    with forward_phase(lm, CONTEXT):
        out = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
    return output_cache(out)


def expand_cache(cache: object, n: int) -> object:
    c = copy.deepcopy(cache)
    if n > 1:
        c.batch_repeat_interleave(n)
    return c


def cache_for_rows(lm: LoadedModel, cache: object, n: int, keep: bool = True) -> tuple[object, int]:
    """A cache for ``n`` rows after the shared prefix ``cache``, and how many prefix columns the rows' 2-D attention
    mask must carry: the prefix kept once (0 columns; ``prefix_attention``) where the model's attention allows it,
    otherwise copied into every row (all of its columns). ``keep=False``: one forward that needs no cache after it
    (capture) does not store the rows' keys and values."""
    from .prefix_attention import install, rows_cache

    if install(lm.model):
        return rows_cache(cache, keep=keep), 0
    return expand_cache(cache, n), cache.get_seq_length()
