"""Fit transcoders (or the delta latents of DeltaTranscoders) to (MLP input, MLP output) pairs.

Sparsity can be asked for as a number of active latents (``target_l0``, JumpReLU). The L0 constraint is held by
its multiplier acting on the thresholds: after every optimiser step all log-thresholds move by
``l0_rate * log(L0 / target)`` measured on that TRAINING batch, so the sparsity is set on training data, never on
held-out data. (A multiplier on the L0 penalty's coefficient does not work well here: Adam normalises the threshold
gradients, so the coefficient's size reaches the thresholds only through the sign of their gradient, with a lag that
made the L0 overshoot and oscillate in our tests.) The per-latent L0 penalty (``sparsity_coef`` times the
straight-through step) still shapes which latents are sparser. Thresholds start at the pre-activation quantile
that gives the starting L0, and each latent's straight-through kernel bandwidth is the spread of its
pre-activations around its threshold (refreshed as training moves them): both follow the scale of the data
instead of being fixed constants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from tqdm.auto import tqdm

from .stream import PairSource, TensorPairs
from .transcoder import DeltaTranscoder, Transcoder

# pairs drawn to set thresholds, bandwidths, the output mean and the variance NMSE divides by
PROBE_TOKENS = 8192
MIN_WINDOW = 32  # samples the kernel window of a latent should hold at least


def train_transcoder(
    model: Transcoder | DeltaTranscoder,
    x: torch.Tensor | PairSource,
    y: torch.Tensor | None = None,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    sparsity_coef: float = 1e-3,
    target_l0: float | None = None,
    seed: int = 0,
    init_l0: float | None = None,
    threshold_lr: float | None = None,
    l0_rate: float = 0.05,
    bandwidth_every: int = 100,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Minibatch Adam on normalised MSE (mse / total variance of y, so the loss is scale-free) + sparsity_coef *
    sparsity; returns the history of mse, nmse, L0 and the controller's cumulative log-threshold shift per step.

    ``x``: MLP inputs with ``y`` the outputs, or a ``PairSource`` of one layer (e.g. ``CapturedPairs``, which
    streams pairs from the model). See ``train_transcoders`` for the rest."""
    if isinstance(x, torch.Tensor):
        if y is None:
            raise ValueError("y is required when x is a tensor")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        source: PairSource = TensorPairs({0: (x, y)})
    else:
        source = x
        if len(source.layers) != 1:
            raise ValueError(f"a source of one layer is needed here, got layers {list(source.layers)}")
    key = source.layers[0]
    return train_transcoders(
        {key: model},
        source,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        sparsity_coef=sparsity_coef,
        target_l0=target_l0,
        seed=seed,
        init_l0=init_l0,
        threshold_lr=threshold_lr,
        l0_rate=l0_rate,
        bandwidth_every=bandwidth_every,
        resume=resume,
        progress=progress,
    )[key]


