"""Transcoders: sparse replacements of an MLP, from the MLP's input (after its norm) to the MLP's output.

acts = activation(x @ W_enc + b_enc); out = acts @ W_dec + b_dec. Activations: JumpReLU with a learned per-latent
threshold (straight-through estimator with a rectangle-kernel pseudo-derivative), TopK, or ReLU.
A ``DeltaTranscoder`` freezes a base transcoder and adds a few extra latents; ``scale`` multiplies them, and
``scale=0`` is exactly the base.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..runs import atomic_dir

ACTIVATIONS = ("jumprelu", "topk", "relu")


class _JumpReLU(torch.autograd.Function):
    """z * H(z - theta); d/dtheta via a rectangle kernel of width eps (per latent) around the threshold."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(z, theta, eps)
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        z, theta, eps = ctx.saved_tensors
        gz = grad * (z > theta).to(z.dtype)
        kernel = ((z - theta).abs() < eps / 2).to(z.dtype) / eps
        gtheta = (-theta * kernel * grad).sum(dim=tuple(range(z.dim() - 1)))
        return gz, gtheta, None


class _Step(torch.autograd.Function):
    """H(z - theta) (for the L0 penalty), gradient to theta only, via the same kernel."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(z, theta, eps)
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        z, theta, eps = ctx.saved_tensors
        kernel = ((z - theta).abs() < eps / 2).to(z.dtype) / eps
        return None, (-kernel * grad).sum(dim=tuple(range(z.dim() - 1))), None


class Transcoder(nn.Module):
    """acts = activation(x @ W_enc + b_enc); out = acts @ W_dec + b_dec.

    ``eps`` is the JumpReLU straight-through kernel's bandwidth: one number for every latent, or one per latent
    (``train.init_thresholds`` sets it from the pre-activation spread near each threshold). It only matters for
    training."""

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        d_out: int | None = None,
        activation: str = "jumprelu",
        k: int = 32,
        threshold: float = 0.01,
        eps: float | Sequence[float] | torch.Tensor = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if activation == "topk" and not 0 < k <= d_sae:
            raise ValueError(f"topk needs 0 < k <= d_sae ({d_sae}), got k={k}")
        d_out = d_in if d_out is None else d_out
        g = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(d_sae, d_out, generator=g)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        # tied initialisation (encoder = decoder transpose when d_in == d_out) keeps JumpReLU latents alive early;
        # with independent random encoders most die before their decoders become useful
        enc = 0.1 * w_dec.T if d_in == d_out else torch.randn(d_in, d_sae, generator=g) / d_in**0.5
        self.W_enc = nn.Parameter(enc)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.log_threshold = nn.Parameter(torch.full((d_sae,), float(torch.log(torch.tensor(threshold)))))
        self.register_buffer("bandwidth", torch.zeros(d_sae), persistent=False)
        self.eps = eps
        self.activation, self.k = activation, k
        self.d_in, self.d_sae, self.d_out = d_in, d_sae, d_out

    @property
    def eps(self) -> torch.Tensor:
        """The kernel bandwidth per latent, shape [d_sae]."""
        return self.bandwidth

    @eps.setter
    def eps(self, value: float | Sequence[float] | torch.Tensor) -> None:
        v = torch.as_tensor(value, dtype=torch.float32)
        v = v.expand(self.bandwidth.shape) if v.dim() == 0 else v
        if v.shape != self.bandwidth.shape:
            raise ValueError(
                f"eps must be one number or {self.bandwidth.shape[0]} numbers, got shape {tuple(v.shape)}"
            )
        if not bool(torch.isfinite(v).all()) or bool((v <= 0).any()):
            raise ValueError(f"eps must be finite and > 0, got min {float(v.min())}")
        with torch.no_grad():
            self.bandwidth.copy_(v.to(self.bandwidth.device))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._activate(self.pre_acts(x))

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "jumprelu":
            return _JumpReLU.apply(torch.relu(z), self.threshold, self.bandwidth.to(z.dtype))
        if self.activation == "topk":
            vals, idx = torch.relu(z).topk(self.k, dim=-1)
            return torch.zeros_like(z).scatter(-1, idx, vals)
        return torch.relu(z)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        acts = self.encode(x)
        return self.decode(acts), acts

    def train_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, acts, sparsity penalty) with one encoder pass: what training needs."""
        z = self.pre_acts(x)
        acts = self._activate(z)
        return self.decode(acts), acts, self._sparsity(z, acts)

    def sparsity_loss(self, x: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """JumpReLU: L0 through the straight-through step; ReLU: L1 weighted by decoder norms; TopK: none."""
        return self._sparsity(self.pre_acts(x) if self.activation == "jumprelu" else None, acts)

    def _sparsity(self, z: torch.Tensor | None, acts: torch.Tensor) -> torch.Tensor:
        if self.activation == "jumprelu":
            return _Step.apply(torch.relu(z), self.threshold, self.bandwidth.to(z.dtype)).sum(-1).mean()
        if self.activation == "relu":
            return (acts * self.W_dec.norm(dim=1)).sum(-1).mean()
        return acts.new_zeros(())

    def config(self) -> dict:
        eps = self.bandwidth.detach().cpu()
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "d_out": self.d_out,
            "activation": self.activation,
            "k": self.k,
            # one number when every latent shares it, else the per-latent list (training state only)
            "eps": float(eps[0])
            if bool((eps == eps[0]).all())
            else [float(f"{v:.6g}") for v in eps.tolist()],
        }


