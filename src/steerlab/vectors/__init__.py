"""Steering-vector estimators."""

from .estimators import mean_difference, paired_pca, random_direction, unit

__all__ = ["mean_difference", "paired_pca", "random_direction", "unit"]
