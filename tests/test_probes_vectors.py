import numpy as np
import pytest
import torch

from steerlab.probes import fit_probe, fit_router, layer_sweep, roc_auc
from steerlab.vectors import mean_difference, paired_pca, random_direction


def test_roc_auc_exact_values():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])


def test_probe_separates_planted_direction_and_rejects_empty_class():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    y = (x[:, 3] > 0).long()
    probe = fit_probe(x, y)
    assert roc_auc(probe.prob(x), y) > 0.99
    assert probe.weight.abs().argmax() == 3
    with pytest.raises(ValueError, match=r"both classes present.*\{0: 0, 1: 5\}"):
        fit_probe(torch.randn(5, 3), [1] * 5)


def test_router_and_sweep():
    g = torch.Generator().manual_seed(1)
    centers = torch.eye(4) * 5
    x = torch.cat([centers[i] + torch.randn(30, 4, generator=g) for i in range(4)])
    doms = [d for d in "abcd" for _ in range(30)]
    router = fit_router(x, doms)
    assert (router.predict(x) == torch.tensor([router.classes.index(d) for d in doms])).float().mean() > 0.95
    with pytest.raises(ValueError, match="not among the router classes"):
        fit_router(x, doms, classes=["a", "b"])
    states = torch.stack([torch.randn(120, 4, generator=g), x], dim=1)  # layer 0 noise, layer 1 signal
    y = np.array([1 if d in "ab" else 0 for d in doms])
    aucs = layer_sweep(states, y, states, y, progress=False)
    assert aucs[1] > 0.95 and aucs[0] < aucs[1]


def test_vectors():
    pos = torch.tensor([[2.0, 0.0], [4.0, 0.0]])
    neg = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(mean_difference(pos, neg, normalize=False), torch.tensor([3.0, -1.0]))
    torch.testing.assert_close(mean_difference(pos, neg).norm(), torch.tensor(1.0))
    v = paired_pca(torch.tensor([[3.0, 1.0], [5.0, 1.0], [1.0, 1.0]]), torch.zeros(3, 2))
    assert v[0] > 0.9
    r = random_direction(16, seed=3)
    assert torch.isclose(r.norm(), torch.tensor(1.0)) and torch.equal(r, random_direction(16, seed=3))
    with pytest.raises(ValueError, match="both groups non-empty"):
        mean_difference(torch.zeros(0, 2), neg)


def _surface_trap(n: int = 6) -> tuple[torch.Tensor, np.ndarray]:
    """Two lists of n 'prompts': the behaviour in dim 0, and a louder surface feature (say, the prompt's last
    words) shared by the even-numbered positives and the odd-numbered negatives."""
    g = torch.Generator().manual_seed(0)
    y = np.array([1] * n + [0] * n)
    x = 0.5 * torch.randn(2 * n, 16, generator=g)
    x[:, 0] = torch.tensor(2.0 * y - 1) + 0.3 * torch.randn(2 * n, generator=g)
    even = torch.tensor([i % 2 == 0 for i in range(n)] * 2)
    surface = torch.where(even == torch.tensor(y == 1), 1.0, -1.0)
    x[:, 1:5] = 3 * surface[:, None] + 0.1 * torch.randn(2 * n, 4, generator=g)
    return x, y


def test_cross_val_auc_scores_every_row_held_out():
    """One split of a few rows (the vector lab's old held-out AUC: fit on the even-numbered prompts, score the
    odd ones) reads a surface feature as the behaviour and scores 0.0; every row scored out of fold does not."""
    from steerlab.probes import cross_val_auc

    x, y = _surface_trap()
    even = np.array([i % 2 == 0 for i in range(6)] * 2)
    one_split = layer_sweep(x[even][:, None], y[even], x[~even][:, None], y[~even], [0], progress=False)[0]
    assert one_split == 0.0
    assert cross_val_auc(x, y) >= 0.75
    # exact: the pooled AUC of the out-of-fold probe scores, folds = the i-th row of each class in fold i mod k
    folds = np.array([i % 3 for i in range(6)] * 2)
    scores = np.empty(12)
    for f in range(3):
        scores[folds == f] = fit_probe(x[folds != f], y[folds != f]).prob(x[folds == f]).numpy()
    assert cross_val_auc(x, y, folds=3) == roc_auc(scores, y)
    sep = torch.tensor([[1.0, 0.0]] * 4 + [[-1.0, 0.0]] * 4) + 0.01 * torch.randn(8, 2)
    assert cross_val_auc(sep, [1] * 4 + [0] * 4) == 1.0
    with pytest.raises(ValueError, match="at least 2 rows of each class"):
        cross_val_auc(sep[:5], [1, 0, 0, 0, 0])
