"""SAELens file conventions, without sae-lens installed: hand-built files in its layout, exact encode/decode values.

Each case was once loaded wrong or not at all (sae-lens 6.54 files): JumpReLU with ``apply_b_dec_to_input`` loaded
silently wrong (the flag was ignored); ReLU and TopK files failed with KeyError 'threshold'; steerlab's own files
failed in sae-lens with KeyError 'dtype'. ``test_saelens_peer.py`` checks the same against sae-lens itself.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from steerlab.sae import Transcoder, load_transcoder, save_transcoder
from steerlab.sae.saelens_format import SaeLensFormatError

T = torch.tensor


def _write(path, cfg, weights):
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path / "sae_weights.safetensors"))
    return path


def _cfg(arch, d_in, d_sae, **kw):
    return {
        "architecture": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.54.12", "hook_name": "blocks.3.hook_resid_post"},
        **kw,
    }


W_ENC = T([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
W_DEC = T([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
B_ENC = T([0.0, 0.0, 0.5])
B_DEC = T([1.0, 1.0])


def test_jumprelu_with_b_dec_applied_to_input(tmp_path):
    """x' = x - b_dec; z = x' W_enc + b_enc; acts = relu(z) * (z > t); out = acts W_dec + b_dec (worked by hand)."""
    w = {"W_enc": W_ENC, "b_enc": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC, "threshold": T([0.5, 0.5, 0.5])}
    tc = load_transcoder(_write(tmp_path / "j", _cfg("jumprelu", 2, 3, apply_b_dec_to_input=True), w))
    x = T([[3.0, 1.0], [1.25, 1.0]])
    # row 0: x' = [2, 0], z = [2, 0, 2.5] -> acts [2, 0, 2.5] -> out [2 + 2.5 + 1, 2.5 + 1]
    # row 1: x' = [0.25, 0], z = [0.25, 0, 0.75] -> acts [0, 0, 0.75] -> out [1.75, 1.75]
    torch.testing.assert_close(tc.encode(x), T([[2.0, 0.0, 2.5], [0.0, 0.0, 0.75]]))
    torch.testing.assert_close(tc(x)[0], T([[5.5, 3.5], [1.75, 1.75]]))
    assert tc.source_format["folds"] == ["apply_b_dec_to_input: b_enc -= b_dec @ W_enc"]


def test_standard_relu_file_has_no_threshold(tmp_path):
    w = {"W_enc": W_ENC, "b_enc": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC}
    tc = load_transcoder(_write(tmp_path / "s", _cfg("standard", 2, 3), w))
    x = T([[3.0, 1.0], [-1.0, 2.0]])
    # row 0: z = [3, 1, 2.5]; row 1: z = [-1, 2, -2.5] -> relu [0, 2, 0]
    torch.testing.assert_close(tc.encode(x), T([[3.0, 1.0, 2.5], [0.0, 2.0, 0.0]]))
    torch.testing.assert_close(tc(x)[0], T([[6.5, 4.5], [1.0, 3.0]]))


def test_topk_with_decoder_norm_rescaling(tmp_path):
    """k=1; z scaled by ||W_dec_i|| = [2, 1, 1] before the top-k, and divided again in decode."""
    w_dec = T([[2.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    w = {"W_enc": W_ENC, "b_enc": B_ENC, "W_dec": w_dec, "b_dec": B_DEC}
    cfg = _cfg("topk", 2, 3, k=1, rescale_acts_by_decoder_norm=True)
    tc = load_transcoder(_write(tmp_path / "t", cfg, w))
    x = T([[1.0, 1.5]])
    # z = [1, 1.5, 0] * [2, 1, 1] = [2, 1.5, 0] -> keep latent 0 (2.0); decode 2.0 / 2 * [2, 0] + b_dec = [3, 1]
    torch.testing.assert_close(tc.encode(x), T([[2.0, 0.0, 0.0]]))
    torch.testing.assert_close(tc(x)[0], T([[3.0, 1.0]]))


def test_jumprelu_transcoder_with_other_output_width(tmp_path):
    w = {
        "W_enc": W_ENC,
        "b_enc": B_ENC,
        "W_dec": T([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        "b_dec": T([0.0, 0.0, 1.0]),
        "threshold": T([0.0, 1.5, 0.0]),
    }
    tc = load_transcoder(_write(tmp_path / "jt", _cfg("jumprelu_transcoder", 2, 3, d_out=3), w))
    x = T([[3.0, 1.0]])  # z = [3, 1, 2.5]; latent 1 is under its threshold 1.5
    torch.testing.assert_close(tc.encode(x), T([[3.0, 0.0, 2.5]]))
    torch.testing.assert_close(tc(x)[0], T([[5.5, 2.5, 9.5]]))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"architecture": "skip_transcoder", "d_out": 2}, "skip connection"),
        ({"architecture": "gated"}, "gated"),
        ({"normalize_activations": "layer_norm"}, "layer_norm.*per-input|rescales each input"),
        ({"normalize_activations": "constant_norm_rescale"}, "constant_norm_rescale"),
        ({"reshape_activations": "hook_z"}, "hook_z"),
        ({"d_sae": 4}, r"W_enc has shape \(2, 3\).*\(2, 4\)"),
    ],
)
def test_unrepresentable_files_are_refused(tmp_path, change, match):
    w = {"W_enc": W_ENC, "b_enc": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC}
    with pytest.raises(SaeLensFormatError, match=match):
        load_transcoder(_write(tmp_path / "x", {**_cfg("standard", 2, 3), **change}, w))


def test_pre6_config_defaults_to_b_dec_on_input(tmp_path):
    """sae-lens < 6 wrote no architecture and applied b_dec to the input by default, as sae-lens still reads it."""
    cfg = {
        "d_in": 2,
        "d_sae": 3,
        "dtype": "float32",
        "hook_point": "blocks.0.hook_resid_pre",
        "activation_fn_str": "relu",
    }
    w = {"W_enc": W_ENC, "b_enc": B_ENC, "W_dec": W_DEC, "b_dec": B_DEC}
    tc = load_transcoder(_write(tmp_path / "p", cfg, w))
    torch.testing.assert_close(tc.encode(T([[3.0, 1.0]])), T([[2.0, 0.0, 2.5]]))


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_steerlab_files_carry_what_saelens_needs(tmp_path, activation):
    tc = Transcoder(6, 10, activation=activation, k=3, seed=2)
    save_transcoder(tc, tmp_path / "t", extra={"layer": 15, "model": "smollm2-135m"})
    cfg = json.loads((tmp_path / "t" / "cfg.json").read_text())
    want_arch = {"relu": "transcoder", "jumprelu": "jumprelu_transcoder", "topk": "topk"}[activation]
    assert cfg["architecture"] == want_arch and cfg["dtype"] == "float32" and cfg["device"] == "cpu"
    assert cfg["apply_b_dec_to_input"] is False and cfg["normalize_activations"] == "none"
    assert cfg["reshape_activations"] == "none" and cfg["metadata"]["sae_lens_version"].startswith("6.")
    assert cfg["metadata"]["hook_name"] == "blocks.15.ln2.hook_normalized"
    keys = set(load_file(str(tmp_path / "t" / "sae_weights.safetensors")))
    assert keys == {"W_enc", "b_enc", "W_dec", "b_dec"} | (
        {"threshold"} if activation == "jumprelu" else set()
    )
    back = load_transcoder(tmp_path / "t")
    x = torch.randn(5, 6)
    torch.testing.assert_close(back(x)[0], tc(x)[0])


def test_old_steerlab_layout_still_loads(tmp_path):
    """Files written before this change: steerlab keys only, a threshold tensor for every activation."""
    tc = Transcoder(4, 8, activation="topk", k=2, seed=1)
    with torch.no_grad():
        tc.b_dec.add_(0.5)
    w = {
        "W_enc": tc.W_enc,
        "b_enc": tc.b_enc,
        "W_dec": tc.W_dec,
        "b_dec": tc.b_dec,
        "threshold": torch.full((8,), 0.01),  # what they held for TopK: the unused default threshold
    }
    cfg = {"kind": "transcoder", **tc.config(), "layer": 3}
    back = load_transcoder(_write(tmp_path / "old", cfg, {k: v.detach() for k, v in w.items()}))
    x = torch.randn(3, 4)
    torch.testing.assert_close(back(x)[0], tc(x)[0])
