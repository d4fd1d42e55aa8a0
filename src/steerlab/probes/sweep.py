"""Per-layer probe sweeps: fit on one split, score AUC on another, pick the best layers."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .linear import fit_probe, roc_auc


def layer_sweep(
    train_states: torch.Tensor,
    train_labels: list[int] | np.ndarray,
    eval_states: torch.Tensor,
    eval_labels: list[int] | np.ndarray,
    layers: list[int] | None = None,
    c: float = 1.0,
    progress: bool = True,
) -> dict[int, float]:
    """The held-out AUC of a probe at each layer: where a concept becomes linearly readable.

    Args:
        train_states: ``[n, n_layers, d]`` states the probes are fitted on.
        train_labels: their labels in {0, 1}.
        eval_states: ``[m, n_layers, d]`` states the probes are scored on.
        eval_labels: their labels in {0, 1}.
        layers: the layer indices (of the states' second dimension) to probe; default all.
        c: inverse regularisation strength of each probe.
        progress: show a progress bar.

    Returns:
        ``layer -> AUC`` on the evaluation states.
    """
    if train_states.dim() != 3 or eval_states.dim() != 3:
        raise ValueError("layer_sweep expects states shaped [n, n_layers, d]")
    layers = list(range(train_states.shape[1])) if layers is None else layers
    out = {}
    for layer in tqdm(layers, desc="probe sweep", disable=not progress, leave=False):
        probe = fit_probe(train_states[:, layer], train_labels, c=c)
        out[layer] = roc_auc(probe.prob(eval_states[:, layer]), eval_labels)
    return out


def cross_val_auc(
    states: torch.Tensor | np.ndarray, labels: list[int] | np.ndarray, folds: int = 10, c: float = 1.0
) -> float:
    """AUC of a probe on ``states [n, d]`` with every row scored once while held out: stratified folds (the
    i-th row of each class in fold i mod k, k = min(folds, rows of the smaller class)), out-of-fold scores pooled
    into one AUC over every positive-negative pair.

    For a handful of prompts (the web app's vector lab) one train/held-out split is noise: with 3 held-out
    prompts per class its AUC moves in steps of 1/9, and where the last-token state mostly carries the
    prompt's last words (early layers) one unlucky split reads 0.0 at layer after layer."""
    y = np.asarray(labels).astype(int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k = min(folds, len(pos), len(neg))
    if k < 2:
        raise ValueError(
            f"cross_val_auc needs at least 2 rows of each class, got {len(pos)} positive and {len(neg)} negative"
        )
    fold = np.empty(len(y), dtype=int)
    fold[pos], fold[neg] = np.arange(len(pos)) % k, np.arange(len(neg)) % k
    x = torch.as_tensor(states)
    scores = np.empty(len(y))
    for f in range(k):
        held = fold == f
        probe = fit_probe(x[~held], y[~held], c=c)
        scores[held] = probe.prob(x[held].float()).double().cpu().numpy()
    return roc_auc(scores, y)
