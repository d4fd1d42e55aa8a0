"""Batched generation and next-token scoring: KV cache, a shared prompt prefix computed once, per-row stop rules,
lengths and samplers, and several last-token conditions computed from one context.

Why not ``model.generate``: trigger detection needs a per-row stop rule on the decoded text ("the output can no
longer start with the tool marker"), and ASA's few-shot prompts share a long prefix worth computing once. Steering
handles work the same here and inside ``model.generate`` (see ``steerlab.models.phase``).

Every shortcut is exact or off: a prefix or context computed once is used only while no active intervention
changes the tokens in it (``prompt_all``/``all`` steering, splices), and only where the model allows it (no conv
state, no sliding window the padded rows could exceed). Otherwise the rows are computed whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models import LoadedModel, render_prompts, tokenize_texts
from ..models.hf_compat import output_cache
from ..models.phase import CONTEXT, active_interventions, context_safe
from ..models.prefix import prefix_cache
from ..models.text import FORWARD_OVERHEAD_TOKENS, PromptLike, length_sorted_batches
from .decode import Decoder, DecodeRules, Generation, by_part, decode, eos_ids
from .options import GenerateOptions, resolve
from .pool import DecodePool
from .prefill import ContextCache, croppable, last_token_forward, prefill, shared_len
from .prefix_store import stored_prefix
from .sampling import RowSampler, per_row

RowSetup = Callable[[list[int]], contextlib.AbstractContextManager]
CONDITION_FIELDS = ("max_new_tokens", "stop", "logits_rule")  # what a condition may decode differently
POOL_ROWS = 2  # generate_conditions decodes up to this many batches' rows together (DecodePool)


class _Prefix:
    """The shared prefix's cache, computed on first use (inside a batch whose interventions allow it)."""

    def __init__(self, lm: LoadedModel, ids: list[int]) -> None:
        self.lm, self.ids, self._cache = lm, ids, None

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self) -> object:
        if self._cache is None and self.ids:
            self._cache = prefix_cache(self.lm, self.ids)
        return self._cache


def _tokenize(lm: LoadedModel, prompts: Sequence[PromptLike], **render: object) -> list[list[int]]:
    return tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts, **render))


def _max_new(max_new_tokens: int | Sequence[int], n: int) -> list[int]:
    out = per_row(max_new_tokens, n, "max_new_tokens")
    for m in out:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1 (one, or one per prompt), got {m!r}")
    return out


def generate(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    options: GenerateOptions | None = None,
    *,
    row_setup: RowSetup | None = None,
    **changes: Any,
) -> list[Generation]:
    """Decode each prompt (greedy unless ``temperature`` > 0).

    Args:
        lm: the loaded model.
        prompts: texts or chat conversations.
        options: how to decode (``GenerateOptions``: lengths, stop rule, sampling, shared prefix, streaming);
            default ``GenerateOptions()``.
        row_setup: ``row_setup(indices)`` may return a context (e.g. a steering handle with per-row
            coefficients) active while that batch runs; its own ``logits_rule`` attribute, if any, shapes the
            batch's next-token scores too.
        **changes: any field of ``GenerateOptions`` given by name (``max_new_tokens=16``), on top of
            ``options``: the keyword arguments of earlier versions keep working.

    Returns:
        One ``Generation`` per prompt, in the prompts' order. ``cancelled(i)`` ends prompt ``i``'s row at the
        next step (``stopped_by`` "cancelled"); with ``ignore_eos`` every row makes its ``max_new_tokens``
        unless ``stop`` ends it (fixed-length runs: benchmarks against HF ``generate(min_new_tokens=...)``).
    """
    o = resolve(options, changes)
    ids = _tokenize(lm, prompts, chat=o.chat, tools=o.tools, system=o.system)
    rules = DecodeRules(
        set() if o.ignore_eos else eos_ids(lm),
        _max_new(o.max_new_tokens, len(ids)),
        RowSampler(len(ids), o.temperature, o.top_p, o.seed),
        o.stop,
        o.on_token,
        o.logits_rule,
        o.cancelled,
    ).with_rule(getattr(row_setup, "logits_rule", None))
    width = max(len(x) for x in ids) + max(rules.max_new)
    prefix = stored_prefix(lm, ids, width, o.shared_head, o.prefix_store) or _Prefix(
        lm, ids[0][: shared_len(lm, ids, o.shared_prefix, o.min_shared, width)]
    )
    results: list[Generation | None] = [None] * len(ids)
    bar = tqdm(total=len(ids), desc=o.desc, disable=not o.progress, leave=False)
    with torch.inference_mode():
        for batch in _batches(ids, o, len(prefix), max(rules.max_new)):
            rows = [ids[i] for i in batch]
            with row_setup(batch) if row_setup is not None else contextlib.nullcontext():
                share = len(prefix) if context_safe(lm) else 0
                out, mask, last_pos = prefill(lm, rows, share, prefix.cache() if share else None)
                outs = decode(lm, out, mask, last_pos + 1, rows, batch, rules)
            for i, g in zip(batch, outs):
                results[i] = g
            bar.update(len(batch))
    bar.close()
    return results  # type: ignore[return-value]


