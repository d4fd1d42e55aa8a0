"""Linear probes on hidden states: standardised logistic probes, a multiclass router, and layer sweeps."""

from .linear import LogisticProbe, Router, Standardizer, fit_probe, fit_router, roc_auc
from .sweep import cross_val_auc, layer_sweep

__all__ = [
    "LogisticProbe",
    "Router",
    "Standardizer",
    "cross_val_auc",
    "fit_probe",
    "fit_router",
    "layer_sweep",
    "roc_auc",
]
