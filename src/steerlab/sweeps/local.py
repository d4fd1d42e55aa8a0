"""Moved to ``steerlab.executors.local``; this module keeps the old import path working."""

from __future__ import annotations

from ..executors.local import (
    LocalExecutor,
    OnResult,
)

__all__ = [
    "LocalExecutor",
    "OnResult",
]
