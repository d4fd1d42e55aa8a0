"""Steering-vector estimators behind one signature: ``estimator(pos, neg, seed=0) -> unit direction``."""

from .estimators import (
    ESTIMATORS,
    get_estimator,
    mean_difference,
    paired_pca,
    random_direction,
    register_estimator,
    unit,
)

__all__ = [
    "ESTIMATORS",
    "get_estimator",
    "mean_difference",
    "paired_pca",
    "random_direction",
    "register_estimator",
    "unit",
]
