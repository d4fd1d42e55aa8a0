"""ASA: a router and per-domain probes gate a steering vector that promotes true tool calls and suppresses
spurious ones, at the last prompt token, training-free."""

from .apply import GatedAction, GatedSteering
from .config import AsaConfig
from .controller import AsaController, AsaParams
from .gate import TernaryGate, ternary_gate
from .runtime import AsaSteerer

__all__ = [
    "AsaConfig",
    "AsaController",
    "AsaParams",
    "AsaSteerer",
    "GatedAction",
    "GatedSteering",
    "TernaryGate",
    "ternary_gate",
]