def _batches(ids: list[list[int]], o: GenerateOptions, shared: int, max_new: int) -> list[list[int]]:
    """Length-sorted batches of ``o.batch_size`` rows, capped at ``o.batch_tokens`` padded tokens (after the shared
    prefix, with room for the new tokens)."""
    return length_sorted_batches([len(x) for x in ids], o.batch_size, o.batch_tokens, max_new - shared)


def _conditions_check(conditions: dict) -> None:
    if not conditions:
        raise ValueError("conditions is empty; give at least one {name: row_setup or None}")


def _splittable(lm: LoadedModel, ids: list[list[int]]) -> bool:
    """Whether a context (all but each row's last token) can be computed once for several conditions: not for a
    one-token prompt, LFM2's conv state (it cannot be cloned per condition), or an active controller that must see
    the whole prompt in one forward."""
    return (
        min(len(x) for x in ids) >= 2
        and "conv" not in lm.arch.layer_kinds
        and not any(getattr(h, "needs_whole_prompt", False) for h in active_interventions(lm))
    )


@contextlib.contextmanager
def _condition(lm: LoadedModel, setup: RowSetup | None, batch: list[int]):  # noqa: ANN202
    """Enter a condition's setup; yields whether it left the context untouched (so the shared one is exact)."""
    before = {id(h) for h in active_interventions(lm)}
    with setup(batch) if setup is not None else contextlib.nullcontext():
        added = [h for h in active_interventions(lm) if id(h) not in before]
        yield not any(getattr(h, "touches_context", True) for h in added)


def _decode_alone(lm: LoadedModel) -> bool:
    """Whether the interventions now active would change decoding (or record it), so a condition's rows must
    decode under them instead of joining the pool (an intervention entered before ``generate_conditions`` keeps
    every condition out of the pool: its per-row values index one condition's batch)."""
    return any(getattr(h, "touches_decode", True) for h in active_interventions(lm))


def _per_condition(
    o: GenerateOptions, conditions: dict, per_condition: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, GenerateOptions]:
    """Each condition's options: ``o`` with its own decoding fields on top (checked: known names, allowed fields)."""
    per = dict(per_condition or {})
    unknown = sorted(set(per) - set(conditions))
    if unknown:
        raise ValueError(
            f"per_condition names {unknown}, which are not conditions; conditions: {list(conditions)}"
        )
    for name, ch in per.items():
        if not isinstance(ch, Mapping):
            raise ValueError(f"per_condition[{name!r}] must be a dict of options, got {type(ch).__name__}")
        bad = sorted(set(ch) - set(CONDITION_FIELDS))
        if bad:
            raise ValueError(
                f"per_condition[{name!r}] sets {bad}; a condition may set only {', '.join(CONDITION_FIELDS)} "
                "(the rest is shared: every condition decodes from one context)"
            )
    return {name: o.replace(**per.get(name, {})) for name in conditions}


