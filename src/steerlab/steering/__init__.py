"""The steering primitive (add coef * vector at a site under a position policy) and splices."""

from .phase import ForwardInfo, current_forward, forward_phase
from .splice import SpliceHandle, splice
from .steer import POLICIES, SteeringHandle, active_handles, check_vector, hidden_norm_units, paused, steer

__all__ = [
    "POLICIES",
    "ForwardInfo",
    "SpliceHandle",
    "SteeringHandle",
    "active_handles",
    "check_vector",
    "current_forward",
    "forward_phase",
    "hidden_norm_units",
    "paused",
    "splice",
    "steer",
]
