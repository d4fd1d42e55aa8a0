"""Fit a transcoder (or the delta latents of a DeltaTranscoder) to (MLP input, MLP output) pairs."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .transcoder import DeltaTranscoder, Transcoder


def train_transcoder(
    model: Transcoder | DeltaTranscoder,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    sparsity_coef: float = 1e-3,
    seed: int = 0,
    init_l0: float | None = None,
    progress: bool = True,
) -> dict:
    """Minibatch Adam on normalised MSE (mse / total variance of y, so the loss is scale-free) + sparsity_coef *
    sparsity; returns the history of mse, nmse and L0.

    ``init_l0`` (JumpReLU only): start each threshold at the pre-activation quantile where about ``init_l0``
    latents fire per token, and size the straight-through kernel from the same distribution. A fixed small
    threshold cannot move at real activation scale (Adam moves log-threshold by ~lr per step)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    var = y.float().var(dim=0).sum().clamp(min=1e-12)
    if isinstance(model, Transcoder):
        with torch.no_grad():
            model.b_dec.copy_(y.float().mean(0))
    target = model.delta if isinstance(model, DeltaTranscoder) else model
    if init_l0 is not None and target.activation == "jumprelu":
        init_thresholds(target, x, init_l0, seed=seed)
    hist: dict[str, list[float]] = {"mse": [], "nmse": [], "l0": []}
    bar = tqdm(range(steps), desc="train transcoder", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=g)
        xb, yb = x[idx].float(), y[idx].float()
        if isinstance(model, DeltaTranscoder):
            out, _, acts = model(xb)
        else:
            out, acts = model(xb)
        mse = (out - yb).pow(2).sum(-1).mean()
        loss = mse / var + sparsity_coef * model.sparsity_loss(xb, acts)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            if isinstance(model, Transcoder):
                model.W_dec.div_(model.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))
        hist["mse"].append(float(mse.detach()))
        hist["nmse"].append(float(mse.detach() / var))
        hist["l0"].append(float((acts > 0).float().sum(-1).mean()))
        bar.set_postfix(nmse=f"{hist['nmse'][-1]:.3f}", l0=f"{hist['l0'][-1]:.1f}")
    return hist


def tail_mean(hist: dict, key: str, n: int = 50) -> float:
    """Mean of the last ``n`` training steps' ``key`` (fewer when the run was shorter): the figure to report,
    steadier than the last minibatch."""
    vals = hist[key][-n:]
    if not vals:
        raise ValueError(f"the training history holds no {key!r} values")
    return sum(vals) / len(vals)


def init_thresholds(t: Transcoder, x: torch.Tensor, l0: float, n: int = 4096, seed: int = 0) -> None:
    """Per-latent threshold = the (1 - l0/d_sae) quantile of its positive pre-activations on a sample of x;
    eps = a tenth of the median threshold, so the kernel window holds a useful share of samples."""
    if not 0 < l0 < t.d_sae:
        raise ValueError(f"init_l0 must be in (0, d_sae={t.d_sae}), got {l0}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=g)[:n]
    with torch.no_grad():
        z = torch.relu(t.pre_acts(x[idx].float().to(t.W_enc.device)))
        theta = torch.quantile(z, 1 - l0 / t.d_sae, dim=0).clamp(min=1e-6)
        t.log_threshold.copy_(theta.log())
        t.eps = float(theta.median()) * 0.1