def generate_conditions(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    conditions: dict[str, RowSetup | None],
    options: GenerateOptions | None = None,
    *,
    per_condition: Mapping[str, Mapping[str, Any]] | None = None,
    **changes: Any,
) -> dict[str, list[Generation]]:
    """Greedy generation under several conditions, each equal to one ``generate`` call per condition.

    Everything before each row's last prompt token is computed once per batch and each condition costs a
    one-token forward plus decoding. A condition whose interventions change earlier tokens (``prompt_all``/``all``
    steering, a splice) is computed whole instead.

    Args:
        lm: the loaded model.
        prompts: texts or chat conversations.
        conditions: name -> a row setup (as ``generate``'s ``row_setup``, which may carry a ``logits_rule``), or
            None for the plain model.
        options: how to decode (``GenerateOptions``); sampling, streaming, cancelling and a stored prefix are
            ``generate``'s alone and refused here (ValueError naming them).
        per_condition: name -> decoding options of that condition alone (``max_new_tokens``, ``stop``,
            ``logits_rule``) on top of ``options``: conditions that decode differently (whole calls, or only a
            trigger decision) still share one context per batch instead of one call each.
        **changes: any field of ``GenerateOptions`` by name, on top of ``options`` (the old keyword arguments).

    Returns:
        Per condition name, one ``Generation`` per prompt in the prompts' order.
    """
    _conditions_check(conditions)
    o = resolve(options, changes)
    o.greedy_only("generate_conditions")
    own = _per_condition(o, conditions, per_condition)
    ids = _tokenize(lm, prompts, chat=o.chat, tools=o.tools, system=o.system)
    n = len(ids)
    eos = set() if o.ignore_eos else eos_ids(lm)
    each = [
        DecodeRules(
            eos,
            _max_new(own[name].max_new_tokens, n),
            RowSampler(n),
            own[name].stop,
            logits_rule=own[name].logits_rule,
        ).with_rule(getattr(setup, "logits_rule", None))
        for name, setup in conditions.items()
    ]
    longest = max(max(r.max_new) for r in each)
    width = max(len(x) for x in ids) + longest
    if not _splittable(lm, ids):
        return {
            name: generate(lm, prompts, own[name].replace(desc=f"{o.desc}:{name}"), row_setup=setup)
            for name, setup in conditions.items()
        }
    prefix = _Prefix(lm, ids[0][: shared_len(lm, ids, o.shared_prefix, o.min_shared, width, keep=2)])
    results: dict[str, list[Generation | None]] = {name: [None] * n for name in conditions}
    names = list(conditions)
    pool = _pool(o) if o.merge_conditions else None
    pooled = by_part(each, n)  # condition k's prompt i is row k * n + i of the pool

    bar = tqdm(total=n * len(conditions), desc=o.desc, disable=not o.progress, leave=False)

    def keep(done: list[tuple[int, Generation]]) -> None:  # rows the pool finished
        for g, gen in done:
            results[names[g // n]][g % n] = gen
        bar.update(len(done))

    with torch.inference_mode():
        for batch in _batches(ids, o, len(prefix), longest):
            rows = [ids[i] for i in batch]
            share = len(prefix) if context_safe(lm) else 0
            ctx_out, ctx_mask, ctx_pos = prefill(
                lm, [r[:-1] for r in rows], share, prefix.cache() if share else None, CONTEXT
            )
            context = ContextCache(output_cache(ctx_out))
            last = torch.tensor([[r[-1]] for r in rows], device=lm.device)
            mask = torch.cat([ctx_mask, torch.ones_like(last)], dim=1)
            # the pool takes rows whose cache can drop finished rows, when nothing was active before this call
            pooling = pool is not None and not active_interventions(lm) and croppable(context.cache)
            for k, (name, setup) in enumerate(conditions.items()):
                joins = None  # the last-token forward of rows the pool decodes, after the setup is gone
                with _condition(lm, setup, batch) as exact:
                    if exact:
                        out = last_token_forward(lm, last, mask, ctx_pos, context.fresh())
                        if pooling and not _decode_alone(lm):
                            joins = out
                        else:
                            dec = Decoder(lm, out, mask, ctx_pos + 2, rows, batch, each[k])
                            dec.run()
                    else:
                        out, full_mask, last_pos = prefill(lm, rows, 0, None)
                        dec = Decoder(lm, out, full_mask, last_pos + 1, rows, batch, each[k])
                        dec.run()
                if joins is not None:
                    keep(
                        pool.add(
                            Decoder(lm, joins, mask, ctx_pos + 2, rows, [k * n + i for i in batch], pooled)
                        )
                    )
                    continue
                for i, g in zip(batch, dec.results()):
                    results[name][i] = g
                bar.update(len(batch))
        if pool is not None:
            keep(pool.finish())
    bar.close()
    return results  # type: ignore[return-value]


def _pool(o: GenerateOptions) -> DecodePool:
    """The rows decoding together: a group joins, then the pool steps until it holds at most ``POOL_ROWS`` batches'
    rows and one batch's ``batch_tokens`` cache slots (each row's room to grow counted), so it holds about twice a
    batch's cache at most, for a moment (the main job's stages peaked under 1.9 GB, docs/asa.md)."""
    return DecodePool(POOL_ROWS * o.batch_size, o.batch_tokens)


def next_token_scores(
    lm: LoadedModel,
    prompts: Sequence[PromptLike],
    conditions: dict[str, RowSetup | None],
    *,
    token_ids: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    batch_tokens: int | None = None,
    chat: bool | None = None,
    tools: list[dict] | None = None,
    shared_prefix: bool | str = "auto",
    min_shared: int = 16,
    progress: bool = True,
    desc: str = "score",
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Log-probabilities of the next token after each prompt, under several last-token conditions.

    ``token_ids[j]`` lists the ids that count as answer j (e.g. "A" and " A"): their probabilities are summed,
    giving ``[N, len(token_ids)]`` log-scores per condition (``[N, vocab]`` log-probs when ``token_ids`` is None;
    ``reduce(logits [B, vocab]) -> [B, ...]`` replaces both, e.g. to keep the greedy token too).
    Everything before the last prompt token is computed once per batch, so a layer x strength sweep costs one
    token per condition (a condition that changes earlier tokens is computed whole).
    """
    _conditions_check(conditions)
    ids = _tokenize(lm, prompts, chat=chat, tools=tools)
    n = len(ids)
    width = max(len(x) for x in ids)
    several = len(conditions) > 1 and _splittable(lm, ids)
    keep = 2 if several else 1
    prefix = _Prefix(lm, ids[0][: shared_len(lm, ids, shared_prefix, min_shared, width, keep=keep)])
    out: dict[str, list] = {name: [None] * n for name in conditions}
    bar = tqdm(total=n * len(conditions), desc=desc, disable=not progress, leave=False)

    def summarise(logits: torch.Tensor) -> torch.Tensor:
        if reduce is not None:
            return reduce(logits.float()).cpu()
        logp = torch.log_softmax(logits.float(), dim=-1)
        if token_ids is None:
            return logp.cpu()
        return torch.stack([torch.logsumexp(logp[:, list(t)], dim=-1) for t in token_ids], dim=-1).cpu()

    with torch.inference_mode():
        for batch in length_sorted_batches(
            [len(x) for x in ids],
            batch_size,
            batch_tokens,
            1 - len(prefix),
            FORWARD_OVERHEAD_TOKENS * (1 + len(conditions) if several else 1),  # a forward per condition too
        ):
            rows = [ids[i] for i in batch]
            share = len(prefix) if context_safe(lm) else 0
            if several:  # the context once, then one token per condition
                ctx_out, ctx_mask, ctx_pos = prefill(
                    lm, [r[:-1] for r in rows], share, prefix.cache() if share else None, CONTEXT
                )
                context = ContextCache(output_cache(ctx_out))
                last = torch.tensor([[r[-1]] for r in rows], device=lm.device)
                mask = torch.cat([ctx_mask, torch.ones_like(last)], dim=1)
            for name, setup in conditions.items():
                with _condition(lm, setup, batch) as exact:
                    if several and exact:
                        res = last_token_forward(lm, last, mask, ctx_pos, context.fresh())
                    else:
                        use = share if exact else 0
                        res, _, _ = prefill(lm, rows, use, prefix.cache() if use else None)
                scores = summarise(res.logits[:, -1])
                for j, i in enumerate(batch):
                    out[name][i] = scores[j]
                bar.update(len(batch))
    bar.close()
    return {name: torch.stack(v) for name, v in out.items()}
