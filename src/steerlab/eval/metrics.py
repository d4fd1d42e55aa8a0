"""Trigger metrics. A ratio with nothing to count is undefined (NaN), not 0: precision when nothing was
triggered, recall with no positives, FPR with no negatives. F1 = 2tp / (2tp + fp + fn), 0 when there were
positives or predictions but no true positive."""

from __future__ import annotations

import numpy as np

METRICS = ("precision", "recall", "f1", "fpr", "accuracy")


def _arr(x: object) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"expected 0/1 or boolean values, got {np.unique(a)[:5]}")
        a = a.astype(bool)
    return a


def confusion(y_true: object, y_pred: object) -> dict[str, int]:
    t, p = _arr(y_true), _arr(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape} entries but y_pred has {p.shape}")
    return {
        "tp": int((t & p).sum()),
        "fp": int((~t & p).sum()),
        "tn": int((~t & ~p).sum()),
        "fn": int((t & ~p).sum()),
    }


def _div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def from_confusion(tp: float, fp: float, tn: float, fn: float) -> dict[str, float]:
    return {
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "fpr": _div(fp, fp + tn),
        "accuracy": _div(tp + tn, tp + fp + tn + fn),
    }


def trigger_metrics(y_true: object, y_pred: object) -> dict:
    """Precision, recall, F1, FPR and accuracy of the trigger decision, with the confusion counts."""
    c = confusion(y_true, y_pred)
    return {**from_confusion(**c), **c, "n": sum(c.values())}
