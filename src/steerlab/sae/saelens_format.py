"""SAELens (sae-lens >= 6) file conventions for transcoders and SAEs: read them exactly or refuse; write files it loads.

A sae-lens directory is ``cfg.json`` + ``sae_weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_out],
b_dec, and ``threshold`` for JumpReLU). sae-lens' inference forward, per architecture:

- ``standard`` / ``transcoder``: acts = relu(x' @ W_enc + b_enc); out = acts @ W_dec + b_dec
- ``jumprelu`` / ``jumprelu_transcoder``: acts = relu(z) * (z > threshold), z = x' @ W_enc + b_enc
- ``topk``: z = x' @ W_enc + b_enc (times ||W_dec_i|| if ``rescale_acts_by_decoder_norm``), keep the k largest,
  relu them; decode divides by ||W_dec_i|| again when that flag is set

with x' = x - b_dec when ``apply_b_dec_to_input`` (SAEs only; transcoders forbid it). steerlab's ``Transcoder`` has
no input centring and no decoder-norm rescaling, so both are folded into the weights on load, which is exact up
to float rounding: b_enc <- b_enc - b_dec @ W_enc; W_enc, b_enc <- times ||W_dec_i||, W_dec <- W_dec / ||W_dec_i||.
What cannot be expressed as such a fold is refused with the reason: per-input normalisation (``constant_norm_rescale``,
``layer_norm``), ``hook_z`` head reshaping, skip connections, gated / abs-TopK / matching-pursuit / temporal SAEs,
an unfolded finetuning scaling factor. ``expected_average_only_in`` and ``covariance_whitening`` are accepted as
sae-lens' own inference does: it applies no run-time transform for them (they are folded in before saving).
"""

from __future__ import annotations

import torch

from ..config import UserError

SUPPORTED = ("standard", "jumprelu", "topk", "transcoder", "jumprelu_transcoder")
_ACTIVATION = {
    "standard": "relu",
    "transcoder": "relu",
    "jumprelu": "jumprelu",
    "jumprelu_transcoder": "jumprelu",
    "topk": "topk",
}
_WHY_NOT = {
    "skip_transcoder": "it adds a skip connection x @ W_skip that steerlab's Transcoder does not have",
    "jumprelu_skip_transcoder": "it adds a skip connection x @ W_skip that steerlab's Transcoder does not have",
    "gated": "its gated encoder (separate gate and magnitude paths) has no steerlab equivalent",
    "abstopk": "it keeps the k largest |pre-activations| (negative ones too), which steerlab's TopK does not",
    "batchtopk": "it is a training-time architecture; sae-lens saves the inference form as jumprelu",
    "matryoshka_batchtopk": "it is a training-time architecture; sae-lens saves the inference form as jumprelu",
    "matching_pursuit": "its iterative matching-pursuit encoder has no steerlab equivalent",
    "temporal": "its temporal attention encoder has no steerlab equivalent",
}
SAELENS_SCHEMA_VERSION = "6.0.0"  # the cfg.json schema written (sae-lens treats older files as pre-6.0)


class SaeLensFormatError(UserError):
    """A sae-lens file that steerlab cannot represent exactly, or a model that sae-lens cannot represent."""


def is_saelens_cfg(cfg: dict) -> bool:
    return "architecture" in cfg or "activation_fn_str" in cfg or "hook_point" in cfg


def _normalise_pre6(cfg: dict) -> dict:
    """Pre-6.0 sae-lens configs: renamed keys and defaults, as sae-lens itself fills them in."""
    cfg = dict(cfg)
    for old, new in (("hook_point", "hook_name"), ("activation_fn_str", "activation_fn")):
        if old in cfg and new not in cfg:
            cfg[new] = cfg.pop(old)
    cfg.setdefault("apply_b_dec_to_input", True)
    cfg.setdefault("architecture", "standard")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if cfg.get("activation_fn") == "topk" and kwargs.get("k") is not None:
        cfg["architecture"], cfg["k"] = "topk", kwargs["k"]
    return cfg


def _version(cfg: dict) -> str | None:
    return cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")


