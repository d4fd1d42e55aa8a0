"""A prompt prefix shared by every row (system prompt, tool list, few-shot turns) is computed once.

Sharing is an optimisation that must not change results, so it is off wherever it would: with LFM2's convolution
state (it cannot be re-batched), and with sliding-window attention when a padded ``[prefix | pads | suffix]`` row
could reach past the window (the window would count the pad slots).
"""

from __future__ import annotations

import copy
import time
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
    """The KV cache of ``prefix`` (one row), computed as prompt context: no row's last prompt token is in it.

    The last few are kept on ``lm`` and returned again (callers never write into a prefix cache) while the same ids
    meet the same weights (``weights_state``), the same hooks on the model and the same autograd mode: a run's stages
    and calls all start from one system prompt and tool list, which every call used to compute again. Nothing is kept
    with gradients on (a graph would stay alive) or under an active intervention; ``prefix_memo_stats`` counts."""
    key = _memo_key(lm, prefix)
    hit = lm._prefixes.get(key) if key is not None else None
    if hit is not None:
        return hit
    t = time.perf_counter()
    ids = torch.tensor([prefix], device=lm.device)
    with forward_phase(lm, CONTEXT):
        out = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
    cache = output_cache(out)
    if key is not None:
        lm._prefixes.put(key, cache, time.perf_counter() - t)
    return cache


def prefix_memo_stats(lm: LoadedModel) -> dict:
    """How often ``prefix_cache`` computed a prefix it kept on ``lm`` and how often it handed one back."""
    return lm._prefixes.stats()


def _memo_key(lm: LoadedModel, prefix: list[int]) -> tuple | None:
    """What a kept prefix cache depends on besides its ids, or None where it must not be kept."""
    from torch.nn.modules import module as torch_module

    from .loading import weights_state
    from .phase import active_interventions

    if torch.is_grad_enabled() or active_interventions(lm):
        return None
    hooks = []
    for m in lm.model.modules():
        for d in (m._forward_hooks, m._forward_pre_hooks):
            if d:
                hooks.append((id(m), *d))
    hooks.append(tuple(torch_module._global_forward_hooks) + tuple(torch_module._global_forward_pre_hooks))
    return (
        tuple(int(x) for x in prefix),
        weights_state(lm.model),
        tuple(hooks),
        torch.is_inference_mode_enabled(),
        str(lm.device),
    )


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
