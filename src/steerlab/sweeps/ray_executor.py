"""Moved to ``steerlab.executors.ray_executor``; this module keeps the old import path working."""

from __future__ import annotations

from ..executors.ray_executor import (
    OneModelHolder,
    RayExecutor,
    import_ray,
)

__all__ = [
    "OneModelHolder",
    "RayExecutor",
    "import_ray",
]