def train_transcoders(
    models: Mapping[int, Transcoder | DeltaTranscoder],
    source: PairSource,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    sparsity_coef: float = 1e-3,
    target_l0: float | None = None,
    seed: int = 0,
    init_l0: float | None = None,
    threshold_lr: float | None = None,
    l0_rate: float = 0.05,
    bandwidth_every: int = 100,
    resume: bool = False,
    progress: bool = True,
) -> dict[int, dict]:
    """Train one model per layer of ``source`` on the same minibatches (one capture feeds them all).

    ``target_l0`` (JumpReLU): hold L0 at the target by moving every log-threshold by
    ``l0_rate * clip(log(L0 / target), -3, 3)`` after each step (see the module doc); without it nothing but the
    gradient moves the thresholds. ``init_l0`` (JumpReLU; default ``target_l0``): start each threshold at the
    pre-activation quantile where about that many latents fire per token and set each latent's kernel bandwidth
    from its pre-activations near the threshold (again every ``bandwidth_every`` steps). ``threshold_lr``: Adam's
    learning rate for the log-thresholds (default ``lr``).

    Training runs in normalised units (inputs divided by their RMS, outputs by the RMS of their deviation from the
    mean), so the learning rate, the initialisation and the ReLU L1 coefficient mean the same for a 135M and an 8B
    model; the scales are folded back into the weights at the end (the activations are positively homogeneous, so
    the returned model computes exactly the trained function in the data's units). A fresh model's weights are
    read as normalised-unit weights; ``resume=True`` continues from a model trained before instead."""
    missing = [k for k in models if k not in source.layers]
    if missing:
        raise ValueError(f"no pairs for layers {missing}; the source has {list(source.layers)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    g = torch.Generator().manual_seed(seed)
    g_probe = torch.Generator().manual_seed(seed + 1)
    probe = source.sample(PROBE_TOKENS, g_probe, count=False)
    start_l0 = init_l0 if init_l0 is not None else target_l0
    for model in models.values():
        t = model.delta if isinstance(model, DeltaTranscoder) else model
        if start_l0 is not None and t.activation == "jumprelu" and not 0 < start_l0 < t.d_sae:
            raise ValueError(f"init_l0 must be in (0, d_sae={t.d_sae}), got {start_l0}")
        if target_l0 is not None:
            if t.activation != "jumprelu":
                raise ValueError(
                    f"target_l0 applies to jumprelu latents (thresholds), not {t.activation}"
                    + ("; topk fixes L0 at k" if t.activation == "topk" else "")
                )
            if not 0 < target_l0 < t.d_sae:
                raise ValueError(f"target_l0 must be in (0, d_sae={t.d_sae}), got {target_l0}")
    state: dict = {}
    for k, model in models.items():
        t = model.delta if isinstance(model, DeltaTranscoder) else model
        x0, y0 = (v.float() for v in probe[k])
        sx, sy = _rms(x0), _rms(y0 - y0.mean(0))  # outputs by their spread: the mean is the bias's job
        if resume:  # the weights hold a trained function: express it in normalised units first
            t.change_units(sx / sy, 1 / sy, with_bias=isinstance(model, Transcoder))
        x0, y0 = x0 / sx, y0 / sy
        if isinstance(model, Transcoder):
            with torch.no_grad():
                model.b_dec.copy_(y0.mean(0))
        data_init = start_l0 is not None and t.activation == "jumprelu"
        if data_init:
            init_thresholds(t, x0, start_l0)
        thr = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("log_threshold")]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("log_threshold")]
        groups = [{"params": rest}] + ([{"params": thr, "lr": threshold_lr or lr}] if thr else [])
        state[k] = {
            "t": t,
            "opt": torch.optim.Adam(groups, lr=lr),
            "var": y0.var(dim=0).sum().clamp(min=1e-12),
            "sx": sx,
            "sy": sy,
            "shift": 0.0,
            "refresh": data_init and bandwidth_every > 0,
            "share": (start_l0 / t.d_sae) if data_init else None,
            "hist": {"mse": [], "nmse": [], "l0": [], "shift": []},
        }
    try:
        _loop(
            models,
            source,
            state,
            steps,
            batch_size,
            sparsity_coef,
            target_l0,
            l0_rate,
            bandwidth_every,
            g,
            g_probe,
            progress,
        )
    finally:  # back to the data's units, also when interrupted
        for k, model in models.items():
            s = state[k]
            s["t"].change_units(s["sy"] / s["sx"], s["sy"], with_bias=isinstance(model, Transcoder))
    return {k: s["hist"] for k, s in state.items()}


