"""Phases live with the model's instrumentation (``steerlab.models.phase``); re-exported here for steering users."""

from ..models.phase import CONTEXT, DECODE, PHASES, PROMPT, ForwardInfo, current_forward, forward_phase

__all__ = ["CONTEXT", "DECODE", "PHASES", "PROMPT", "ForwardInfo", "current_forward", "forward_phase"]
