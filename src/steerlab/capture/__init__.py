"""Batched activation capture with early exit and an on-disk cache."""

from .capture import Activations, capture, mean_norm

__all__ = ["Activations", "capture", "mean_norm"]
