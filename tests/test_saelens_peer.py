"""Round trips with sae-lens itself (optional: skipped when sae-lens is absent; it needs its own venv, see
docs/portability.md). Random weights at the embedded model's width (576), biases and thresholds made non-zero so
that every term counts; files written by sae-lens' own ``save_model`` load into steerlab, files written by
steerlab's ``save_transcoder`` load with sae-lens' ``SAE.load_from_disk``, and encode/decode agree numerically.
"""

from __future__ import annotations

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")

from steerlab.sae import Transcoder, load_transcoder, save_transcoder  # noqa: E402

D, D_SAE = 576, 1152


def _randomise(sae, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "threshold":
                p.copy_(torch.rand(p.shape, generator=g) * 0.3)
            elif name.startswith("b_"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[0] ** 0.5)
    return sae


def _x(seed=0, n=64):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) * 2.0


CASES = [
    ("jumprelu", "JumpReLUSAE", "JumpReLUSAEConfig", {"apply_b_dec_to_input": True}),
    ("jumprelu", "JumpReLUSAE", "JumpReLUSAEConfig", {"apply_b_dec_to_input": False}),
    ("standard", "StandardSAE", "StandardSAEConfig", {"apply_b_dec_to_input": True}),
    ("topk", "TopKSAE", "TopKSAEConfig", {"apply_b_dec_to_input": True, "k": 32}),
    (
        "topk",
        "TopKSAE",
        "TopKSAEConfig",
        {"apply_b_dec_to_input": False, "k": 32, "rescale_acts_by_decoder_norm": True},
    ),
    (
        "jumprelu_transcoder",
        "JumpReLUTranscoder",
        "JumpReLUTranscoderConfig",
        {"apply_b_dec_to_input": False, "d_out": D},
    ),
    ("transcoder", "Transcoder", "TranscoderConfig", {"apply_b_dec_to_input": False, "d_out": D}),
]


@pytest.mark.parametrize(
    ("arch", "cls", "cfg_cls", "kw"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_saelens_files_load_into_steerlab(tmp_path, arch, cls, cfg_cls, kw):
    cfg = getattr(sae_lens, cfg_cls)(d_in=D, d_sae=D_SAE, **kw)
    sae = _randomise(getattr(sae_lens, cls)(cfg), seed=1).eval()
    sae.save_model(tmp_path / "sae")
    tc = load_transcoder(tmp_path / "sae")
    x = _x()
    with torch.no_grad():
        acts_ref, out_ref = sae.encode(x), sae.decode(sae.encode(x))
        acts, out = tc.encode(x), tc(x)[0]
    e_enc, e_dec = float((acts - acts_ref).abs().max()), float((out - out_ref).abs().max())
    print(
        f"sae-lens {arch} {kw} -> steerlab: max |encode diff| {e_enc:.2e}, max |decode diff| {e_dec:.2e}, "
        f"active latents {(acts_ref > 0).sum(-1).float().mean():.0f}"
    )
    assert torch.equal(acts > 0, acts_ref > 0)  # the same latents fire
    assert e_enc < 1e-4 and e_dec < 1e-4


@pytest.mark.parametrize("activation", ["jumprelu", "relu", "topk"])
def test_steerlab_files_load_into_saelens(tmp_path, activation):
    tc = Transcoder(D, D_SAE, activation=activation, k=32, seed=3)
    with torch.no_grad():
        g = torch.Generator().manual_seed(4)
        tc.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.2)
        tc.b_dec.copy_(torch.randn(D, generator=g) * 0.2)
        if activation == "jumprelu":  # the only activation with thresholds
            tc.log_threshold.copy_((torch.rand(D_SAE, generator=g) * 0.3 + 0.01).log())
    save_transcoder(tc, tmp_path / "tc", extra={"layer": 15, "model": "smollm2-135m"})
    sae = sae_lens.SAE.load_from_disk(tmp_path / "tc").eval()
    x = _x(1)
    with torch.no_grad():
        acts, out = tc.encode(x), tc(x)[0]
        acts_sl, out_sl = sae.encode(x), sae.decode(sae.encode(x))
    e_enc, e_dec = float((acts - acts_sl).abs().max()), float((out - out_sl).abs().max())
    print(
        f"steerlab {activation} -> sae-lens {type(sae).__name__}: max |encode diff| {e_enc:.2e}, "
        f"max |decode diff| {e_dec:.2e}"
    )
    assert torch.equal(acts > 0, acts_sl > 0)
    assert e_enc < 1e-5 and e_dec < 1e-5
