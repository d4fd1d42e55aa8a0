"""Directions that move behaviour, not only the representation.

The paper's direction is a mean difference of tool and non-tool prompt states: it separates the two kinds of prompt
but pushing along it can lower the probability of a call (on SmolLM2 it does on code and search). The directions
here are read off the model's own behaviour:

- ``grad``: the mean, over tool prompts, of the unit gradient of log P(the reply starts the call marker) with
  respect to the state at layer L of the last prompt token: the direction in which a small push raises that
  probability fastest. One forward and backward per batch gives it at every layer.
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
    batch_size: int = 8,
    tools: list[dict] | None = None,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """Per layer: unit(mean over prompts of unit(d log P(marker start) / d h_layer[last prompt token]))."""
    if not prompts:
        raise ValueError("grad_directions needs at least one prompt")
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts, tools=tools))
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
                g_last = (
                    g[:, -1].float().cpu()
                )  # left padding: every row's last prompt token is the last column
                total[k] += (g_last / g_last.norm(dim=-1, keepdim=True).clamp(min=1e-12)).sum(0)
    return {k: unit(v) for k, v in total.items()}


def behaviour_contrast(states: torch.Tensor, called: torch.Tensor) -> torch.Tensor | None:
    """mean(states where the model called) - mean(where it did not), unit; None when either group is empty."""
    called = called.bool()
    if called.sum() == 0 or (~called).sum() == 0:
        return None
    return unit(states[called].float().mean(0) - states[~called].float().mean(0))
