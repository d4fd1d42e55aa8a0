"""Moved to ``steerlab.sae.splice_cost_sweep``; this module keeps the old import path working."""

from __future__ import annotations

from ..sae.splice_cost_sweep import (
    SCRATCH,
    SeededRunnerJob,
    publish,
    run_splice_cost,
)

__all__ = [
    "SCRATCH",
    "SeededRunnerJob",
    "publish",
    "run_splice_cost",
]
