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
