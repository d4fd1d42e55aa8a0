"""Metrics with intervals, statistical tests, plots."""

from .metrics import METRICS, confusion, trigger_metrics
from .stats import (
    bootstrap_mean,
    bootstrap_metric,
    mcnemar_exact,
    metrics_with_ci,
    paired_bootstrap_diff,
    wilson_interval,
)

__all__ = [
    "METRICS",
    "bootstrap_mean",
    "bootstrap_metric",
    "confusion",
    "mcnemar_exact",
    "metrics_with_ci",
    "paired_bootstrap_diff",
    "trigger_metrics",
    "wilson_interval",
]
