"""OpenAI-compatible serving with per-request ASA steering: ``steerlab serve`` (HTTP) and the engine behind it."""

from .engine import Engine, GateInfo, InputTooLarge, RowOutput, RowSpec

__all__ = ["Engine", "GateInfo", "InputTooLarge", "RowOutput", "RowSpec"]
