"""Directions that move behaviour, not only the representation.

The paper's direction is a mean difference of tool and non-tool prompt states: it separates the two kinds of prompt
but pushing along it can lower the probability of a call (on SmolLM2 it does on code and search). The directions
here are read off the model's own behaviour:

- ``grad``: the mean, over tool prompts, of the unit gradient of log P(the reply starts the call marker) with
  respect to the state at layer L of the last prompt token: the direction in which a small push raises that
  probability fastest. One forward of the context and a one-token backward per batch give it at every layer.
- ``behav``: within tool prompts, mean(state | the plain model called) - mean(state | it did not).

The gradient is taken with respect to states read through ``steerlab.capture.live_states``: like every method
package, this one registers no hooks of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..capture import live_states
from ..models import LoadedModel, left_pad, render_prompts, tokenize_texts
from ..models.phase import PROMPT, forward_phase
from ..models.text import PromptLike, length_sorted_batches
from ..vectors import unit

KINDS = ("grad", "global", "asa", "behav")  # direction kinds the tune stage can screen


def marker_logprob(logits: torch.Tensor, marker_ids: Sequence[int]) -> torch.Tensor:
    """log P(the next token can begin the marker), per row of ``logits`` [B, vocab]."""
    return torch.logsumexp(torch.log_softmax(logits.float(), dim=-1)[:, list(marker_ids)], dim=-1)


def grad_directions(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    layers: Sequence[int],
    marker_ids: Sequence[int],
    *,
    site: str = "block",
    batch_size: int = 32,
    tools: list[dict] | None = None,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """Per layer: unit(mean over prompts of unit(d log P(marker start) / d h_layer[last prompt token])).

    Causality makes the gradient with respect to the last token's state flow only through the last position, so the
    context (everything before it, its shared prefix computed once) is a constant: it is computed without autograd
    and only the last token's forward is differentiated (the same gradient as differentiating the whole prompt, at
    the cost of one token's backward; ``tests/test_asa.py`` checks both ways agree)."""
    from ..generation.prefill import prefill, shared_len
    from ..models.hf_compat import cache_kwargs, output_cache
    from ..models.phase import CONTEXT, context_safe
    from ..models.prefix import prefix_cache

    if not prompts:
        raise ValueError("grad_directions needs at least one prompt")
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts, tools=tools))
    if min(len(x) for x in ids) < 2 or "conv" in lm.arch.layer_kinds:
        return _grad_directions_whole(lm, ids, layers, marker_ids, site, min(batch_size, 8), progress)
    share = shared_len(lm, ids, "auto", 16, max(len(x) for x in ids), keep=2) if context_safe(lm) else 0
    with torch.no_grad():
        pcache = prefix_cache(lm, ids[0][:share]) if share else None
    total = {k: torch.zeros(lm.hidden_size) for k in layers}
    for batch in tqdm(
        length_sorted_batches([len(x) for x in ids], batch_size),
        desc="grad direction",
        disable=not progress,
        leave=False,
    ):
        rows = [ids[i] for i in batch]
        with torch.no_grad():
            ctx_out, ctx_mask, ctx_pos = prefill(lm, [r[:-1] for r in rows], share, pcache, CONTEXT)
        last = torch.tensor([[r[-1]] for r in rows], device=lm.device)
        mask = torch.cat([ctx_mask, torch.ones_like(last)], dim=1)
        with live_states(lm, layers, site) as store, torch.enable_grad(), forward_phase(lm, PROMPT):
            logits = lm.model(
                input_ids=last,
                attention_mask=mask,
                position_ids=ctx_pos + 1,
                use_cache=True,
                logits_to_keep=1,
                **cache_kwargs(lm.model, output_cache(ctx_out)),
            ).logits
            lp = marker_logprob(logits[:, -1], marker_ids)
            grads = torch.autograd.grad(lp.sum(), [store[k] for k in layers])
        for k, g in zip(layers, grads):
            _add_unit(total[k], g[:, -1])
    return {k: unit(v) for k, v in total.items()}


def _add_unit(total: torch.Tensor, g_last: torch.Tensor) -> None:
    g_last = g_last.float().cpu()
    total += (g_last / g_last.norm(dim=-1, keepdim=True).clamp(min=1e-12)).sum(0)


def _grad_directions_whole(
    lm: LoadedModel,
    ids: list[list[int]],
    layers: Sequence[int],
    marker_ids: Sequence[int],
    site: str,
    batch_size: int,
    progress: bool,
) -> dict[int, torch.Tensor]:
    """The same gradient through whole prompts (one-token prompts; LFM2's conv state has no split context)."""
    total = {k: torch.zeros(lm.hidden_size) for k in layers}
    with live_states(lm, layers, site) as store:
        for batch in tqdm(
            length_sorted_batches([len(x) for x in ids], batch_size),
            desc="grad direction",
            disable=not progress,
            leave=False,
        ):
            x, mask = left_pad([ids[i] for i in batch], lm.tokenizer.pad_token_id, lm.device)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            store.clear()
            with torch.enable_grad(), forward_phase(lm, PROMPT):
                logits = lm.model(input_ids=x, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits
                lp = marker_logprob(logits[:, -1], marker_ids)
                grads = torch.autograd.grad(lp.sum(), [store[k] for k in layers])
            for k, g in zip(layers, grads):
                _add_unit(
                    total[k], g[:, -1]
                )  # left padding: every row's last prompt token is the last column
    return {k: unit(v) for k, v in total.items()}


def behaviour_contrast(states: torch.Tensor, called: torch.Tensor) -> torch.Tensor | None:
    """mean(states where the model called) - mean(where it did not), unit; None when either group is empty."""
    called = called.bool()
    if called.sum() == 0 or (~called).sum() == 0:
        return None
    return unit(states[called].float().mean(0) - states[~called].float().mean(0))
