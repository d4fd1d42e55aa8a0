"""Transcoders: sparse replacements of an MLP, from the MLP's input (after its norm) to the MLP's output.

acts = activation(x @ W_enc + b_enc); out = acts @ W_dec + b_dec. One class per activation, registered by name
(``register_transcoder``, as SAELens registers its architectures): JumpReLU with a learned per-latent threshold
(straight-through estimator with a rectangle-kernel pseudo-derivative), TopK, or ReLU.
A ``DeltaTranscoder`` freezes a base transcoder and adds a few extra latents; ``scale`` multiplies them, and
``scale=0`` is exactly the base.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

import torch
from torch import nn

from ..config import UserError
from ..runs import atomic_dir


class Transcoder(nn.Module):
    """acts = activation(x @ W_enc + b_enc); out = acts @ W_dec + b_dec, with the activation of the subclass.

    Each activation is one registered subclass (``JumpReLUTranscoder``, ``TopKTranscoder``, ``ReLUTranscoder``);
    ``Transcoder(d_in, d_sae, activation="topk", k=32)`` builds the registered class for ``activation`` (default
    ``jumprelu``), so a config names the activation and never branches on it. A subclass implements
    ``_activate`` and, where it has one, ``_sparsity``; its own options (``k``; ``threshold`` and ``eps``) are
    taken by ``_init_activation`` and written by ``config``.
    """

    activation: ClassVar[str] = ""  # set by register_transcoder
    sparsity_reads_pre_acts: ClassVar[bool] = False  # _sparsity needs the pre-activations, not only the acts

    def __new__(cls, *args: object, **kwargs: object) -> Transcoder:
        if cls is Transcoder:
            act = kwargs.get("activation", args[3] if len(args) > 3 else None)
            cls = transcoder_class(act or "jumprelu")
        return super().__new__(cls)

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        d_out: int | None = None,
        activation: str | None = None,
        k: int = 32,
        threshold: float = 0.01,
        eps: float | Sequence[float] | torch.Tensor = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if activation is not None and activation != self.activation:
            raise ValueError(
                f"{type(self).__name__} has the {self.activation!r} activation, not {activation!r}; "
                f"build Transcoder(..., activation={activation!r}) instead"
            )
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
        self.d_in, self.d_sae, self.d_out = d_in, d_sae, d_out
        self._init_activation(k=k, threshold=threshold, eps=eps)

    # ------------------------------------------------------------------ what a subclass provides

    def _init_activation(
        self, *, k: int, threshold: float, eps: float | Sequence[float] | torch.Tensor
    ) -> None:
        """Take the activation's own options (the others are ignored)."""

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no activation")

    def _sparsity(self, z: torch.Tensor | None, acts: torch.Tensor) -> torch.Tensor:
        """The sparsity penalty (none by default); ``z`` is given only when ``sparsity_reads_pre_acts``."""
        return acts.new_zeros(())

    def _config_extra(self) -> dict:
        return {}

    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors a file holds (sae-lens names)."""
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}

    def load_weights(self, w: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Copy a file's tensors in (``prefix``: their names' prefix in a delta file)."""
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                self.get_parameter(name).copy_(w[prefix + name])

    def change_units(self, enc: float, out: float, with_bias: bool) -> None:
        """Change the units the transcoder works in without changing what it computes (its activations are
        positively homogeneous): inputs divided by s_x and outputs by s_y is ``enc = s_x / s_y, out = 1 / s_y``;
        the inverse folds the scales back. ``with_bias``: the output bias too (a delta's is frozen at zero)."""
        with torch.no_grad():
            self.W_enc.mul_(enc)
            self.b_enc.mul_(out)
            if with_bias:
                self.b_dec.mul_(out)

    # ------------------------------------------------------------------ shared

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._activate(self.pre_acts(x))

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
        """The activation's sparsity penalty on ``acts`` (the encoding of ``x``)."""
        return self._sparsity(self.pre_acts(x) if self.sparsity_reads_pre_acts else None, acts)

    def config(self) -> dict:
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "d_out": self.d_out,
            "activation": self.activation,
            **self._config_extra(),
        }


TRANSCODERS: dict[str, type[Transcoder]] = {}  # activation name -> its class, in registration order
ACTIVATIONS = TRANSCODERS.keys()  # the registered activations (a live view)
T = TypeVar("T", bound=type[Transcoder])


def register_transcoder(activation: str) -> Callable[[T], T]:
    """Class decorator: register a ``Transcoder`` subclass as the class for ``activation``."""

    def deco(cls: T) -> T:
        if activation in TRANSCODERS:
            raise ValueError(
                f"activation {activation!r} is already registered ({TRANSCODERS[activation].__name__})"
            )
        cls.activation = activation
        TRANSCODERS[activation] = cls
        return cls

    return deco


