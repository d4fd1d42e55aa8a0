"""Batched activation capture with early exit and an on-disk cache; live (differentiable) states."""

from .capture import Activations, capture, mean_norm
from .live import live_states

__all__ = ["Activations", "capture", "live_states", "mean_norm"]
