"""Greedy batched generation with a KV cache, a shared-prefix cache and per-row early stopping.

Why not ``model.generate``: trigger detection needs a per-row stop rule on the decoded text ("the output can no
longer start with the tool marker"), and ASA's few-shot prompts share a long prefix that is worth computing once.
Steering handles work the same here and inside ``model.generate`` (see steering.phase).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .models import LoadedModel, left_pad, render_prompts, tokenize_texts
from .models.text import PromptLike, length_sorted_batches
from .steering import paused

StopFn = Callable[[str], bool]
RowSetup = Callable[[list[int]], contextlib.AbstractContextManager]


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stopped_by: str  # "eos", "stop" (the stop rule fired) or "length"


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


def _prefix_cache(lm: LoadedModel, prefix: list[int]) -> object:
    ids = torch.tensor([prefix], device=lm.device)
    with paused():
        out = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    return out.past_key_values


def _expand_cache(cache: object, n: int) -> object:
    c = copy.deepcopy(cache)
    if n > 1:
        c.batch_repeat_interleave(n)
    return c


def generate(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    chat: bool | None = None,
    tools: list[dict] | None = None,
    system: str | None = None,
    stop: StopFn | None = None,
    shared_prefix: bool | str = "auto",
    min_shared: int = 16,
    row_setup: RowSetup | None = None,
    progress: bool = True,
    desc: str = "generate",
) -> list[Generation]:
    """Greedy-decode each prompt; ``row_setup(indices)`` may return a context (e.g. a steering handle with per-row
    coefficients) that is active while that batch runs. ``stop(text_so_far)`` ends a row early."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if shared_prefix not in (True, False, "auto"):
        raise ValueError(f"shared_prefix must be True, False or 'auto', got {shared_prefix!r}")
    texts = render_prompts(lm.tokenizer, prompts, chat=chat, tools=tools, system=system)
    ids = tokenize_texts(lm.tokenizer, texts)
    tok = lm.tokenizer
    eos = {
        t
        for t in [tok.eos_token_id, getattr(lm.model.generation_config, "eos_token_id", None)]
        if t is not None
        for t in (t if isinstance(t, list) else [t])
    }
    share = common_prefix_len(ids) if shared_prefix else 0
    if shared_prefix == "auto" and (share < min_shared or len(ids) < 2):
        share = 0
    if "conv" in lm.arch.layer_kinds:  # LFM2's conv state cannot be re-batched: compute every prompt whole
        share = 0
    results: list[Generation | None] = [None] * len(ids)
    batches = length_sorted_batches([len(x) for x in ids], batch_size)
    bar = tqdm(total=len(ids), desc=desc, disable=not progress, leave=False)
    with torch.inference_mode():
        prefix_cache = _prefix_cache(lm, ids[0][:share]) if share else None
        for batch in batches:
            ctx = row_setup(batch) if row_setup is not None else contextlib.nullcontext()
            with ctx:
                outs = _generate_batch(
                    lm, [ids[i] for i in batch], share, prefix_cache, max_new_tokens, eos, stop
                )
            for i, g in zip(batch, outs):
                results[i] = g
            bar.update(len(batch))
    bar.close()
    return results  # type: ignore[return-value]


def _generate_batch(
    lm: LoadedModel,
    rows: list[list[int]],
    share: int,
    prefix_cache: object,
    max_new: int,
    eos: set[int],
    stop: StopFn | None,
) -> list[Generation]:
    tok = lm.tokenizer
    bsz = len(rows)
    suffix_ids, suffix_mask = left_pad([r[share:] for r in rows], tok.pad_token_id, lm.device)
    if share:
        cache = _expand_cache(prefix_cache, bsz)
        mask = torch.cat([torch.ones(bsz, share, dtype=torch.long, device=lm.device), suffix_mask], dim=1)
    else:
        cache = None
        mask = suffix_mask
    pos = (share + suffix_mask.cumsum(-1) - 1).clamp(min=0)
    out = lm.model(
        input_ids=suffix_ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
    )
    cache = out.past_key_values
    next_pos = pos[:, -1:] + 1
    logits = out.logits[:, -1]
    gen: list[list[int]] = [[] for _ in range(bsz)]
    stopped: list[str | None] = [None] * bsz
    for _step in range(max_new):
        nxt = logits.argmax(dim=-1)
        for b in range(bsz):
            if stopped[b] is not None:
                continue
            t = int(nxt[b])
            if t in eos:
                stopped[b] = "eos"
                continue
            gen[b].append(t)
            if stop is not None and stop(tok.decode(gen[b], skip_special_tokens=False)):
                stopped[b] = "stop"
        if all(s is not None for s in stopped) or _step == max_new - 1:
            break
        alive = torch.tensor([s is None for s in stopped], device=lm.device)
        feed = torch.where(alive, nxt, torch.full_like(nxt, tok.pad_token_id)).view(bsz, 1)
        mask = torch.cat([mask, alive.long().view(bsz, 1)], dim=1)
        out = lm.model(
            input_ids=feed, attention_mask=mask, position_ids=next_pos, past_key_values=cache, use_cache=True
        )
        cache = out.past_key_values
        next_pos = next_pos + 1
        logits = out.logits[:, -1]
    return [
        Generation(
            text=tok.decode(g, skip_special_tokens=False),
            token_ids=g,
            prompt_tokens=len(r),
            stopped_by=s or "length",
        )
        for g, r, s in zip(gen, rows, stopped)
    ]
