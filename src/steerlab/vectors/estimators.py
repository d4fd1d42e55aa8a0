"""Estimators of a steering direction from two groups of hidden states, behind one signature.

``estimator(pos [n, d], neg [m, d], seed=0) -> unit direction [d]`` that points from ``neg`` towards ``pos``. What
the groups hold is the method's choice (tool vs non-tool prompts; prompts the model answered right vs wrong; the
same prompt followed by a call vs by a plain answer); how a direction is drawn from them is the estimator's.
Register a new one with ``register_estimator``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import UserError

Estimator = Callable[..., torch.Tensor]
ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str) -> Callable[[Estimator], Estimator]:
    def add(fn: Estimator) -> Estimator:
        ESTIMATORS[name] = fn
        return fn

    return add


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise UserError(f"unknown direction estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


def unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    if not torch.isfinite(n) or n < 1e-12:
        raise ValueError(f"cannot normalise a vector of norm {float(n)}")
    return v / n


def _check_groups(pos: torch.Tensor, neg: torch.Tensor, what: str) -> None:
    if pos.dim() != 2 or neg.dim() != 2 or pos.shape[1] != neg.shape[1]:
        raise ValueError(
            f"{what}: expected [n, d] states of equal width, got {tuple(pos.shape)} and {tuple(neg.shape)}"
        )
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"{what} needs both groups non-empty; got {len(pos)} and {len(neg)} rows")


@register_estimator("mean_difference")
def mean_difference(
    pos: torch.Tensor, neg: torch.Tensor, normalize: bool = True, seed: int = 0
) -> torch.Tensor:
    """mean(pos) - mean(neg): the ASA paper's and PAS's estimator (for paired groups it is the mean pair difference)."""
    _check_groups(pos, neg, "mean_difference")
    v = pos.float().mean(0) - neg.float().mean(0)
    return unit(v) if normalize else v


@register_estimator("paired_pca")
def paired_pca(pos: torch.Tensor, neg: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """First principal direction of paired differences, signed to agree with their mean (repeng-style)."""
    if pos.shape != neg.shape or pos.dim() != 2:
        raise ValueError(
            f"paired_pca needs equal shapes [n, d], got {tuple(pos.shape)} and {tuple(neg.shape)}"
        )
    _check_groups(pos, neg, "paired_pca")
    diff = (pos - neg).float()
    _, _, vh = torch.linalg.svd(diff - diff.mean(0) if len(diff) > 1 else diff, full_matrices=False)
    v = vh[0]
    return unit(v if (diff.mean(0) @ v) >= 0 else -v)


@register_estimator("random")
def random_like(pos: torch.Tensor, neg: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random unit direction of the states' width: the control for "any push of this size"."""
    return random_direction(pos.shape[-1], seed)


def random_direction(d: int, seed: int = 0) -> torch.Tensor:
    """A unit vector drawn uniformly on the sphere."""
    g = torch.Generator().manual_seed(seed)
    return unit(torch.randn(d, generator=g))
