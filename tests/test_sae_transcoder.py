"""The transcoder classes one to one (one per activation, registered by name): exact activations and sparsity
penalties on hand-set weights, their options and files, unit changes, and an activation registered from outside."""

import pytest
import torch

from steerlab.config import UserError
from steerlab.sae.transcoder import (
    ACTIVATIONS,
    TRANSCODERS,
    JumpReLUTranscoder,
    ReLUTranscoder,
    TopKTranscoder,
    Transcoder,
    load_transcoder,
    register_transcoder,
    save_transcoder,
    transcoder_class,
)

Z = torch.tensor([[2.0, -1.0, 0.5, 3.0]])  # pre-activations when W_enc = I and b_enc = 0


def _identity(t: Transcoder) -> Transcoder:
    with torch.no_grad():
        t.W_enc.copy_(torch.eye(4))
        t.W_dec.copy_(torch.eye(4) * torch.tensor([[1.0], [2.0], [1.0], [0.5]]))  # decoder norms 1, 2, 1, 0.5
        t.b_enc.zero_()
        t.b_dec.zero_()
    return t


def test_the_activation_picks_the_class():
    assert list(ACTIVATIONS) == ["jumprelu", "topk", "relu"]
    for name, cls in (("jumprelu", JumpReLUTranscoder), ("topk", TopKTranscoder), ("relu", ReLUTranscoder)):
        t = Transcoder(4, 8, activation=name, k=2, seed=5)
        assert type(t) is cls and t.activation == name and transcoder_class(name) is cls
        direct = cls(4, 8, k=2, seed=5)  # the class itself builds the same transcoder
        assert all(torch.equal(a, b) for a, b in zip(t.state_dict().values(), direct.state_dict().values()))
    assert type(Transcoder(4, 8)) is JumpReLUTranscoder  # the default
    with pytest.raises(UserError, match="unknown activation 'gelu'; valid: jumprelu, topk, relu"):
        Transcoder(4, 8, activation="gelu")
    with pytest.raises(ValueError, match="TopKTranscoder has the 'topk' activation, not 'relu'"):
        TopKTranscoder(4, 8, activation="relu")


def test_jumprelu_exact():
    t = _identity(JumpReLUTranscoder(4, 4, threshold=1.0, eps=0.5))
    torch.testing.assert_close(
        t.encode(Z), torch.tensor([[2.0, 0.0, 0.0, 3.0]])
    )  # 0.5 is under the threshold
    assert float(t.sparsity_loss(Z, t.encode(Z)).detach()) == 2.0  # L0: two latents above their thresholds
    assert t.config() == {"d_in": 4, "d_sae": 4, "d_out": 4, "activation": "jumprelu", "eps": 0.5}
    assert set(t.weights()) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        JumpReLUTranscoder(4, 4, eps=0.0)


def test_topk_exact():
    t = _identity(TopKTranscoder(4, 4, k=2))
    torch.testing.assert_close(t.encode(Z), torch.tensor([[2.0, 0.0, 0.0, 3.0]]))
    assert float(t.sparsity_loss(Z, t.encode(Z)).detach()) == 0.0  # L0 is fixed at k: no penalty
    assert t.config() == {"d_in": 4, "d_sae": 4, "d_out": 4, "activation": "topk", "k": 2}
    assert set(t.weights()) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    with pytest.raises(ValueError, match="topk needs 0 < k <= d_sae \\(4\\), got k=5"):
        TopKTranscoder(4, 4, k=5)


def test_relu_exact():
    t = _identity(ReLUTranscoder(4, 4))
    acts = t.encode(Z)
    torch.testing.assert_close(acts, torch.tensor([[2.0, 0.0, 0.5, 3.0]]))
    # L1 weighted by decoder norms: 2*1 + 0.5*1 + 3*0.5
    assert float(t.sparsity_loss(Z, acts).detach()) == pytest.approx(4.0)
    torch.testing.assert_close(t(Z)[0], torch.tensor([[2.0, 0.0, 0.5, 1.5]]))
    assert t.config() == {"d_in": 4, "d_sae": 4, "d_out": 4, "activation": "relu"}


@pytest.mark.parametrize("activation", ["jumprelu", "topk", "relu"])
def test_change_units_keeps_the_function(activation):
    """Inputs in units of s_x and outputs in units of s_y: the same function of the rescaled data, and back."""
    torch.manual_seed(0)
    t = Transcoder(6, 12, activation=activation, k=3, threshold=0.05, seed=1)
    with torch.no_grad():
        t.b_enc.uniform_(-0.1, 0.1)
        t.b_dec.uniform_(-0.1, 0.1)
    x = torch.randn(20, 6)
    before = t(x)[0]
    sx, sy = 4.0, 0.25
    t.change_units(sx / sy, 1 / sy, with_bias=True)
    torch.testing.assert_close(t(x / sx)[0], before / sy, rtol=1e-4, atol=1e-5)
    t.change_units(sy / sx, sy, with_bias=True)
    torch.testing.assert_close(t(x)[0], before, rtol=1e-4, atol=1e-5)


@pytest.fixture
def registry():
    saved = dict(TRANSCODERS)
    yield
    TRANSCODERS.clear()
    TRANSCODERS.update(saved)


@pytest.mark.usefixtures("registry")
def test_an_activation_registered_from_outside(tmp_path):
    """A new activation is one class and its decorator: the generic constructor, the config check and the files
    know it."""
    from steerlab.sae.config import ToolUseConfig

    @register_transcoder("softplus")
    class SoftplusTranscoder(Transcoder):
        def _activate(self, z: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.softplus(z)

    t = Transcoder(4, 6, activation="softplus", seed=2)
    assert isinstance(t, SoftplusTranscoder) and "softplus" in ACTIVATIONS
    x = torch.randn(3, 4)
    back = load_transcoder(save_transcoder(t, tmp_path / "sp"))
    assert type(back) is SoftplusTranscoder
    torch.testing.assert_close(back(x)[0], t(x)[0])
    ToolUseConfig.from_dict({"activation": "softplus"})  # the study's config accepts it
    with pytest.raises(ValueError, match="'softplus' is already registered"):
        register_transcoder("softplus")(SoftplusTranscoder)
