"""Probes fitted with scikit-learn, stored and applied as plain tensors (so assets are safetensors, not pickles)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return (
        x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    )


def _check_xy(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(
            f"{what}: expected states [n, d] and {len(x)} labels, got states {x.shape}, labels {y.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: the states contain NaN/inf")


@dataclass
class Standardizer:
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor | np.ndarray) -> Standardizer:
        arr = _np(x)
        std = arr.std(axis=0)
        std[std < 1e-6] = 1.0
        return cls(
            torch.tensor(arr.mean(axis=0), dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean.to(x.device)) / self.std.to(x.device)


@dataclass
class LogisticProbe:
    """p(label=1 | state) = sigmoid(w . standardise(state) + b)."""

    scaler: Standardizer
    weight: torch.Tensor  # [d]
    bias: torch.Tensor  # []

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scaler(x) @ self.weight.to(x.device) + self.bias.to(x.device)
        return torch.sigmoid(z)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.mean": self.scaler.mean,
            f"{prefix}.std": self.scaler.std,
            f"{prefix}.weight": self.weight,
            f"{prefix}.bias": self.bias.reshape(1),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str) -> LogisticProbe:
        return cls(
            Standardizer(t[f"{prefix}.mean"], t[f"{prefix}.std"]),
            t[f"{prefix}.weight"],
            t[f"{prefix}.bias"].reshape(()),
        )


@dataclass
class Router:
    """Multiclass logistic router over domains on standardised states."""

    scaler: Standardizer
    weight: torch.Tensor  # [k, d]
    bias: torch.Tensor  # [k]
    classes: list[str]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scaler(x) @ self.weight.T.to(x.device) + self.bias.to(x.device)).argmax(dim=-1)

    def tensors(self, prefix: str = "router") -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.mean": self.scaler.mean,
            f"{prefix}.std": self.scaler.std,
            f"{prefix}.weight": self.weight,
            f"{prefix}.bias": self.bias,
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], classes: list[str], prefix: str = "router") -> Router:
        return cls(
            Standardizer(t[f"{prefix}.mean"], t[f"{prefix}.std"]),
            t[f"{prefix}.weight"],
            t[f"{prefix}.bias"],
            list(classes),
        )


def fit_probe(
    x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray | list, c: float = 1.0, seed: int = 0
) -> LogisticProbe:
    """L2 logistic regression on standardised states; both classes must be present.

    Args:
        x: ``[n, d]`` states.
        y: ``n`` labels in {0, 1}.
        c: inverse regularisation strength (scikit-learn's ``C``).
        seed: the solver's seed.

    Returns:
        The probe (its standardiser, weights and bias): ``probe.prob(states)`` is p(label 1).
    """
    from sklearn.linear_model import LogisticRegression

    arr, lab = _np(x), np.asarray(y).astype(int)
    _check_xy(arr, lab, "fit_probe")
    counts = {int(k): int((lab == k).sum()) for k in (0, 1)}
    if set(np.unique(lab)) - {0, 1} or min(counts.values()) == 0:
        raise ValueError(f"fit_probe needs labels in {{0, 1}} with both classes present; got counts {counts}")
    scaler = Standardizer.fit(arr)
    z = (arr - scaler.mean.double().numpy()) / scaler.std.double().numpy()
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(z, lab)
    return LogisticProbe(
        scaler,
        torch.tensor(clf.coef_[0], dtype=torch.float32),
        torch.tensor(float(clf.intercept_[0]), dtype=torch.float32),
    )


def fit_router(
    x: torch.Tensor | np.ndarray,
    domains: list[str],
    classes: list[str] | None = None,
    c: float = 1.0,
    seed: int = 0,
) -> Router:
    """A multiclass logistic router on standardised states (ASA's domain router).

    Args:
        x: ``[n, d]`` states.
        domains: ``n`` class names, one per row.
        classes: the classes in order (default: the sorted names in ``domains``); each needs examples.
        c: inverse regularisation strength (scikit-learn's ``C``).
        seed: the solver's seed.

    Returns:
        The router: class probabilities per row, in the order of ``classes``.
    """
    from sklearn.linear_model import LogisticRegression

    arr = _np(x)
    classes = classes or sorted(set(domains))
    unknown = sorted(set(domains) - set(classes))
    if unknown:
        raise ValueError(f"domains {unknown} are not among the router classes {classes}")
    empty = [k for k in classes if k not in domains]
    if empty or len(classes) < 2:
        raise ValueError(f"the router needs >= 2 classes, each with examples; empty classes: {empty}")
    lab = np.array([classes.index(d) for d in domains])
    _check_xy(arr, lab, "fit_router")
    scaler = Standardizer.fit(arr)
    z = (arr - scaler.mean.double().numpy()) / scaler.std.double().numpy()
    clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(z, lab)
    w, b = clf.coef_, clf.intercept_
    if len(classes) == 2:  # sklearn gives one row for binary problems
        w, b = np.stack([-w[0], w[0]]), np.array([-b[0], b[0]])
    return Router(scaler, torch.tensor(w, dtype=torch.float32), torch.tensor(b, dtype=torch.float32), classes)


def roc_auc(scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | list) -> float:
    """Area under the ROC curve (ties count half), without scikit-learn's input checks.

    Args:
        scores: one score per example.
        labels: 1 for positives, 0 for negatives; both must be present.

    Returns:
        The probability that a random positive scores above a random negative.
    """
    s, y = _np(scores).ravel(), np.asarray(labels).astype(int).ravel()
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"AUC needs both classes; got {len(pos)} positives and {len(neg)} negatives")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
