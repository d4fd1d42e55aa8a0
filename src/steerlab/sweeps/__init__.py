"""Sweeps: whole method runs as jobs (``steerlab.sweeps.asa``: ASA over models x datasets, ``steerlab asa runs``).

The job and executor machinery lives one layer down, in ``steerlab.executors``, where the methods run their own
job lists too; its names are re-exported here, so ``from steerlab.sweeps import RayExecutor`` keeps working. This
package sits above the methods: it imports them, they never import it.
"""

from __future__ import annotations

from ..executors import (
    EXECUTORS,
    Job,
    JobContext,
    JobResult,
    LocalExecutor,
    RayExecutor,
    RunnerJob,
    SweepError,
    add_executor_args,
    check_ok,
    executor_from_args,
    make_executor,
    run_job,
)

__all__ = [
    "EXECUTORS",
    "Job",
    "JobContext",
    "JobResult",
    "LocalExecutor",
    "RayExecutor",
    "RunnerJob",
    "SweepError",
    "add_executor_args",
    "check_ok",
    "executor_from_args",
    "make_executor",
    "run_job",
]
