"""A base transcoder trained briefly on the embedded SmolLM2 replaces MLP 15 at a small cross-entropy cost."""

import pytest
import torch

from steerlab.sae.corpus import offline_corpus
from steerlab.sae.scoring import cross_entropy
from steerlab.sae.splice import TranscoderSplice, mlp_pairs, zero_mlp_splice
from steerlab.sae.train import train_transcoder
from steerlab.sae.transcoder import Transcoder

pytestmark = pytest.mark.embedded


def test_base_splice_recovers_most_of_the_mlp_on_the_embedded_model(smollm):
    layer = 15
    train, held = offline_corpus(160, 40, seed=0)
    x, y = mlp_pairs(smollm, train, layer, progress=False)
    assert x.shape == y.shape and x.shape[1] == smollm.hidden_size
    tc = Transcoder(smollm.hidden_size, 1152, activation="topk", k=32, seed=0)
    hist = train_transcoder(tc, x, y, steps=150, batch_size=256, lr=1e-3, init_l0=32, progress=False)
    assert hist["nmse"][-1] < 0.5
    raw = cross_entropy(smollm, held, chat=True)
    with TranscoderSplice(smollm, layer, tc):
        spliced = cross_entropy(smollm, held, chat=True)
    with zero_mlp_splice(smollm, layer):
        ablated = cross_entropy(smollm, held, chat=True)
    after = cross_entropy(smollm, held, chat=True)
    assert torch.equal(after, raw)  # removing the splice restores the model exactly
    cost, zeroed = float((spliced - raw).mean()), float((ablated - raw).mean())
    assert zeroed > 0.05, zeroed  # MLP 15 matters on this text, so the comparison means something
    assert cost < 0.5 * zeroed, (cost, zeroed)
