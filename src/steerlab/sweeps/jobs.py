"""Moved to ``steerlab.executors.jobs``; this module keeps the old import path working."""

from __future__ import annotations

from ..executors.jobs import (
    Job,
    JobContext,
    JobResult,
    Report,
    RunnerJob,
    SweepError,
    check_ok,
    check_visible,
    run_job,
    worker_name,
)

__all__ = [
    "Job",
    "JobContext",
    "JobResult",
    "Report",
    "RunnerJob",
    "SweepError",
    "check_ok",
    "check_visible",
    "run_job",
    "worker_name",
]
