"""The steering primitive (add coef * vector at a site under a position policy) and splices."""

from .phase import ForwardPositions, PhaseTracker, prompt_phase
from .splice import SpliceHandle, splice
from .steer import POLICIES, SteeringHandle, active_handles, check_vector, hidden_norm_units, paused, steer

__all__ = [
    "POLICIES",
    "ForwardPositions",
    "PhaseTracker",
    "SpliceHandle",
    "SteeringHandle",
    "active_handles",
    "prompt_phase",
    "check_vector",
    "hidden_norm_units",
    "paused",
    "splice",
    "steer",
]
