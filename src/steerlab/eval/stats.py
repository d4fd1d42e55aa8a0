"""Intervals and tests: bootstrap (vectorised), paired bootstrap differences, exact McNemar, Wilson.

An undefined metric (precision with nothing triggered) is NaN; its interval is taken over the resamples where it
is defined, and is NaN when it is defined in none."""

from __future__ import annotations

import math

import numpy as np

from .metrics import METRICS, _arr


def ci_text(v: tuple | list) -> str:
    """An estimate and its interval, ``(value, low, high)``, as the reports print it: ``0.900 [0.850, 0.940]``."""
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _metric_batch(name: str, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A trigger metric for each row of [B, n] resampled labels/predictions, in one vectorised pass."""
    tp = (t & p).sum(1).astype(float)
    fp = (~t & p).sum(1).astype(float)
    tn = (~t & ~p).sum(1).astype(float)
    fn = (t & ~p).sum(1).astype(float)

    def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.full_like(a, np.nan), where=b > 0)

    if name == "precision":
        return div(tp, tp + fp)
    if name == "recall":
        return div(tp, tp + fn)
    if name == "f1":
        return div(2 * tp, 2 * tp + fp + fn)
    if name == "fpr":
        return div(fp, fp + tn)
    if name == "accuracy":
        return div(tp + tn, tp + fp + tn + fn)
    raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")


def _tails(level: float) -> list[float]:
    """The quantiles of a central interval at confidence ``level`` (0.95 -> 2.5% and 97.5%)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be a confidence level in (0, 1), e.g. 0.95; got {level}")
    return [(1 - level) / 2, 1 - (1 - level) / 2]


def _interval(vals: np.ndarray, level: float) -> tuple[float, float]:
    vals = vals[~np.isnan(vals)]
    if len(vals) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, _tails(level))
    return float(lo), float(hi)


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_metric(
    name: str, y_true: object, y_pred: object, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(point, lo, hi): percentile bootstrap over items for a trigger metric."""
    t, p = _arr(y_true), _arr(y_pred)
    point = float(_metric_batch(name, t[None], p[None])[0])
    idx = _indices(len(t), n_boot, seed)
    lo, hi = _interval(_metric_batch(name, t[idx], p[idx]), level)
    return point, lo, hi


def metrics_with_ci(
    y_true: object, y_pred: object, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict:
    """Each trigger metric as (point, lo, hi), plus the confusion counts."""
    from .metrics import confusion

    t, p = _arr(y_true), _arr(y_pred)
    idx = _indices(len(t), n_boot, seed)
    out: dict = {}
    for name in METRICS:
        point = float(_metric_batch(name, t[None], p[None])[0])
        out[name] = (point, *_interval(_metric_batch(name, t[idx], p[idx]), level))
    out.update(confusion(t, p))
    return out


def paired_bootstrap_diff(
    name: str,
    y_true: object,
    pred_a: object,
    pred_b: object,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """metric(b) - metric(a) on the same items: (diff, lo, hi, two-sided bootstrap p-value of 'no difference')."""
    t, a, b = _arr(y_true), _arr(pred_a), _arr(pred_b)
    diff = float(_metric_batch(name, t[None], b[None])[0] - _metric_batch(name, t[None], a[None])[0])
    idx = _indices(len(t), n_boot, seed)
    d = _metric_batch(name, t[idx], b[idx]) - _metric_batch(name, t[idx], a[idx])
    lo, hi = _interval(d, level)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return diff, lo, hi, float("nan")
    pval = 1.0 if np.all(d == 0) else float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
    return diff, lo, hi, pval


def mcnemar_exact(correct_a: object, correct_b: object) -> tuple[int, int, float]:
    """(b, c, p): b = a right & b wrong, c = a wrong & b right; exact two-sided binomial test on b vs c."""
    a, bb = _arr(correct_a), _arr(correct_b)
    b = int((a & ~bb).sum())
    c = int((~a & bb).sum())
    n = b + c
    if n == 0:
        return b, c, 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return b, c, float(min(1.0, 2 * tail))


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (n = 0 gives (0, 1))."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(
    values: object, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi) of a per-item quantity (accuracy, cross-entropy, ...)."""
    v = np.asarray(values, dtype=float)
    idx = _indices(len(v), n_boot, seed)
    means = v[idx].mean(1)
    lo, hi = np.quantile(means, _tails(level))
    return float(v.mean()), float(lo), float(hi)
