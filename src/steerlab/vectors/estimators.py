"""Estimators of a steering direction from hidden states."""

from __future__ import annotations

import torch


def unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    if not torch.isfinite(n) or n < 1e-12:
        raise ValueError(f"cannot normalise a vector of norm {float(n)}")
    return v / n


def mean_difference(pos: torch.Tensor, neg: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """mean(pos) - mean(neg) over rows ``[n, d]``."""
    if pos.dim() != 2 or neg.dim() != 2 or pos.shape[1] != neg.shape[1]:
        raise ValueError(
            f"expected [n, d] states of equal width, got {tuple(pos.shape)} and {tuple(neg.shape)}"
        )
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"mean_difference needs both groups non-empty; got {len(pos)} and {len(neg)} rows")
    v = pos.float().mean(0) - neg.float().mean(0)
    return unit(v) if normalize else v


def paired_pca(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """First principal direction of paired differences, signed to agree with their mean (repeng-style)."""
    if pos.shape != neg.shape or pos.dim() != 2:
        raise ValueError(
            f"paired_pca needs equal shapes [n, d], got {tuple(pos.shape)} and {tuple(neg.shape)}"
        )
    diff = (pos - neg).float()
    _, _, vh = torch.linalg.svd(diff - diff.mean(0) if len(diff) > 1 else diff, full_matrices=False)
    v = vh[0]
    return unit(v if (diff.mean(0) @ v) >= 0 else -v)


def random_direction(d: int, seed: int = 0) -> torch.Tensor:
    """A unit vector drawn uniformly on the sphere: the control for 'any push of this size'."""
    g = torch.Generator().manual_seed(seed)
    return unit(torch.randn(d, generator=g))
