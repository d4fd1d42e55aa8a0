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
from .models.prefix import common_prefix_len, expand_cache, prefix_cache
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
    eos = _eos_ids(lm)
    share = _shared_len(lm, ids, shared_prefix, min_shared)
    results: list[Generation | None] = [None] * len(ids)
    batches = length_sorted_batches([len(x) for x in ids], batch_size)
    bar = tqdm(total=len(ids), desc=desc, disable=not progress, leave=False)
    with torch.inference_mode():
        pcache = prefix_cache(lm, ids[0][:share]) if share else None
        for batch in batches:
            ctx = row_setup(batch) if row_setup is not None else contextlib.nullcontext()
            with ctx:
                outs = _generate_batch(lm, [ids[i] for i in batch], share, pcache, max_new_tokens, eos, stop)
            for i, g in zip(batch, outs):
                results[i] = g
            bar.update(len(batch))
    bar.close()
    return results  # type: ignore[return-value]


def _decode(
    lm: LoadedModel,
    out: object,
    mask: torch.Tensor,
    next_pos: torch.Tensor,
    max_new: int,
    eos: set[int],
    stop: StopFn | None,
    rows: list[list[int]],
) -> list[Generation]:
    """Greedy decoding from a prefill's output; a finished row keeps feeding padding that its mask hides."""
    from .steering import active_handles

    tok = lm.tokenizer
    bsz = len(rows)
    cache = out.past_key_values
    logits = out.logits[:, -1]
    gen: list[list[int]] = [[] for _ in range(bsz)]
    stopped: list[str | None] = [None] * bsz
    live = list(range(bsz))  # original row of each row still in the batch tensors
    compact = _croppable(cache)  # finished rows leave the batch (their KV rows are dropped)
    handles = active_handles()
    try:
        for step in range(max_new):
            nxt = logits.argmax(dim=-1)
            for j, b in enumerate(live):
                if stopped[b] is not None:
                    continue
                t = int(nxt[j])
                if t in eos:
                    stopped[b] = "eos"
                    continue
                gen[b].append(t)
                if stop is not None and stop(tok.decode(gen[b], skip_special_tokens=False)):
                    stopped[b] = "stop"
            if all(s is not None for s in stopped) or step == max_new - 1:
                break
            alive = torch.tensor([stopped[b] is None for b in live], device=lm.device)
            if compact and not bool(alive.all()):
                keep = torch.nonzero(alive).flatten()
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys[keep], layer.values[keep]
                mask, next_pos, nxt = mask[keep], next_pos[keep], nxt[keep]
                live = [live[int(i)] for i in keep]
                alive = alive[keep]
                for h in handles:
                    h.row_index = list(live)
            n = len(live)
            feed = torch.where(alive, nxt, torch.full_like(nxt, tok.pad_token_id)).view(n, 1)
            mask = torch.cat([mask, alive.long().view(n, 1)], dim=1)
            out = lm.model(
                input_ids=feed,
                attention_mask=mask,
                position_ids=next_pos,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
            next_pos = next_pos + 1
            logits = out.logits[:, -1]
    finally:
        for h in handles:
            h.row_index = None
    return [
        Generation(
            text=tok.decode(g, skip_special_tokens=False),
            token_ids=g,
            prompt_tokens=len(r),
            stopped_by=s or "length",
        )
        for g, r, s in zip(gen, rows, stopped)
    ]


def _prefill(
    lm: LoadedModel,
    rows: list[list[int]],
    share: int,
    pcache: object,
    cache: object = None,
) -> tuple[object, torch.Tensor, torch.Tensor]:
    """Forward the rows' tokens after the shared prefix; returns (output, full mask, last position ids)."""
    bsz = len(rows)
    suffix_ids, suffix_mask = left_pad([r[share:] for r in rows], lm.tokenizer.pad_token_id, lm.device)
    if share:
        cache = expand_cache(pcache, bsz)
        mask = torch.cat([torch.ones(bsz, share, dtype=torch.long, device=lm.device), suffix_mask], dim=1)
    else:
        mask = suffix_mask
    pos = (share + suffix_mask.cumsum(-1) - 1).clamp(min=0)
    out = lm.model(
        input_ids=suffix_ids,
        attention_mask=mask,
        position_ids=pos,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out, mask, pos[:, -1:]


def _generate_batch(
    lm: LoadedModel,
    rows: list[list[int]],
    share: int,
    pcache: object,
    max_new: int,
    eos: set[int],
    stop: StopFn | None,
) -> list[Generation]:
    out, mask, last_pos = _prefill(lm, rows, share, pcache)
    return _decode(lm, out, mask, last_pos + 1, max_new, eos, stop, rows)


def generate_conditions(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    conditions: dict[str, RowSetup | None],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    chat: bool | None = None,
    tools: list[dict] | None = None,
    system: str | None = None,
    stop: StopFn | None = None,
    shared_prefix: bool | str = "auto",
    min_shared: int = 16,
    progress: bool = True,
    desc: str = "generate",
) -> dict[str, list[Generation]]:
    """Generate under several conditions that differ only from the last prompt token on (``prompt_last`` or
    ``generated`` steering): everything before it is computed once per batch, so each extra condition costs a
    one-token forward plus decoding. Results equal one ``generate`` call per condition."""

    if not conditions:
        raise ValueError("conditions is empty; give at least one {name: row_setup or None}")
    texts = render_prompts(lm.tokenizer, prompts, chat=chat, tools=tools, system=system)
    ids = tokenize_texts(lm.tokenizer, texts)
    share = _shared_len(lm, ids, shared_prefix, min_shared)
    if "conv" in lm.arch.layer_kinds or min(len(x) for x in ids) - share < 2:
        # conv states cannot be cloned per condition here: run each condition whole
        return {
            name: generate(
                lm,
                prompts,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                chat=chat,
                tools=tools,
                system=system,
                stop=stop,
                shared_prefix=shared_prefix,
                row_setup=setup,
                progress=progress,
                desc=f"{desc}:{name}",
            )
            for name, setup in conditions.items()
        }
    eos = _eos_ids(lm)
    results: dict[str, list[Generation | None]] = {name: [None] * len(ids) for name in conditions}
    batches = length_sorted_batches([len(x) for x in ids], batch_size)
    bar = tqdm(total=len(ids) * len(conditions), desc=desc, disable=not progress, leave=False)
    with torch.inference_mode():
        pcache = prefix_cache(lm, ids[0][:share]) if share else None
        for batch in batches:
            rows = [ids[i] for i in batch]
            with paused():
                ctx_out, ctx_mask, ctx_pos = _prefill(lm, [r[:-1] for r in rows], share, pcache)
            last = torch.tensor([[r[-1]] for r in rows], device=lm.device)
            mask = torch.cat([ctx_mask, torch.ones_like(last)], dim=1)
            ctx_cache = ctx_out.past_key_values
            snap = _snapshot(ctx_cache) if _croppable(ctx_cache) else None
            for name, setup in conditions.items():
                # each condition extends the context cache; restore it afterwards instead of copying it
                cache = ctx_cache if snap is not None else copy.deepcopy(ctx_cache)
                with setup(batch) if setup is not None else contextlib.nullcontext():
                    out = _last_token_forward(lm, last, mask, ctx_pos, cache, "generate_conditions")
                    gens = _decode(lm, out, mask, ctx_pos + 2, max_new_tokens, eos, stop, rows)
                if snap is not None:
                    _restore(cache, snap)
                for i, g in zip(batch, gens):
                    results[name][i] = g
                bar.update(len(batch))
    bar.close()
    return results  # type: ignore[return-value]


def _last_token_forward(
    lm: LoadedModel, last: torch.Tensor, mask: torch.Tensor, ctx_pos: torch.Tensor, cache: object, what: str
) -> object:
    """The last prompt token alone, after its cached context, counted as prompt by the steering handles."""
    from .steering import active_handles, prompt_phase

    bad = [h for h in active_handles() if h.policy in ("prompt_all", "all")]
    if bad:
        raise ValueError(
            f"{what} needs steering that starts at the last prompt token; a handle with policy "
            f"{bad[0].policy!r} is active (use generate instead)"
        )
    with prompt_phase():
        return lm.model(
            input_ids=last,
            attention_mask=mask,
            position_ids=ctx_pos + 1,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )


def _shared_len(lm: LoadedModel, ids: list[list[int]], shared_prefix: bool | str, min_shared: int) -> int:
    """Tokens of prefix to compute once: 0 when off, too short under 'auto', or with LFM2's conv state (it
    cannot be re-batched, so every prompt is computed whole)."""
    share = common_prefix_len(ids) if shared_prefix else 0
    if shared_prefix == "auto" and (share < min_shared or len(ids) < 2):
        share = 0
    return 0 if "conv" in lm.arch.layer_kinds else share


def _croppable(cache: object) -> bool:
    """Plain full-attention caches can be cut back; sliding-window and other layer kinds are copied instead."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(x).__name__ == "DynamicLayer" and hasattr(x, "keys") for x in layers)


def _snapshot(cache: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """References to every layer's keys and values: decoding only ever replaces them (concatenation, row
    selection), so restoring the references restores the context for the next condition."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _restore(cache: object, snap: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for layer, (k, v) in zip(cache.layers, snap):
        layer.keys, layer.values = k, v


def _eos_ids(lm: LoadedModel) -> set[int]:
    tok = lm.tokenizer
    found = [tok.eos_token_id, getattr(lm.model.generation_config, "eos_token_id", None)]
    return {t for x in found if x is not None for t in (x if isinstance(x, list) else [x])}


def next_token_scores(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    conditions: dict[str, RowSetup | None],
    *,
    token_ids: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    chat: bool | None = None,
    shared_prefix: bool | str = "auto",
    min_shared: int = 16,
    progress: bool = True,
    desc: str = "score",
) -> dict[str, torch.Tensor]:
    """Log-probabilities of the next token after each prompt, under several last-token conditions.

    ``token_ids[j]`` lists the ids that count as answer j (e.g. "A" and " A"): their probabilities are summed,
    giving ``[N, len(token_ids)]`` log-scores per condition (``[N, vocab]`` log-probs when ``token_ids`` is None).
    Everything before the last prompt token is computed once per batch, so a layer x strength sweep costs one
    token per condition.
    """

    if not conditions:
        raise ValueError("conditions is empty; give at least one {name: row_setup or None}")
    texts = render_prompts(lm.tokenizer, prompts, chat=chat)
    ids = tokenize_texts(lm.tokenizer, texts)
    share = _shared_len(lm, ids, shared_prefix, min_shared)
    out: dict[str, list] = {name: [None] * len(ids) for name in conditions}
    batches = length_sorted_batches([len(x) for x in ids], batch_size)
    bar = tqdm(total=len(ids) * len(conditions), desc=desc, disable=not progress, leave=False)

    def reduce(logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=-1)
        if token_ids is None:
            return logp.cpu()
        return torch.stack([torch.logsumexp(logp[:, list(t)], dim=-1) for t in token_ids], dim=-1).cpu()

    with torch.inference_mode():
        pcache = prefix_cache(lm, ids[0][:share]) if share else None
        for batch in batches:
            rows = [ids[i] for i in batch]
            # one condition: a single forward; several: the context once, then one token per condition
            split = (
                len(conditions) > 1
                and min(len(r) for r in rows) - share >= 2
                and "conv" not in lm.arch.layer_kinds
            )
            if split:
                with paused():
                    ctx_out, ctx_mask, ctx_pos = _prefill(lm, [r[:-1] for r in rows], share, pcache)
                ctx_cache = ctx_out.past_key_values
                snap = _snapshot(ctx_cache) if _croppable(ctx_cache) else None
                last = torch.tensor([[r[-1]] for r in rows], device=lm.device)
                mask = torch.cat([ctx_mask, torch.ones_like(last)], dim=1)
            for name, setup in conditions.items():
                with setup(batch) if setup is not None else contextlib.nullcontext():
                    if split:
                        cache = ctx_cache if snap is not None else copy.deepcopy(ctx_cache)
                        res = _last_token_forward(lm, last, mask, ctx_pos, cache, "next_token_scores")
                        if snap is not None:
                            _restore(cache, snap)
                    else:
                        res, _, _ = _prefill(lm, rows, share, pcache)
                scores = reduce(res.logits[:, -1])
                for j, i in enumerate(batch):
                    out[name][i] = scores[j]
                bar.update(len(batch))
    bar.close()
    return {name: torch.stack(v) for name, v in out.items()}
