"""ASA: a router and per-domain probes gate a steering vector that promotes true tool calls and suppresses
spurious ones, at the last prompt token, training-free."""

from .config import AsaConfig
from .controller import AsaController, AsaParams, ternary_gate

__all__ = ["AsaConfig", "AsaController", "AsaParams", "ternary_gate"]
