"""A shared prefix kept once in the KV cache: the split attention equals attention over [prefix | row] copied into
every row, for every mask form and grouped-query layout; generation through it equals one prompt at a time."""

import pytest
import torch

from steerlab.generation import generate, generate_conditions
from steerlab.models import FAMILIES
from steerlab.models.prefix import prefix_cache
from steerlab.models.prefix_attention import prefix_attention, rows_cache

SYSTEM = "You are a tool-using assistant with a long shared system prompt. " * 2


class _Module(torch.nn.Module):
    training = False


def _reference(q, k, v, pk, pv, keep, scale, softcap=None):
    """Attention over the prefix copied into every row: a plain softmax over [prefix | row]."""
    b, hq, t, d = q.shape
    g = hq // k.shape[1]
    kk = torch.cat([pk.expand(b, -1, -1, -1), k], dim=2).repeat_interleave(g, dim=1)
    vv = torch.cat([pv.expand(b, -1, -1, -1), v], dim=2).repeat_interleave(g, dim=1)
    scores = q @ kk.transpose(-1, -2) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    full = torch.cat([torch.ones(b, 1, t, pk.shape[2], dtype=torch.bool), keep], dim=-1)
    scores = scores.masked_fill(~full, float("-inf"))
    return (torch.softmax(scores, -1) @ vv).transpose(1, 2)


@pytest.mark.parametrize("hq,hkv", [(4, 4), (6, 2), (9, 3)])
@pytest.mark.parametrize("mask_kind", ["bool", "additive", "causal_none", "decode_none"])
def test_split_attention_equals_attention_over_the_copied_prefix(hq, hkv, mask_kind):
    g = torch.Generator().manual_seed(0)
    b, d, p, s = 3, 8, 5, 6
    t = 1 if mask_kind == "decode_none" else 4
    q = torch.randn(b, hq, t, d, generator=g)
    k, v = torch.randn(b, hkv, s, d, generator=g), torch.randn(b, hkv, s, d, generator=g)
    pk, pv = torch.randn(1, hkv, p, d, generator=g), torch.randn(1, hkv, p, d, generator=g)
    keep = torch.ones(t, s, dtype=torch.bool).tril(s - t).expand(b, 1, t, s).clone()
    keep[0, :, :, :2] = False  # row 0 is left-padded by two slots
    mask: torch.Tensor | None = keep
    if mask_kind == "additive":
        mask = torch.zeros(b, 1, t, s).masked_fill(~keep, torch.finfo(torch.float32).min)
    elif mask_kind.endswith("none"):
        keep[0] = torch.ones(t, s, dtype=torch.bool).tril(s - t)
        mask = None
    out, _ = prefix_attention(_Module(), q, k, v, (pk, pv), mask, scaling=d**-0.5)
    torch.testing.assert_close(out, _reference(q, k, v, pk, pv, keep, d**-0.5), atol=1e-5, rtol=1e-5)
    capped, _ = prefix_attention(_Module(), q, k, v, (pk, pv), mask, scaling=d**-0.5, softcap=2.0)
    ref = _reference(q, k, v, pk, pv, keep, d**-0.5, softcap=2.0)
    torch.testing.assert_close(capped, ref, atol=1e-5, rtol=1e-5)


def test_the_rows_cache_grows_in_place_and_restores_a_context(tiny_models):
    lm = tiny_models("llama")
    pcache = prefix_cache(lm, list(range(10, 20)))
    cache = rows_cache(pcache)
    layer = cache.layers[0]
    kv = pcache.layers[0].keys.shape
    first = torch.randn(2, kv[1], 3, kv[3])
    keys, _ = layer.update(first, first.clone())
    assert keys.shape[2] == 3 and cache.shared_prefix_length == 10
    snap = layer.keys
    layer.update(torch.ones(2, kv[1], 1, kv[3]), torch.ones(2, kv[1], 1, kv[3]))
    assert layer.keys.data_ptr() == snap.data_ptr()  # written in place, not concatenated
    layer.keys = snap  # restoring the context keeps the buffer and forgets the step
    assert layer.get_seq_length() == 3
    torch.testing.assert_close(layer.keys, first)
    layer.keys = layer.keys[torch.tensor([1])]  # a row leaving the batch
    assert layer.keys.shape[0] == 1


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "lfm2"])
def test_generation_through_the_shared_prefix_equals_one_prompt_at_a_time(tiny_models, family):
    import steerlab.models.prefix_attention as pa

    lm = tiny_models(family)
    prompts = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}]
        for u in ("hello there, how are you?", "hi", "what is the weather like in Paris?")
    ]
    calls = []
    original = pa.prefix_attention

    def counting(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    pa.prefix_attention = counting
    try:
        shared = generate(lm, prompts, max_new_tokens=8, batch_size=3, progress=False)
        conds = generate_conditions(lm, prompts, {"a": None}, max_new_tokens=8, batch_size=2, progress=False)
    finally:
        pa.prefix_attention = original
    alone = [generate(lm, [p], max_new_tokens=8, shared_prefix=False, progress=False)[0] for p in prompts]
    assert calls, "the shared prefix was not kept once"
    assert [g.token_ids for g in shared] == [g.token_ids for g in alone]
    assert [g.token_ids for g in conds["a"]] == [g.token_ids for g in alone]
