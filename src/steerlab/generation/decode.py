"""Batched decoding from a prefill: per-row stop rules, lengths and samplers; finished rows leave the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..models import LoadedModel
from ..models.hf_compat import cache_kwargs, output_cache
from ..models.phase import DECODE, forward_phase
from .prefill import croppable
from .rules import LogitsRule
from .sampling import RowSampler

StopFn = Callable[[str], bool]
TokenFn = Callable[[int, int, str], None]  # (prompt index, token id, newly decoded text)


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stopped_by: str  # "eos", "stop" (the stop rule fired), "length" or "cancelled"


@dataclass
class DecodeRules:
    """What decoding needs beyond the prefill: indexed by prompt index."""

    eos: set[int]
    max_new: list[int]
    sampler: RowSampler
    stop: StopFn | None = None
    on_token: TokenFn | None = None
    logits_rule: LogitsRule | None = None
    cancelled: Callable[[int], bool] | None = None  # prompt index -> stop now (its client left)

    def with_rule(self, rule: LogitsRule | None) -> DecodeRules:
        """The same rules with ``rule`` (e.g. a condition's own) added."""
        from dataclasses import replace

        from .rules import compose

        return replace(self, logits_rule=compose([self.logits_rule, rule])) if rule is not None else self


def decode(
    lm: LoadedModel,
    out: object,
    mask: torch.Tensor,
    next_pos: torch.Tensor,
    rows: list[list[int]],
    index: Sequence[int],
    rules: DecodeRules,
) -> list[Generation]:
    """Decode from a prefill's output; ``index[j]`` is the prompt index of batch row j. A finished row leaves the
    batch when its cache rows can be dropped, otherwise it keeps feeding padding that its mask hides."""
    from ..steering import active_handles

    tok = lm.tokenizer
    bsz = len(rows)
    cache = output_cache(out)
    logits = out.logits[:, -1]
    gen: list[list[int]] = [[] for _ in range(bsz)]
    text: list[str] = [""] * bsz
    sent: list[int] = [0] * bsz  # characters already passed to on_token
    stopped: list[str | None] = [None] * bsz
    live = list(range(bsz))  # batch row of each row still in the tensors
    compact = croppable(cache)
    handles = active_handles(lm)
    need_text = rules.stop is not None or rules.on_token is not None
    for j in range(bsz):
        if rules.max_new[index[j]] < 1:
            stopped[j] = "length"
    try:
        for _step in range(max(rules.max_new[i] for i in index)):
            if rules.cancelled is not None:
                for b in live:
                    if stopped[b] is None and rules.cancelled(index[b]):
                        stopped[b] = "cancelled"
            if all(s is not None for s in stopped):
                break
            prompt_rows = [index[b] for b in live]
            if rules.logits_rule is not None:
                logits = rules.logits_rule(prompt_rows, [gen[b] for b in live], logits.float().clone())
            nxt = rules.sampler.pick(logits, prompt_rows)
            for j, b in enumerate(live):
                if stopped[b] is not None:
                    continue
                t = int(nxt[j])
                if t in rules.eos:
                    stopped[b] = "eos"
                    continue
                for tt in [t, *_tail(rules, index[b], gen[b], t, tok)]:
                    gen[b].append(tt)
                    if need_text:
                        text[b] = tok.decode(gen[b], skip_special_tokens=False)
                        if rules.on_token is not None and not text[b].endswith("\ufffd"):
                            rules.on_token(index[b], tt, text[b][sent[b] :])
                            sent[b] = len(text[b])
                    if rules.stop is not None and rules.stop(text[b]):
                        stopped[b] = "stop"
                    elif len(gen[b]) >= rules.max_new[index[b]]:
                        stopped[b] = "length"
                    if stopped[b] is not None:
                        break
            if all(s is not None for s in stopped):
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
            with forward_phase(lm, DECODE):
                out = lm.model(
                    input_ids=feed,
                    attention_mask=mask,
                    position_ids=next_pos,
                    use_cache=True,
                    logits_to_keep=1,
                    **cache_kwargs(lm.model, cache),
                )
            cache = output_cache(out)
            next_pos = next_pos + 1
            logits = out.logits[:, -1]
    finally:
        for h in handles:
            h.row_index = None
    results = []
    for b, (g, r, s) in enumerate(zip(gen, rows, stopped)):
        final = tok.decode(g, skip_special_tokens=False)
        if rules.on_token is not None and len(final) > sent[b]:
            rules.on_token(index[b], -1, final[sent[b] :])  # text held back for an incomplete character
        results.append(Generation(text=final, token_ids=g, prompt_tokens=len(r), stopped_by=s or "length"))
    return results


def _tail(rules: DecodeRules, i: int, gen: list[int], t: int, tok: object) -> list[int]:
    """Tokens row ``i`` must end with after ``t`` (a logits rule knows them, e.g. a complete call's closer), when the
    row stops within them: they are appended without a forward each. Empty when there is none, or when the row would
    go on after them (then the model must see them)."""
    if rules.logits_rule is None or not hasattr(rules.logits_rule, "fixed_tail"):
        return []
    tail = rules.logits_rule.fixed_tail(i, [*gen, t])
    if not tail:
        return []
    room = rules.max_new[i] - len(gen) - 1
    if room <= 0:
        return []
    ends = len(tail) >= room or (
        rules.stop is not None and rules.stop(tok.decode([*gen, t, *tail], skip_special_tokens=False))
    )
    return list(tail[:room]) if ends else []


def eos_ids(lm: LoadedModel) -> set[int]:
    tok = lm.tokenizer
    found = [tok.eos_token_id, getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)]
    return {t for x in found if x is not None for t in (x if isinstance(x, list) else [x])}