def saelens_to_steerlab(cfg: dict, weights: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """A sae-lens config + state dict as steerlab Transcoder arguments + fp32 weights (folds applied, exact)."""
    version = _version(cfg)
    if not version or _major(version) < 6:
        cfg = _normalise_pre6(cfg)
    arch = cfg.get("architecture")
    if arch not in SUPPORTED:
        why = _WHY_NOT.get(arch, "steerlab has no equivalent")
        raise SaeLensFormatError(
            f"sae-lens architecture {arch!r} cannot be loaded: {why}. Supported: {', '.join(SUPPORTED)}"
        )
    if cfg.get("activation_fn", "relu") not in ("relu", "topk", None) and arch in ("standard", "transcoder"):
        raise SaeLensFormatError(f"activation function {cfg['activation_fn']!r} is not supported (only relu)")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm in ("constant_norm_rescale", "layer_norm"):
        raise SaeLensFormatError(
            f"normalize_activations={norm!r} rescales each input by its own norm/statistics at run time, which a "
            "fixed affine encoder cannot express; fold or remove it in sae-lens first"
        )
    if norm not in ("none", "expected_average_only_in", "covariance_whitening"):
        raise SaeLensFormatError(f"unknown normalize_activations {norm!r}")
    if (cfg.get("reshape_activations") or "none") != "none":
        raise SaeLensFormatError(
            f"reshape_activations={cfg['reshape_activations']!r} (attention hook_z SAEs) is not supported: "
            "steerlab's sites are residual/MLP vectors"
        )
    if cfg.get("finetuning_scaling_factor") and "scaling_factor" in weights:
        raise SaeLensFormatError(
            "an unfolded finetuning scaling_factor is not supported; fold it in sae-lens first"
        )
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in weights]
    if _ACTIVATION[arch] == "jumprelu" and "threshold" not in weights:
        missing.append("threshold")
    if missing:
        raise SaeLensFormatError(f"the weights file lacks {', '.join(missing)} for architecture {arch!r}")
    w = {k: v.detach().to(torch.float64) for k, v in weights.items()}
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    d_out = int(cfg.get("d_out", d_in))
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_out), "b_dec": (d_out,)}
    for name, shape in shapes.items():
        if tuple(w[name].shape) != shape:
            raise SaeLensFormatError(
                f"{name} has shape {tuple(w[name].shape)}; cfg.json (d_in={d_in}, d_sae={d_sae}, d_out={d_out}) "
                f"implies {shape}"
            )
    w_enc, b_enc, w_dec, b_dec = w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"]
    folds = []
    if cfg.get("apply_b_dec_to_input", False):
        if d_in != d_out:
            raise SaeLensFormatError(f"apply_b_dec_to_input needs d_in == d_out, got {d_in} and {d_out}")
        b_enc = b_enc - b_dec @ w_enc
        folds.append("apply_b_dec_to_input: b_enc -= b_dec @ W_enc")
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        n = w_dec.norm(dim=1)
        w_enc, b_enc, w_dec = w_enc * n, b_enc * n, w_dec / n.unsqueeze(1)
        folds.append("rescale_acts_by_decoder_norm: W_enc, b_enc *= ||W_dec_i||; W_dec /= ||W_dec_i||")
    out = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec}
    if "threshold" in w and _ACTIVATION[arch] == "jumprelu":
        out["threshold"] = w["threshold"].clamp(min=0.0)  # relu(z) * (z > t) == relu(z) for every t <= 0
    tc_cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "d_out": d_out,
        "activation": _ACTIVATION[arch],
        "k": int(cfg.get("k", 32)),
        "eps": _eps(cfg.get("eps", 0.01)),
        "saelens": {
            "architecture": arch,
            "dtype": cfg.get("dtype"),
            "normalize_activations": norm,
            "folds": folds,
            "metadata": cfg.get("metadata") or {},
        },
    }
    if arch == "topk" and not 0 < tc_cfg["k"] <= d_sae:
        raise SaeLensFormatError(f"topk needs 0 < k <= d_sae ({d_sae}), got k={tc_cfg['k']}")
    return tc_cfg, {k: v.to(torch.float32) for k, v in out.items()}


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def steerlab_to_saelens(
    config: dict, weights: dict[str, torch.Tensor], extra: dict | None = None
) -> tuple[dict, dict[str, torch.Tensor]]:
    """A steerlab Transcoder's config + weights as a sae-lens cfg.json + state dict that ``SAE.load_from_disk`` reads.

    ReLU and JumpReLU map to sae-lens' ``transcoder`` / ``jumprelu_transcoder``; TopK (which sae-lens has only as an
    SAE) maps to ``topk`` and needs d_in == d_out (steerlab's MLP transcoders have it).
    """
    act, d_in, d_sae, d_out = config["activation"], config["d_in"], config["d_sae"], config["d_out"]
    if act == "topk" and d_in != d_out:
        raise SaeLensFormatError(
            f"sae-lens has no TopK transcoder; a TopK model can be saved as a sae-lens 'topk' SAE only when "
            f"d_in == d_out (got {d_in} and {d_out})"
        )
    arch = {"relu": "transcoder", "jumprelu": "jumprelu_transcoder", "topk": "topk"}.get(act)
    if arch is None:
        raise SaeLensFormatError(f"sae-lens has no architecture for the activation {act!r}")
    extra = dict(extra or {})
    metadata = {"sae_lens_version": SAELENS_SCHEMA_VERSION, "written_by": "steerlab"}
    layer = extra.get("layer")
    if isinstance(layer, int):
        # TransformerLens hook names of the MLP input after its norm and of the MLP output: steerlab's mlp_in -> mlp
        metadata.update(
            {
                "hook_name": f"blocks.{layer}.ln2.hook_normalized",
                "hook_name_out": f"blocks.{layer}.hook_mlp_out",
            }
        )
    if extra.get("model"):
        metadata["model_name"] = extra["model"]
    cfg = {
        "architecture": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
    }
    if arch != "topk":
        cfg["d_out"] = d_out
    else:
        cfg.update({"k": config["k"], "rescale_acts_by_decoder_norm": False})
    state = {k: weights[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if act == "jumprelu":
        state["threshold"] = weights["threshold"]
    return cfg, state


def _eps(value: object) -> float | list[float]:
    """The JumpReLU kernel bandwidth of a config: one number, or one per latent (steerlab's own files)."""
    if isinstance(value, list | tuple):
        return [float(v) for v in value]
    return float(value)
