"""A prompt prefix shared by every row (system prompt, tool list, few-shot turns) is computed once."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch

from .loading import LoadedModel


@contextlib.contextmanager
def paused_steering() -> Iterator[None]:
    from ..steering import paused  # steering sits above models; imported at call time

    with paused():
        yield


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


def prefix_cache(lm: LoadedModel, prefix: list[int]) -> object:
    ids = torch.tensor([prefix], device=lm.device)
    with paused_steering():
        out = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
    return out.past_key_values


def expand_cache(cache: object, n: int) -> object:
    c = copy.deepcopy(cache)
    if n > 1:
        c.batch_repeat_interleave(n)
    return c