def transcoder_class(activation: str) -> type[Transcoder]:
    """The registered class for ``activation``; a UserError lists the registered ones."""
    if activation not in TRANSCODERS:
        raise UserError(f"unknown activation {activation!r}; valid: {', '.join(TRANSCODERS)}")
    return TRANSCODERS[activation]


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


@register_transcoder("jumprelu")
class JumpReLUTranscoder(Transcoder):
    """relu(z) * (z > threshold), a learned threshold per latent; L0 penalty through a straight-through step.

    ``eps`` is the straight-through kernel's bandwidth: one number for every latent, or one per latent
    (``train.init_thresholds`` sets it from the pre-activation spread near each threshold). It only matters for
    training."""

    sparsity_reads_pre_acts = True

    def _init_activation(
        self, *, k: int, threshold: float, eps: float | Sequence[float] | torch.Tensor
    ) -> None:
        del k
        self.log_threshold = nn.Parameter(
            torch.full((self.d_sae,), float(torch.log(torch.tensor(threshold))))
        )
        self.register_buffer("bandwidth", torch.zeros(self.d_sae), persistent=False)
        self.eps = eps

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

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        return _JumpReLU.apply(torch.relu(z), self.threshold, self.bandwidth.to(z.dtype))

    def _sparsity(self, z: torch.Tensor | None, acts: torch.Tensor) -> torch.Tensor:
        return _Step.apply(torch.relu(z), self.threshold, self.bandwidth.to(z.dtype)).sum(-1).mean()

    def _config_extra(self) -> dict:
        eps = self.bandwidth.detach().cpu()
        # one number when every latent shares it, else the per-latent list (training state only)
        same = bool((eps == eps[0]).all())
        return {"eps": float(eps[0]) if same else [float(f"{v:.6g}") for v in eps.tolist()]}

    def weights(self) -> dict[str, torch.Tensor]:
        return {**super().weights(), "threshold": self.threshold}

    def load_weights(self, w: dict[str, torch.Tensor], prefix: str = "") -> None:
        super().load_weights(w, prefix)
        if prefix + "threshold" in w:
            with (
                torch.no_grad()
            ):  # a threshold of 0 becomes 1e-30: relu(z) > 1e-30 and z > 0 differ only for z in (0, 1e-30]
                self.log_threshold.copy_(w[prefix + "threshold"].clamp(min=1e-30).log())

    def change_units(self, enc: float, out: float, with_bias: bool) -> None:
        super().change_units(enc, out, with_bias)
        with torch.no_grad():
            self.log_threshold.add_(math.log(out))
        self.eps = self.eps * out


@register_transcoder("topk")
class TopKTranscoder(Transcoder):
    """The ``k`` largest pre-activations per token, rectified; the rest are 0 (L0 fixed at k, no penalty)."""

    def _init_activation(
        self, *, k: int, threshold: float, eps: float | Sequence[float] | torch.Tensor
    ) -> None:
        if not 0 < k <= self.d_sae:
            raise ValueError(f"topk needs 0 < k <= d_sae ({self.d_sae}), got k={k}")
        self.k = k

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        vals, idx = torch.relu(z).topk(self.k, dim=-1)
        return torch.zeros_like(z).scatter(-1, idx, vals)

    def _config_extra(self) -> dict:
        return {"k": self.k}


@register_transcoder("relu")
class ReLUTranscoder(Transcoder):
    """relu(z), with an L1 penalty weighted by each latent's decoder norm."""

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    def _sparsity(self, z: torch.Tensor | None, acts: torch.Tensor) -> torch.Tensor:
        return (acts * self.W_dec.norm(dim=1)).sum(-1).mean()


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
            tensors = {f"base.{k}": v for k, v in model.base.weights().items()}
            tensors.update({f"delta.{k}": v for k, v in model.delta.weights().items()})
            cfg = {"kind": "delta", "base": model.base.config(), "delta": model.delta.config()}
        else:
            tensors, cfg = model.weights(), {"kind": "transcoder", **model.config()}
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


def _build(cfg: dict, w: dict[str, torch.Tensor], prefix: str = "") -> Transcoder:
    t = Transcoder(
        cfg["d_in"],
        cfg["d_sae"],
        cfg.get("d_out"),
        activation=cfg.get("activation", "jumprelu"),
        k=cfg.get("k", 32),
        eps=cfg.get("eps", 0.01),
    )
    t.load_weights(
        w, prefix
    )  # ReLU and TopK files (sae-lens' too) carry no threshold; older steerlab files one
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