def _loop(
    models: Mapping[int, Transcoder | DeltaTranscoder],
    source: PairSource,
    state: dict,
    steps: int,
    batch_size: int,
    sparsity_coef: float,
    target_l0: float | None,
    l0_rate: float,
    bandwidth_every: int,
    g: torch.Generator,
    g_probe: torch.Generator,
    progress: bool,
) -> None:
    bar = tqdm(range(steps), desc="train transcoder", disable=not progress, leave=False)
    for step in bar:
        batch = source.sample(batch_size, g)
        for k, model in models.items():
            s = state[k]
            x_raw, y_raw = (v.float() for v in batch[k])
            xb, yb = x_raw / s["sx"], y_raw / s["sy"]
            if isinstance(model, DeltaTranscoder):
                with torch.no_grad():
                    base_out = model.base(x_raw)[0] / s["sy"]  # the frozen base works in the data's units
                contrib, acts, sparsity = model.delta.train_terms(xb)
                out = base_out + contrib
            else:
                out, acts, sparsity = model.train_terms(xb)
            mse = (out - yb).pow(2).sum(-1).mean()
            loss = mse / s["var"] + sparsity_coef * sparsity
            s["opt"].zero_grad()
            loss.backward()
            s["opt"].step()
            l0 = float((acts.detach() > 0).float().sum(-1).mean())
            with torch.no_grad():
                if isinstance(model, Transcoder):
                    model.W_dec.div_(model.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))
                if (
                    target_l0 is not None
                ):  # the constraint's multiplier: every log-threshold moves with the error
                    step_ = l0_rate * max(-3.0, min(3.0, math.log((l0 + 1e-3) / target_l0)))
                    s["t"].log_threshold.add_(step_)
                    s["shift"] += step_
            h = s["hist"]
            h["mse"].append(float(mse.detach()) * s["sy"] ** 2)
            h["nmse"].append(float(mse.detach() / s["var"]))
            h["l0"].append(l0)
            h["shift"].append(s["shift"])
            if s["refresh"] and (step + 1) % bandwidth_every == 0 and step + 1 < steps:
                probe_x = source.sample(PROBE_TOKENS, g_probe, count=False)[k][0].float() / s["sx"]
                set_bandwidth(s["t"], probe_x, s["share"])
        if len(models) == 1:
            h = state[next(iter(models))]["hist"]
            bar.set_postfix(nmse=f"{h['nmse'][-1]:.3f}", l0=f"{h['l0'][-1]:.1f}")


def _rms(v: torch.Tensor) -> float:
    return max(float(v.pow(2).mean().sqrt()), 1e-8)


def tail_mean(hist: dict, key: str, n: int = 50) -> float:
    """Mean of the last ``n`` training steps' ``key`` (fewer when the run was shorter): the figure to report,
    steadier than the last minibatch."""
    vals = hist[key][-n:]
    if not vals:
        raise ValueError(f"the training history holds no {key!r} values")
    return sum(vals) / len(vals)


def _column_quantile(z_sorted: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per column j, the sample at quantile q[j] of the column-sorted ``z_sorted`` [n, d] (nearest rank)."""
    n = z_sorted.shape[0]
    idx = (q.clamp(0, 1) * (n - 1)).round().long()
    return z_sorted.gather(0, idx.unsqueeze(0)).squeeze(0)


def init_thresholds(t: Transcoder, x: torch.Tensor, l0: float) -> None:
    """Per-latent threshold = the (1 - l0/d_sae) quantile of its (rectified) pre-activations on ``x``, so about
    ``l0`` latents fire per token; then the kernel bandwidths (``set_bandwidth``)."""
    if not 0 < l0 < t.d_sae:
        raise ValueError(f"init_l0 must be in (0, d_sae={t.d_sae}), got {l0}")
    with torch.no_grad():
        z = torch.relu(t.pre_acts(x.float().to(t.W_enc.device))).sort(dim=0).values
        q = torch.full((t.d_sae,), 1 - l0 / t.d_sae, device=z.device)
        theta = _column_quantile(z, q).clamp(min=1e-6)
        t.log_threshold.copy_(theta.log())
    set_bandwidth(t, x, l0 / t.d_sae, _sorted=z)


def set_bandwidth(t: Transcoder, x: torch.Tensor, share: float, _sorted: torch.Tensor | None = None) -> None:
    """Kernel bandwidth of latent i = the spread of its pre-activations around its threshold θ_i: the distance
    between the samples ``share``/2 below and above θ_i in rank (at least ``MIN_WINDOW`` samples wide), capped at
    θ_i so the window never reaches the rectified zeros. Scaling the data by c scales every bandwidth by c."""
    with torch.no_grad():
        z = (
            _sorted
            if _sorted is not None
            else torch.relu(t.pre_acts(x.float().to(t.W_enc.device))).sort(dim=0).values
        )
        n = z.shape[0]
        theta = t.threshold.detach()
        rank = torch.searchsorted(z.T.contiguous(), theta.unsqueeze(1), right=True).squeeze(1).float() / n
        w = max(share, MIN_WINDOW / n)
        eps = _column_quantile(z, rank + w / 2) - _column_quantile(z, rank - w / 2)
        eps = torch.minimum(eps, theta)
        good = eps > 0
        floor = float(eps[good].median()) * 0.1 if bool(good.any()) else float(theta.median()) * 0.1
        t.eps = torch.where(good, eps, torch.full_like(eps, max(floor, 1e-8)))
