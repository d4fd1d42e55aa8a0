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
