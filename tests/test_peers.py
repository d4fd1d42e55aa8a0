"""Parity with steering-vectors (0.12.2) and repeng (0.4.0) on the embedded SmolLM2-135M, layer conventions matched.

Optional: each test skips when its peer is not installed. Their venv: ``bash scripts/peers_env.sh``, then
``OMP_NUM_THREADS=1 .venv-peers/bin/python -m pytest -s tests/test_peers.py`` (steering-vectors declares
transformers<5 and is installed with --no-deps next to transformers 5; see docs/portability.md). Conventions: steering-vectors'
``decoder_block`` layer k and repeng's layer k (a wrapper around ``model.model.layers[k]``, read from
``hidden_states[k+1]``) are both the output of decoder block k = steerlab layer k. steering-vectors adds its vector
at every position (``min_token_index=0``) and repeng at every non-padding position: steerlab's ``policy="all"``.

What was found (who is right is decided against a batch-1 reference: each prompt run alone):
- steering-vectors' ``extract_activations(batch_size>1)`` and repeng's ``batched_get_hiddens`` pass a left-padded
  batch to the model without position ids, so a padded row is read at positions shifted by its padding. On the
  embedded Llama-architecture model that costs only float error (RoPE attention depends on relative positions):
  their states match batch-1 to about 1e-4 (printed). On a model with absolute position embeddings (GPT-2, tiny
  random one below) the same call is wrong: both peers are off by 0.095 (max abs) against batch-1, while
  steerlab's batched capture, which gives position ids that skip the padding, equals it (7e-9). The peers are
  right with right padding and with batch size 1 (steering-vectors' default).
- For steered logits and generation all three agree once given the same inputs; steering-vectors also adds its
  vector on padding positions, which the attention mask hides from the real tokens, so the outputs still agree.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from peer_data import TEST_PROMPTS, contrast_pairs
from steerlab.capture import capture
from steerlab.models import left_pad, position_ids_from_mask, render_prompts, tokenize_texts
from steerlab.steering import steer
from steerlab.vectors.estimators import mean_difference, paired_pca

LAYERS = [5, 15, 25]
pytestmark = pytest.mark.embedded


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


def _batch1_last(lm, texts, layer):
    """Reference: each text alone, HF hidden_states[layer + 1] at its last token."""
    rows = []
    for t in texts:
        ids = torch.tensor([tokenize_texts(lm.tokenizer, [t])[0]])
        with torch.no_grad():
            hs = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
        rows.append(hs[layer + 1][0, -1])
    return torch.stack(rows)


def _inputs(lm, texts):
    ids, mask = left_pad(tokenize_texts(lm.tokenizer, texts), lm.tokenizer.pad_token_id)
    return ids, mask, position_ids_from_mask(mask)


@pytest.fixture(scope="module")
def pairs():
    return contrast_pairs(12)


def test_captured_states_match_steering_vectors(smollm, pairs):
    pytest.importorskip("steering_vectors")
    texts = [p for p, _ in pairs]
    ref = _batch1_last(smollm, texts, 15)
    ours = capture(smollm, texts, layers=[15], chat=False, batch_size=6, progress=False)[15]
    assert (ours - ref).abs().max() < 1e-3  # left-padded batches of 6 = one at a time
    tok = smollm.tokenizer
    errs = {}
    for bs, side in ((1, "left"), (6, "left"), (6, "right")):
        tok.padding_side = side
        try:
            pos, _ = importlib.import_module("steering_vectors.train_steering_vector").extract_activations(
                smollm.model, tok, [(t, t) for t in texts], layers=[15], batch_size=bs
            )
        finally:
            tok.padding_side = "left"
        errs[bs, side] = float((torch.cat(pos[15]) - ref).abs().max())
        print(f"steering-vectors batch {bs} {side} padding: max |state - batch-1| = {errs[bs, side]:.3g}")
    assert errs[1, "left"] < 1e-3 and errs[6, "right"] < 1e-3
    assert errs[6, "left"] < 1e-2  # RoPE: shifted absolute positions cost only float error here


def test_captured_states_match_repeng(smollm, pairs):
    repeng_extract = pytest.importorskip("repeng.extract")
    texts = [p for p, _ in pairs]
    ref = _batch1_last(smollm, texts, 15)
    for bs in (1, 6):
        h = repeng_extract.batched_get_hiddens(smollm.model, smollm.tokenizer, texts, [15], bs)[15]
        err = float((torch.from_numpy(h) - ref).abs().max())
        print(f"repeng batch {bs} (left padding, no position ids): max |state - batch-1| = {err:.3g}")
        assert err < (1e-3 if bs == 1 else 1e-2)  # RoPE: shifted absolute positions cost only float error


def test_left_padding_without_position_ids_is_wrong_on_absolute_positions(tiny_models):
    """GPT-2 (learned absolute positions): the peers' batched reads are wrong, steerlab's batched capture is right."""
    pytest.importorskip("steering_vectors")
    repeng_extract = pytest.importorskip("repeng.extract")
    lm = tiny_models("gpt2")
    texts = ["hi", "a much longer prompt than the first", "mid length one", "x"]
    ref = _batch1_last(lm, texts, 1)
    ours = capture(lm, texts, layers=[1], chat=False, batch_size=4, progress=False)[1]
    assert (ours - ref).abs().max() < 1e-4
    sv_mod = importlib.import_module("steering_vectors.train_steering_vector")
    pos, _ = sv_mod.extract_activations(
        lm.model, lm.tokenizer, [(t, t) for t in texts], layers=[1], batch_size=4
    )
    err_sv = float((torch.cat(pos[1]) - ref).abs().max())
    err_rp = float(
        (torch.from_numpy(repeng_extract.batched_get_hiddens(lm.model, lm.tokenizer, texts, [1], 4)[1]) - ref)
        .abs()
        .max()
    )
    print(
        f"tiny GPT-2, left-padded batch of 4: steering-vectors {err_sv:.3g}, repeng {err_rp:.3g}, steerlab "
        f"{float((ours - ref).abs().max()):.3g} (max |state - batch-1|)"
    )
    assert err_sv > 1e-2 and err_rp > 1e-2, "a peer now handles left padding: update the module docstring"


def test_trained_vectors_match_peers(smollm, pairs):
    sv = pytest.importorskip("steering_vectors")
    repeng = pytest.importorskip("repeng")
    acts_pos = capture(smollm, [p for p, _ in pairs], layers=LAYERS, chat=False, progress=False)
    acts_neg = capture(smollm, [n for _, n in pairs], layers=LAYERS, chat=False, progress=False)
    vec = sv.train_steering_vector(smollm.model, smollm.tokenizer, pairs, layers=LAYERS, batch_size=1)
    ctrl = repeng.ControlVector.train(
        smollm.model,
        smollm.tokenizer,
        [repeng.DatasetEntry(p, n) for p, n in pairs],
        hidden_layers=LAYERS,
        batch_size=1,
        method="pca_diff",
    )
    for layer in LAYERS:
        ours_md = mean_difference(acts_pos[layer], acts_neg[layer], normalize=False)
        ours_pca = paired_pca(acts_pos[layer], acts_neg[layer])
        c_sv = _cos(ours_md, vec.layer_activations[layer])
        c_rp = _cos(ours_pca, torch.from_numpy(ctrl.directions[layer]))
        print(
            f"layer {layer}: cos(mean diff, steering-vectors) {c_sv:.6f}; cos(paired PCA, repeng) {c_rp:.6f}"
        )
        assert c_sv > 0.9999
        assert torch.allclose(ours_md, vec.layer_activations[layer].float(), atol=1e-3, rtol=1e-3)
        assert abs(c_rp) > 0.9999
        assert c_rp > 0, f"sign convention differs at layer {layer}"


def _direction(lm, pairs, layer):
    a = capture(lm, [p for p, _ in pairs], layers=[layer], chat=False, progress=False)[layer]
    b = capture(lm, [n for _, n in pairs], layers=[layer], chat=False, progress=False)[layer]
    return mean_difference(a, b)


def test_steered_logits_match_peers_with_left_padding(smollm, pairs):
    sv = pytest.importorskip("steering_vectors")
    repeng = pytest.importorskip("repeng")
    layer, coef = 15, 8.0
    v = _direction(smollm, pairs, layer)
    ids, mask, pos = _inputs(smollm, TEST_PROMPTS)

    def last_logits():
        with torch.no_grad():
            return smollm.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]

    def batch1():
        out = []
        for t in TEST_PROMPTS:
            one = torch.tensor([tokenize_texts(smollm.tokenizer, [t])[0]])
            with torch.no_grad():
                out.append(smollm.model(input_ids=one).logits[0, -1])
        return torch.stack(out)

    plain = last_logits()
    with steer(smollm, v, layer=layer, coef=coef, policy="all"):
        ours, ref = last_logits(), batch1()
    assert (ours - ref).abs().max() < 2e-3
    assert (ours - plain).abs().max() > 1.0  # the vector does something
    with sv.SteeringVector({layer: v}).apply(smollm.model, multiplier=coef):
        theirs_sv = last_logits()
    cm = repeng.ControlModel(smollm.model, [layer])
    try:
        cm.set_control(repeng.ControlVector("llama", {layer: v.numpy()}), coeff=coef)
        theirs_rp = last_logits()
    finally:
        cm.unwrap()
    for name, theirs in (("steering-vectors", theirs_sv), ("repeng", theirs_rp)):
        err = float((theirs - ref).abs().max())
        print(
            f"{name}: max |logit - batch-1 steered| = {err:.3g}; steerlab {float((ours - ref).abs().max()):.3g}"
        )
        assert err < 2e-3
        assert torch.equal(theirs.argmax(-1), ours.argmax(-1))


def test_steered_generation_matches_peers(smollm, pairs):
    """Greedy HF ``generate`` on a left-padded batch with the KV cache: the same tokens from all three."""
    sv = pytest.importorskip("steering_vectors")
    repeng = pytest.importorskip("repeng")
    layer, coef = 15, 8.0
    v = _direction(smollm, pairs, layer)
    chat = render_prompts(smollm.tokenizer, TEST_PROMPTS, chat=True)  # so that the model answers, not stops
    ids, mask, _ = _inputs(smollm, chat)

    def gen():
        with torch.no_grad():
            out = smollm.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=smollm.tokenizer.pad_token_id,
            )
        return out[:, ids.shape[1] :]

    plain = gen()
    with steer(smollm, v, layer=layer, coef=coef, policy="all"):
        ours = gen()
    with sv.SteeringVector({layer: v}).apply(smollm.model, multiplier=coef):
        theirs_sv = gen()
    cm = repeng.ControlModel(smollm.model, [layer])
    try:
        cm.set_control(repeng.ControlVector("llama", {layer: v.numpy()}), coeff=coef)
        theirs_rp = gen()
    finally:
        cm.unwrap()
    print("steered:", smollm.tokenizer.batch_decode(ours))
    assert not torch.equal(ours, plain)
    assert torch.equal(ours, theirs_sv)
    assert torch.equal(ours, theirs_rp)


def test_repeng_gguf_imports_into_steerlab(smollm, pairs, tmp_path):
    """A control vector written by repeng's ``export_gguf`` reads back as the same per-layer vectors."""
    repeng = pytest.importorskip("repeng")
    from steerlab.assets.gguf_cvec import import_control_vector

    ctrl = repeng.ControlVector.train(
        smollm.model,
        smollm.tokenizer,
        [repeng.DatasetEntry(p, n) for p, n in pairs],
        hidden_layers=[5, 15],
        batch_size=1,
    )
    ctrl.export_gguf(str(tmp_path / "r.gguf"))
    asset = import_control_vector(
        tmp_path / "r.gguf", hidden_size=smollm.hidden_size, n_layers=smollm.n_layers
    )
    assert asset.layers == [5, 15]
    for k in (5, 15):
        assert torch.equal(asset.vectors[k], torch.from_numpy(ctrl.directions[k]))
