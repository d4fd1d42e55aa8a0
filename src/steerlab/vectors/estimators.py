"""Estimators of a steering direction from two groups of hidden states, behind one signature.

``estimator(pos [n, d], neg [m, d], seed=0) -> unit direction [d]`` that points from ``neg`` towards ``pos``. What
the groups hold is the method's choice (tool vs non-tool prompts; prompts the model answered right vs wrong; the
same prompt followed by a call vs by a plain answer); how a direction is drawn from them is the estimator's.
Register a new one with ``register_estimator``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..base import UserError

Estimator = Callable[..., torch.Tensor]
ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str) -> Callable[[Estimator], Estimator]:
    """Decorator: make an estimator ``fn(pos [n, d], neg [m, d], seed=0) -> [d]`` available by name (ASA's
    ``estimator`` field, ``get_estimator``).

    Args:
        name: the name configs use.

    Returns:
        The decorator; it returns the function unchanged.
    """

    def add(fn: Estimator) -> Estimator:
        ESTIMATORS[name] = fn
        return fn

    return add


def get_estimator(name: str) -> Estimator:
    """The estimator registered as ``name``.

    Args:
        name: a registered name (``mean_difference``, ``paired_pca``, ``random``, or one of yours).

    Returns:
        The estimator function.

    Raises:
        UserError: no estimator has that name (the message lists the registered ones).
    """
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
    """mean(pos) - mean(neg): the ASA paper's and PAS's estimator (for paired groups, the mean pair difference).

    Args:
        pos: ``[n, d]`` states of the group the direction points towards.
        neg: ``[m, d]`` states of the other group.
        normalize: return a unit vector.
        seed: unused (every estimator takes one).

    Returns:
        The ``[d]`` direction.
    """
    _check_groups(pos, neg, "mean_difference")
    v = pos.float().mean(0) - neg.float().mean(0)
    return unit(v) if normalize else v


@register_estimator("paired_pca")
def paired_pca(pos: torch.Tensor, neg: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """First principal direction of paired differences, signed to agree with their mean (repeng-style).

    Args:
        pos: ``[n, d]`` states, row i paired with ``neg``'s row i.
        neg: ``[n, d]`` states.
        seed: unused (every estimator takes one).

    Returns:
        The unit ``[d]`` direction.
    """
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
    """A unit vector drawn uniformly on the sphere: the control for "any push of this size".

    Args:
        d: its size (the hidden size).
        seed: the draw's seed.

    Returns:
        The unit ``[d]`` vector.
    """
    g = torch.Generator().manual_seed(seed)
    return unit(torch.randn(d, generator=g))
