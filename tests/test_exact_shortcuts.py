"""Every shortcut (a shared prefix, a context computed once for several conditions) is exact or off.

Regression tests for defects found on tiny random models: a one-token suffix after a shared prefix was taken for a
generated token; sliding-window attention counted pad slots of the [prefix | pads | suffix] layout; a prefix
computed without the interventions that should reach it; the phase tracker carrying a prompt across calls.
"""

import pytest
import torch

from steerlab.capture import capture
from steerlab.generation import generate, generate_conditions, next_token_scores
from steerlab.models import left_pad, position_ids_from_mask, render_prompts, tiny_model, tokenize_texts
from steerlab.steering import splice, steer

SYSTEM = "You are a tool-using assistant. Think before answering. " * 2
PROMPTS = ["hello there, how are you today?", "hi", "what is the weather like in Paris right now?"]


def _vec(lm, seed=1, scale=8.0):
    return torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(seed)) * scale


def _ids(gens):
    return [g.token_ids for g in gens]


def _full_logits(lm, texts):
    ids = tokenize_texts(lm.tokenizer, texts)
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    with torch.no_grad():
        return lm.model(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_one_token_suffix_after_a_shared_prefix_is_still_the_prompt(tiny_models, family):
    lm = tiny_models(family)
    kw = dict(max_new_tokens=6, chat=True, system=SYSTEM, progress=False)
    plain = generate(lm, PROMPTS[:1], shared_prefix=False, **kw)
    with steer(lm, _vec(lm), layer=1, coef=1.0, policy="prompt_last"):
        shared = generate(lm, PROMPTS[:1], shared_prefix=True, **kw)  # one prompt: its suffix is one token
        whole = generate(lm, PROMPTS[:1], shared_prefix=False, **kw)
    assert _ids(shared) == _ids(whole)
    assert _ids(shared) != _ids(plain)
    # the same for a single-condition score
    cond = {"push": lambda idx: steer(lm, _vec(lm), layer=1, coef=1.0)}
    s_shared = next_token_scores(lm, PROMPTS[:1], cond, chat=True, shared_prefix=True, progress=False)["push"]
    s_whole = next_token_scores(lm, PROMPTS[:1], cond, chat=True, shared_prefix=False, progress=False)["push"]
    s_plain = next_token_scores(lm, PROMPTS[:1], {"p": None}, chat=True, progress=False)["p"]
    torch.testing.assert_close(s_shared, s_whole, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(s_shared, s_plain, atol=1e-3)


@pytest.mark.parametrize("family", ["mistral", "gemma2", "gemma3"])
def test_sliding_window_batches_equal_one_at_a_time(family):
    """With a window of 8, padded [prefix | pads | suffix] rows would see a different window: sharing is off."""
    lm = tiny_model(family, sliding_window=8)
    assert lm.arch.sliding_window == 8
    prompts = [SYSTEM + p for p in PROMPTS]
    kw = dict(max_new_tokens=5, chat=True, progress=False)
    batched = generate(lm, prompts, batch_size=3, **kw)
    single = [generate(lm, [p], **kw)[0] for p in prompts]
    assert _ids(batched) == _ids(single)
    acts = capture(lm, prompts, layers=[3], chat=True, batch_size=3, progress=False)[3]
    for i, p in enumerate(prompts):
        one = capture(lm, [p], layers=[3], chat=True, progress=False)[3]
        torch.testing.assert_close(acts[i : i + 1], one, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("policy", ["prompt_all", "all"])
def test_interventions_on_the_prefix_reach_it(tiny_models, policy):
    lm = tiny_models("llama")
    kw = dict(max_new_tokens=6, chat=True, system=SYSTEM, progress=False, batch_size=2)
    plain = generate(lm, PROMPTS, **kw)
    with steer(lm, _vec(lm), layer=1, coef=1.0, policy=policy):
        shared = generate(lm, PROMPTS, shared_prefix=True, **kw)
        whole = generate(lm, PROMPTS, shared_prefix=False, **kw)
    assert _ids(shared) == _ids(whole) != _ids(plain)
    # as a row setup, and among several conditions
    setup = lambda idx: steer(lm, _vec(lm), layer=1, coef=1.0, policy=policy)  # noqa: E731
    per_batch = generate(lm, PROMPTS, row_setup=setup, shared_prefix=True, **kw)
    multi = generate_conditions(lm, PROMPTS, {"plain": None, "push": setup}, **kw)
    assert _ids(per_batch) == _ids(whole) == _ids(multi["push"])
    assert _ids(multi["plain"]) == _ids(plain)


def test_a_splice_reaches_the_prefix_and_the_context(tiny_models):
    lm = tiny_models("llama")
    double = lambda inp, out, valid: 2 * out  # noqa: E731
    chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in PROMPTS]
    texts = render_prompts(lm.tokenizer, chats)
    with splice(lm, 1, double):
        ref = torch.log_softmax(_full_logits(lm, texts)[:, -1], -1)
    got = next_token_scores(
        lm, chats, {"plain": None, "spliced": lambda idx: splice(lm, 1, double)}, batch_size=2, progress=False
    )
    torch.testing.assert_close(got["spliced"], ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got["plain"], got["spliced"], atol=1e-3)
    kw = dict(max_new_tokens=6, progress=False, batch_size=2)
    with splice(lm, 1, double):
        whole = generate(lm, chats, shared_prefix=False, **kw)
    multi = generate_conditions(lm, chats, {"spliced": lambda idx: splice(lm, 1, double)}, **kw)
    assert _ids(multi["spliced"]) == _ids(whole)


def test_no_prompt_is_carried_from_one_call_to_the_next(tiny_models):
    """Scoring a prompt, then teacher-forcing prompt + answer under the same open handle: the second forward is a
    new prompt whose last token is the answer's last token."""
    lm = tiny_models("llama")
    prompt = render_prompts(lm.tokenizer, PROMPTS[:1], chat=True)
    forced = [prompt[0] + "Sure, here"]
    with steer(lm, _vec(lm), layer=1, coef=1.0, policy="prompt_last"):
        fresh = _full_logits(lm, forced)
    with steer(lm, _vec(lm), layer=1, coef=1.0, policy="prompt_last"):
        _full_logits(lm, prompt)
        after = _full_logits(lm, forced)
    torch.testing.assert_close(after, fresh)


def test_handles_go_away_and_hf_generate_is_restored(tiny_models):
    lm = tiny_models("llama")
    assert "generate" not in vars(lm.model)
    h = steer(lm, _vec(lm), layer=1, coef=1.0)
    s = splice(lm, 2, lambda inp, out, valid: out)
    assert "generate" in vars(lm.model)  # prompt width is recorded inside model.generate
    h.remove()
    s.remove()
    assert "generate" not in vars(lm.model)
    from steerlab.models.phase import active_interventions

    assert active_interventions(lm) == []


def test_sampling_is_per_row_and_seeded(tiny_models):
    lm = tiny_models("llama")
    kw = dict(max_new_tokens=8, chat=True, progress=False)
    a = generate(lm, PROMPTS, temperature=1.5, seed=[1, 2, 3], batch_size=3, **kw)
    b = [generate(lm, [p], temperature=1.5, seed=s, **kw)[0] for p, s in zip(PROMPTS, [1, 2, 3])]
    assert _ids(a) == _ids(b)  # a row's sample does not depend on its batch
    greedy = generate(lm, PROMPTS, **kw)
    assert _ids(generate(lm, PROMPTS, temperature=[0.0, 0.0, 0.0], **kw)) == _ids(greedy)
    assert _ids(a) != _ids(greedy)
    tiny_p = generate(lm, PROMPTS, temperature=1.0, top_p=1e-6, seed=7, **kw)  # nucleus of one token = greedy
    assert _ids(tiny_p) == _ids(greedy)
    with pytest.raises(ValueError, match="temperature"):
        generate(lm, PROMPTS, temperature=-1.0, **kw)
    with pytest.raises(ValueError, match="top_p"):
        generate(lm, PROMPTS, temperature=1.0, top_p=0.0, **kw)
    with pytest.raises(ValueError, match="3 prompts"):
        generate(lm, PROMPTS, temperature=[1.0, 1.0], **kw)


def test_on_token_streams_the_text_and_per_row_lengths(tiny_models):
    lm = tiny_models("llama")
    pieces: dict[int, list[str]] = {0: [], 1: [], 2: []}
    out = generate(
        lm,
        PROMPTS,
        max_new_tokens=[3, 5, 7],
        chat=True,
        progress=False,
        on_token=lambda i, tok, delta: pieces[i].append(delta),
    )
    for i, g in enumerate(out):
        assert "".join(pieces[i]) == g.text
        assert len(g.token_ids) <= [3, 5, 7][i]
        if g.stopped_by == "length":
            assert len(g.token_ids) == [3, 5, 7][i]
