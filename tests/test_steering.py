import pytest
import torch

from steerlab.generation import generate
from steerlab.models import left_pad, position_ids_from_mask, render_prompts, tokenize_texts
from steerlab.steering import steer

PROMPTS = ["hello there, how are you today?", "hi", "what is the weather like in Paris right now?"]
FAMILIES = ["llama", "qwen3", "gemma2", "gpt2", "lfm2"]


def _logits(lm, prompts=PROMPTS):
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts, chat=True))
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    with torch.no_grad():
        return lm.model(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits


def _vec(lm, seed=1, scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(lm.hidden_size, generator=g) * scale


def _hf_generate(lm, prompts, use_cache, n=6):
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, prompts, chat=True))
    input_ids, mask = left_pad(ids, lm.tokenizer.pad_token_id, lm.device)
    with torch.no_grad():
        out = lm.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=n,
            do_sample=False,
            use_cache=use_cache,
            pad_token_id=lm.tokenizer.pad_token_id,
            eos_token_id=None,
        )
    return out[:, input_ids.shape[1] :]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("site", ["block", "block_in", "attn", "mlp", "mlp_in"])
def test_coef_zero_and_remove_are_identical(tiny_models, family, site):
    lm = tiny_models(family)
    plain = _logits(lm)
    with steer(lm, _vec(lm), layer=1, site=site, coef=0.0, policy="all"):
        assert torch.equal(_logits(lm), plain)
    h = steer(lm, _vec(lm), layer=1, site=site, coef=1.0, policy="all")
    assert not torch.allclose(_logits(lm), plain)
    h.remove()
    assert torch.equal(_logits(lm), plain)


def test_set_coef_changes_a_live_handle(tiny_models):
    """A handle's coefficient can change between forwards: 0 is the plain model, back to 1 is the first push."""
    lm = tiny_models("llama")
    plain = _logits(lm)
    with steer(lm, _vec(lm), layer=1, coef=1.0, policy="all") as h:
        pushed = _logits(lm)
        h.set_coef(0.0)
        assert torch.equal(_logits(lm), plain)
        h.set_coef(1.0)
        assert torch.equal(_logits(lm), pushed) and not torch.allclose(pushed, plain)
        with pytest.raises(ValueError, match="NaN"):
            h.set_coef(float("nan"))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("policy", ["prompt_last", "prompt_all", "generated", "all"])
def test_kv_cache_on_equals_off(tiny_models, family, policy):
    lm = tiny_models(family)
    with steer(lm, _vec(lm, scale=8.0), layer=1, coef=1.0, policy=policy):
        on = _hf_generate(lm, PROMPTS, use_cache=True)
        off = _hf_generate(lm, PROMPTS, use_cache=False)
    assert torch.equal(on, off)
    assert not torch.equal(on, _hf_generate(lm, PROMPTS, use_cache=True)) or policy == "generated"


@pytest.mark.parametrize("family", FAMILIES)
def test_steered_generation_batched_equals_single(tiny_models, family):
    lm = tiny_models(family)
    coefs = torch.tensor([1.0, -1.0, 0.5])
    v = _vec(lm, scale=6.0)

    def setup(idx):
        return steer(lm, v, layer=2, coef=coefs[idx], policy="all")

    batched = generate(
        lm, PROMPTS, max_new_tokens=6, chat=True, row_setup=setup, progress=False, batch_size=3
    )
    for i, p in enumerate(PROMPTS):
        with steer(lm, v, layer=2, coef=float(coefs[i]), policy="all"):
            single = generate(lm, [p], max_new_tokens=6, chat=True, progress=False)[0]
        assert single.token_ids == batched[i].token_ids


def test_prompt_last_touches_only_last_prefill_position(tiny_models):
    lm = tiny_models("llama")
    h = steer(lm, _vec(lm), layer=1, coef=1.0, policy="prompt_last")
    h.record = True
    ids = tokenize_texts(lm.tokenizer, render_prompts(lm.tokenizer, PROMPTS, chat=True))
    with h:
        _hf_generate(lm, PROMPTS, use_cache=True, n=3)
    prefill, *decode = h.touched
    width = max(len(x) for x in ids)
    assert prefill.shape == (3, width)
    assert prefill.sum() == 3 and prefill[:, -1].all()  # one position per row: the last prompt token
    assert len(decode) == 2 and all(m.sum() == 0 for m in decode)
    g = steer(lm, _vec(lm), layer=1, coef=1.0, policy="generated")
    g.record = True
    with g:
        _hf_generate(lm, PROMPTS, use_cache=True, n=3)
    assert g.touched[0].sum() == 0 and all(m.all() for m in g.touched[1:])


def test_prompt_last_changes_only_the_last_position_state(tiny_models):
    lm = tiny_models("qwen2")
    plain = _logits(lm)
    with steer(lm, _vec(lm), layer=1, policy="prompt_last"):
        steered = _logits(lm)
    assert torch.equal(steered[:, :-1], plain[:, :-1])  # causal: earlier positions cannot see the change
    assert not torch.allclose(steered[:, -1], plain[:, -1])


def test_per_row_coefficients_and_controller(tiny_models):
    lm = tiny_models("llama")
    v = _vec(lm)
    plain = _logits(lm)
    with steer(lm, v, layer=1, coef=torch.tensor([0.0, 1.0, 0.0]), policy="all"):
        mixed = _logits(lm)
    assert torch.equal(mixed[0], plain[0]) and torch.equal(mixed[2], plain[2])
    assert not torch.allclose(mixed[1], plain[1])
    seen = []

    def controller(h_last):
        seen.append(h_last.shape)
        return torch.tensor([1.0, 0.0, -1.0]), v

    with steer(lm, None, layer=1, policy="prompt_last", controller=controller):
        gated = _logits(lm)
    assert seen == [torch.Size([3, 32])]
    assert torch.equal(gated[1], plain[1]) and not torch.allclose(gated[0], plain[0])


def test_steering_bad_input(tiny_models):
    lm = tiny_models("llama")
    with pytest.raises(ValueError, match=r"shape \(512,\).*hidden size 32"):
        steer(lm, torch.zeros(512), layer=0)
    with pytest.raises(ValueError, match="NaN/inf"):
        steer(lm, torch.full((32,), float("nan")), layer=0)
    with pytest.raises(ValueError, match="layer 40 is out of range"):
        steer(lm, torch.zeros(32), layer=40)
    with pytest.raises(ValueError, match="unknown position policy 'first'"):
        steer(lm, torch.zeros(32), layer=0, policy="first")
    with pytest.raises(ValueError, match="unknown site"):
        steer(lm, torch.zeros(32), layer=0, site="residual")
    with (
        steer(lm, torch.ones(32), layer=0, coef=torch.ones(2), policy="all"),
        pytest.raises(ValueError, match="2 per-row"),
    ):
        _logits(lm)
