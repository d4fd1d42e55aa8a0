"""Real runs on the embedded SmolLM2-135M (loaded once per session)."""

import pytest
import torch

from steerlab.capture import capture, mean_norm
from steerlab.generation import generate
from steerlab.steering import steer

pytestmark = pytest.mark.embedded


def test_embedded_model_structure(smollm):
    assert smollm.arch.family == "llama" and smollm.n_layers == 30 and smollm.hidden_size == 576
    assert smollm.tokenizer.padding_side == "left"


def test_embedded_capture_and_steered_generation(smollm):
    prompts = ["What is 12 times 7?", "Translate 'good morning' into French.", "Why is the sky blue?"]
    acts = capture(smollm, prompts, layers=[2, 20], chat=True, progress=False)
    assert acts[20].shape == (3, 576) and torch.isfinite(acts[20]).all()
    plain = generate(smollm, prompts, max_new_tokens=8, chat=True, progress=False)
    single = generate(smollm, prompts[:1], max_new_tokens=8, chat=True, progress=False)[0]
    assert single.token_ids == plain[0].token_ids
    v = acts[20][0] - acts[20][2]
    v = v / v.norm()
    unit = mean_norm(acts[20])
    with steer(smollm, v, layer=20, coef=0.0):
        zero = generate(smollm, prompts, max_new_tokens=8, chat=True, progress=False)
    assert [g.token_ids for g in zero] == [g.token_ids for g in plain]
    with steer(smollm, v, layer=20, coef=2.0 * unit, policy="all"):
        pushed = generate(smollm, prompts, max_new_tokens=8, chat=True, progress=False)
    assert [g.token_ids for g in pushed] != [g.token_ids for g in plain]