class DeltaTranscoder(nn.Module):
    """A frozen base transcoder plus ``d_new`` trainable latents: out = base + scale * delta."""

    def __init__(
        self, base: Transcoder, d_new: int, seed: int = 1, activation: str | None = None, k: int = 8
    ) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.delta = Transcoder(
            base.d_in,
            d_new,
            base.d_out,
            activation=activation or ("jumprelu" if base.activation == "topk" else base.activation),
            k=k,
            seed=seed,
        )
        with torch.no_grad():
            self.delta.W_dec.mul_(0.1)
            self.delta.b_dec.zero_()
        self.delta.b_dec.requires_grad_(False)  # the base's bias already centres the output

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        base_out, base_acts = self.base(x)
        d_acts = self.delta.encode(x)
        if scale == 0:
            return base_out, base_acts, d_acts
        return base_out + scale * (d_acts @ self.delta.W_dec), base_acts, d_acts

    def train_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(base output + delta contribution, delta acts, delta sparsity penalty); the base runs without grad."""
        with torch.no_grad():
            base_out = self.base(x)[0]
        contrib, acts, sparsity = self.delta.train_terms(x)  # the delta's b_dec is frozen at zero
        return base_out + contrib, acts, sparsity

    def sparsity_loss(self, x: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        return self.delta.sparsity_loss(x, acts)


def save_transcoder(model: Transcoder | DeltaTranscoder, path: str | Path, extra: dict | None = None) -> Path:
    """cfg.json + sae_weights.safetensors, written atomically; a plain transcoder's files are also sae-lens' format.

    A ``Transcoder`` is written so that sae-lens (>= 6) ``SAE.load_from_disk`` reads it (ReLU -> ``transcoder``,
    JumpReLU -> ``jumprelu_transcoder``, TopK -> ``topk`` when d_in == d_out), with steerlab's own keys beside
    sae-lens' in cfg.json. A ``DeltaTranscoder`` (base + extra latents) has no sae-lens equivalent and is written
    in steerlab's own layout.
    """
    from safetensors.torch import save_file

    from .saelens_format import SaeLensFormatError, steerlab_to_saelens

    path = Path(path)
    with atomic_dir(path) as tmp:
        if isinstance(model, DeltaTranscoder):
            tensors = {f"base.{k}": v for k, v in _weights(model.base).items()}
            tensors.update({f"delta.{k}": v for k, v in _weights(model.delta).items()})
            cfg = {"kind": "delta", "base": model.base.config(), "delta": model.delta.config()}
        else:
            tensors, cfg = _weights(model), {"kind": "transcoder", **model.config()}
            try:
                sl_cfg, tensors = steerlab_to_saelens(model.config(), tensors, extra)
                cfg = {**sl_cfg, **cfg}
            except SaeLensFormatError:
                pass  # TopK with d_in != d_out: steerlab's layout only
        save_file(
            {k: v.detach().to(torch.float32).cpu().contiguous() for k, v in tensors.items()},
            str(tmp / "sae_weights.safetensors"),
        )
        (tmp / "cfg.json").write_text(json.dumps({**cfg, **(extra or {})}, indent=2))
    return path


def _weights(t: Transcoder) -> dict[str, torch.Tensor]:
    return {"W_enc": t.W_enc, "b_enc": t.b_enc, "W_dec": t.W_dec, "b_dec": t.b_dec, "threshold": t.threshold}


def _build(cfg: dict, w: dict[str, torch.Tensor], prefix: str = "") -> Transcoder:
    t = Transcoder(
        cfg["d_in"],
        cfg["d_sae"],
        cfg.get("d_out"),
        cfg.get("activation", "jumprelu"),
        cfg.get("k", 32),
        eps=cfg.get("eps", 0.01),
    )
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            t.get_parameter(name).copy_(w[prefix + name])
        if prefix + "threshold" in w:  # ReLU and TopK files (sae-lens' too) carry none; it is unused there
            # a threshold of 0 becomes 1e-30: relu(z) > 1e-30 and z > 0 differ only for z in (0, 1e-30]
            t.log_threshold.copy_(w[prefix + "threshold"].clamp(min=1e-30).log())
    return t


def load_transcoder(path: str | Path) -> Transcoder | DeltaTranscoder:
    """steerlab's files (old and new) and sae-lens' own files (standard, jumprelu, topk, transcoder,
    jumprelu_transcoder), with sae-lens' input centring and decoder-norm rescaling folded in exactly; what
    cannot be represented is refused with the reason (``SaeLensFormatError``)."""
    from safetensors.torch import load_file

    from .saelens_format import is_saelens_cfg, saelens_to_steerlab

    path = Path(path)
    for name in ("cfg.json", "sae_weights.safetensors"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a transcoder directory: {name} is missing")
    cfg = json.loads((path / "cfg.json").read_text())
    w = load_file(str(path / "sae_weights.safetensors"))
    if cfg.get("kind") == "delta":
        base = _build(cfg["base"], w, "base.")
        d = DeltaTranscoder(base, cfg["delta"]["d_sae"])
        d.delta = _build(cfg["delta"], w, "delta.")
        return d
    if is_saelens_cfg(cfg):
        tc_cfg, w = saelens_to_steerlab(cfg, w)
        t = _build(tc_cfg, w)
        t.source_format = tc_cfg["saelens"]
        return t
    return _build(cfg, {k: v.float() for k, v in w.items()})
