"""The steering primitive (add coef * vector at a site under a position policy) and splices."""

from .phase import ForwardPositions, PhaseTracker
from .splice import SpliceHandle, splice
from .steer import POLICIES, SteeringHandle, check_vector, hidden_norm_units, paused, steer

__all__ = [
    "POLICIES",
    "ForwardPositions",
    "PhaseTracker",
    "SpliceHandle",
    "SteeringHandle",
    "check_vector",
    "hidden_norm_units",
    "paused",
    "splice",
    "steer",
]
