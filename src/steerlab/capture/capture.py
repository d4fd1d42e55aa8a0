"""Batched activation capture at (layers, sites, positions), stopping the forward after the deepest layer asked."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..models import LoadedModel, hook_site, left_pad, position_ids_from_mask, render_prompts, tokenize_texts
from ..models.hf_compat import cache_kwargs
from ..models.phase import PROMPT, active_interventions, context_safe, forward_phase
from ..models.prefix import cache_for_rows, common_prefix_len, prefix_cache, sharing_allowed
from ..models.text import FORWARD_OVERHEAD_TOKENS, PromptLike, length_sorted_batches
from .activations import Activations, Positions
from .cache import load_cached, save_cached

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised by the hook after the deepest requested layer: nothing past it is computed."""


def _check_positions(positions: Positions) -> Positions:
    if isinstance(positions, str):
        if positions not in ("last", "all"):
            raise ValueError(f"positions must be 'last', 'all', an int or a list of ints, got {positions!r}")
        return positions
    if isinstance(positions, int):
        return positions
    pos = list(positions)
    if not pos or not all(isinstance(p, int) for p in pos):
        raise ValueError(f"positions must be a non-empty list of ints, got {positions!r}")
    return pos


def _gather(h: torch.Tensor, mask: torch.Tensor, positions: Positions) -> torch.Tensor | list[torch.Tensor]:
    """Select positions relative to each row's real (unpadded) tokens; works for any padding side."""
    lengths = mask.sum(dim=1)
    start = mask.shape[1] - lengths if bool((mask[:, -1] == 1).all()) else torch.zeros_like(lengths)
    if positions == "all":
        return [h[i, int(start[i]) : int(start[i] + lengths[i])] for i in range(h.shape[0])]
    idx_list = (
        [-1] if positions == "last" else ([positions] if isinstance(positions, int) else list(positions))
    )
    rows = []
    for p in idx_list:
        rel = torch.where(torch.tensor(p) < 0, lengths + p, torch.full_like(lengths, p))
        if bool(((rel < 0) | (rel >= lengths)).any()):
            bad = int(lengths[((rel < 0) | (rel >= lengths))].min())
            raise ValueError(f"position {p} is out of range for a prompt of {bad} tokens")
        rows.append(h[torch.arange(h.shape[0]), (start + rel).long()])
    out = torch.stack(rows, dim=1)
    return out[:, 0] if positions == "last" or isinstance(positions, int) else out


