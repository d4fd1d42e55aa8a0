"""The shared prefix's KV cache is kept on the model across calls (a run's stages start from one system prompt and
tool list): reused only while the ids, weights, hooks and autograd mode are the same; every call's outputs equal a
run that computes the prefix afresh."""

import torch

from steerlab.generation import generate, generate_conditions
from steerlab.models.prefix import prefix_cache, prefix_memo_stats
from steerlab.models.prefix_memo import PREFIX_MEMO_ENTRIES
from steerlab.steering import steer

HEAD = list(range(10, 30))


def test_the_same_prefix_is_computed_once_and_handed_back(tiny_models):
    lm = tiny_models("llama")
    lm._prefixes.clear()
    before = prefix_memo_stats(lm)
    with torch.inference_mode():
        a = prefix_cache(lm, HEAD)
        b = prefix_cache(lm, HEAD)
        c = prefix_cache(lm, HEAD[:-1])
    assert a is b and c is not a
    after = prefix_memo_stats(lm)
    assert after["computed"] - before["computed"] == 2 and after["reused"] - before["reused"] == 1
    fresh = lm.model(input_ids=torch.tensor([HEAD]), use_cache=True).past_key_values
    torch.testing.assert_close(a.layers[0].keys, fresh.layers[0].keys)


def _fresh_and_different(lm, plain):
    """The prefix computed now is a new cache whose keys differ from ``plain``'s (the model computes otherwise)."""
    with torch.inference_mode():
        now = prefix_cache(lm, HEAD)
    assert now is not plain
    assert not torch.allclose(now.layers[1].keys, plain.layers[1].keys)


def test_a_weight_edit_a_hook_an_intervention_or_autograd_get_their_own_prefix(tiny_models):
    lm = tiny_models("llama")
    lm._prefixes.clear()
    with torch.inference_mode():
        plain = prefix_cache(lm, HEAD)
    layer = lm.model.model.layers[0]
    handle = layer.register_forward_hook(
        lambda m, i, o: (o[0] * 2.0, *o[1:]) if isinstance(o, tuple) else o * 2.0
    )
    try:
        _fresh_and_different(lm, plain)
    finally:
        handle.remove()
    with torch.inference_mode():
        assert prefix_cache(lm, HEAD) is plain  # the hook gone: the plain model's prefix again
    with torch.inference_mode(), steer(lm, torch.ones(lm.hidden_size), layer=0, coef=1.0, policy="all"):
        assert prefix_cache(lm, HEAD) is not plain
    with torch.no_grad():  # autograd-capable tensors (grad_directions) are not inference tensors
        ng = prefix_cache(lm, HEAD)
    assert ng is not plain and not ng.layers[0].keys.is_inference()
    assert prefix_cache(lm, HEAD) is not prefix_cache(lm, HEAD)  # gradients on: nothing kept
    w = lm.model.model.layers[0].mlp.down_proj.weight
    saved = w.detach().clone()  # the session's shared tiny model must come back bit for bit
    with torch.no_grad():
        w.mul_(1.5)
    try:
        _fresh_and_different(lm, plain)
    finally:
        with torch.no_grad():
            w.copy_(saved)


def test_the_memo_is_bounded(tiny_models):
    lm = tiny_models("llama")
    lm._prefixes.clear()
    with torch.inference_mode():
        for n in range(5, 5 + PREFIX_MEMO_ENTRIES + 3):
            prefix_cache(lm, HEAD[:n])
    assert len(lm._prefixes) == PREFIX_MEMO_ENTRIES


def test_generation_with_a_kept_prefix_equals_a_fresh_one(tiny_models):
    lm = tiny_models("llama")
    system = "You are a tool-using assistant with a long shared system prompt. " * 2
    prompts = [
        [{"role": "system", "content": system}, {"role": "user", "content": q}]
        for q in ("what is the weather", "hi", "book a table for two at eight")
    ]
    lm._prefixes.clear()
    fresh = generate(lm, prompts, max_new_tokens=6, batch_size=2, progress=False)
    assert len(lm._prefixes) == 1
    reused = prefix_memo_stats(lm)["reused"]
    kept = generate(lm, prompts, max_new_tokens=6, batch_size=2, progress=False)
    assert prefix_memo_stats(lm)["reused"] == reused + 1
    cond = generate_conditions(lm, prompts, {"a": None}, max_new_tokens=6, batch_size=2, progress=False)
    assert len(lm._prefixes) == 1
    for f, k, c in zip(fresh, kept, cond["a"]):
        assert f.token_ids == k.token_ids == c.token_ids


def test_the_prefix_reused_most_outlasts_one_off_prefixes(tiny_models):
    lm = tiny_models("llama")
    lm._prefixes.clear()
    with torch.inference_mode():
        shared = prefix_cache(lm, HEAD)
        assert prefix_cache(lm, HEAD) is shared
        for n in range(5, 5 + 3 * PREFIX_MEMO_ENTRIES):  # a stage's many one-off tool lists
            prefix_cache(lm, HEAD[:n])
        assert prefix_cache(lm, HEAD) is shared