def capture(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    layers: int | Sequence[int],
    sites: str | Sequence[str] = "block",
    positions: Positions = "last",
    *,
    batch_size: int = 16,
    batch_tokens: int | None = None,
    chat: bool | None = None,
    tools: list[dict] | None = None,
    system: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    out_dtype: torch.dtype = torch.float32,
    shared_prefix: bool = True,
    min_shared: int = 16,
) -> Activations:
    """Capture activations for ``prompts`` (strings or chat conversations).

    Rows are batched by length with left padding and position ids that skip the padding, so a batch gives the
    same states as one prompt at a time. The forward stops after the deepest layer asked for. A token prefix
    common to all prompts (system prompt, few-shot turns) is computed once when only end-relative positions
    are asked for and no active intervention changes it. Active steering handles and splices apply as in any
    forward. With ``cache_dir`` the result is stored as safetensors keyed by the model's fingerprint + rendered
    inputs + layers/sites/positions; the cache is neither read nor written while an intervention is active (what
    it does is not part of the key).

    Args:
        lm: the loaded model.
        prompts: strings or chat conversations (lists of ``{"role", "content"}``).
        layers: layer numbers (``layer k`` is the output of decoder block k, HF ``hidden_states[k+1]``).
        sites: named sites: ``block``, ``block_in``, ``attn``, ``mlp``, ``mlp_in``.
        positions: ``last`` (each prompt's last token), ``all``, a position or a list of positions (negative
            ones count from the end).
        batch_size: prompts per forward.
        batch_tokens: also cap a forward at this many padded tokens after the shared prefix (None: no cap).
        chat: render through the chat template (None: conversations yes, strings no).
        tools: tool definitions the chat template lists.
        system: a system message put before each conversation that has none.
        cache_dir: where to keep results on disk (None: no cache).
        progress: show a progress bar.
        out_dtype: the dtype of the returned states.
        shared_prefix: compute a prefix common to all prompts once.
        min_shared: the shortest common prefix (in tokens) worth computing once.

    Returns:
        The states per ``(layer, site)``: ``[n, d]`` for one position, ``[n, k, d]`` for k positions, a list of
        ``[len_i, d]`` for ``all``. ``acts[layer]`` is ``acts[(layer, "block")]``.
    """
    layer_list = [layers] if isinstance(layers, int) else list(layers)
    site_list = [sites] if isinstance(sites, str) else list(sites)
    if not layer_list:
        raise ValueError("layers is empty; give at least one layer")
    if not site_list:
        raise ValueError("sites is empty; give at least one site")
    for layer in layer_list:
        lm.arch.check_layer(layer)
    for site in site_list:
        lm.arch.check_site(site)
    positions = _check_positions(positions)
    texts = render_prompts(lm.tokenizer, prompts, chat=chat, tools=tools, system=system)
    keys = [(layer, site) for layer in layer_list for site in site_list]
    cache_key = None
    if cache_dir is not None and active_interventions(lm):
        log.info("capture cache bypassed: steering or a splice is active on the model")
    elif cache_dir is not None:
        cache_key = hashlib.sha256(
            json.dumps(
                {
                    "fp": lm.fingerprint,
                    "texts": texts,
                    "keys": keys,
                    "positions": positions,
                    "dtype": str(out_dtype),
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()[:24]
        hit = load_cached(Path(cache_dir), cache_key, keys, positions)
        if hit is not None:
            return hit
    ids = tokenize_texts(lm.tokenizer, texts)
    lengths = [len(x) for x in ids]
    deepest = max(layer_list)
    results: dict[tuple[int, str], list] = {k: [None] * len(texts) for k in keys}
    batch_store: dict[tuple[int, str], torch.Tensor] = {}
    handles = []

    batch_mask: list[torch.Tensor] = []  # the batch's suffix mask: the hook gathers the positions asked

    def make_grab(key: tuple[int, str]):
        def grab(hidden: torch.Tensor) -> None:
            hidden = hidden.detach()
            # keep only the positions asked for: a batch holds one [B, d] per key, not every layer's [B, T, d]
            batch_store[key] = hidden if positions == "all" else _gather(hidden, batch_mask[0], positions)

        return grab

    def stop(_h: torch.Tensor) -> None:
        raise _StopForward

    share = _usable_prefix(lm, ids, positions, min_shared) if shared_prefix and context_safe(lm) else 0
    with torch.inference_mode():  # before the hooks: the prefix must not be captured
        pcache = prefix_cache(lm, ids[0][:share]) if share else None
    for key in keys:
        handles.append(hook_site(lm.model, lm.arch, key[0], key[1], make_grab(key)))
    handles.append(hook_site(lm.model, lm.arch, deepest, "block", stop))
    pad = lm.tokenizer.pad_token_id
    batches = length_sorted_batches(lengths, batch_size, batch_tokens, -share, FORWARD_OVERHEAD_TOKENS)
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc="capture", disable=not progress, leave=False):
                input_ids, mask = left_pad([ids[i][share:] for i in batch], pad, lm.device)
                batch_store.clear()
                kwargs: dict = {"use_cache": False}
                full_mask = mask
                batch_mask[:] = [mask]
                if share:
                    rows_cache, cols = cache_for_rows(lm, pcache, len(batch), keep=False)
                    ones = torch.ones(len(batch), cols, dtype=torch.long, device=lm.device)
                    kwargs = {**cache_kwargs(lm.model, rows_cache), "use_cache": True}
                    full_mask = torch.cat([ones, mask], dim=1)
                try:
                    with forward_phase(lm, PROMPT):
                        lm.model(
                            input_ids=input_ids,
                            attention_mask=full_mask,
                            position_ids=position_ids_from_mask(mask, share),
                            **kwargs,
                        )
                except _StopForward:
                    pass
                for key in keys:
                    got = (
                        batch_store[key] if positions != "all" else _gather(batch_store[key], mask, positions)
                    )
                    for j, i in enumerate(batch):
                        val = got[j]
                        results[key][i] = val.to("cpu", out_dtype).clone()
    finally:
        for h in handles:
            h.remove()
    data: dict[tuple[int, str], torch.Tensor | list[torch.Tensor]] = {}
    for key in keys:
        data[key] = results[key] if positions == "all" else torch.stack(results[key])
    acts = Activations(data=data, positions=positions, lengths=lengths)
    if cache_key is not None:
        save_cached(Path(cache_dir), cache_key, acts)
    return acts


def _usable_prefix(lm: LoadedModel, ids: list[list[int]], positions: Positions, min_shared: int) -> int:
    """Shared prefix length, or 0 where it cannot be used (positions counted from the start, conv caches, a sliding
    window the padded rows could exceed)."""
    if len(ids) < 2 or not sharing_allowed(lm, max(len(x) for x in ids)):
        return 0
    if positions == "last":
        need = 1
    elif isinstance(positions, int) and positions < 0:
        need = -positions
    elif isinstance(positions, list) and all(p < 0 for p in positions):
        need = -min(positions)
    else:
        return 0
    share = min(common_prefix_len(ids), min(len(x) for x in ids) - need)
    return share if share >= min_shared else 0


def mean_norm(states: torch.Tensor) -> float:
    """Mean L2 norm of rows: the unit in which steering strengths are stated.

    Args:
        states: ``[n, d]`` hidden states (or any tensor whose last dimension is the hidden size).

    Returns:
        The mean norm of its rows.
    """
    return float(states.float().norm(dim=-1).mean())
