"""Executors: lists of independent jobs (PAS benchmark x seed, splice-cost layers, ASA model x dataset), each in
its own resumable run directory, run by an executor: ``LocalExecutor`` (default, in this process) or
``RayExecutor`` (a Ray cluster, ``pip install steerlab[ray]``). Both write the same files at the same paths;
executor options are run options, never config fields, so they never enter a stage's key.

A layer below the methods: a method runs its own job lists here (``pas.run``, ``sae.splice_cost_sweep``), and
``steerlab.sweeps`` (above the methods) runs whole method runs as jobs and re-exports these names.
"""

from __future__ import annotations

import argparse

from ..config import UserError
from .jobs import Job, JobContext, JobResult, RunnerJob, SweepError, check_ok, run_job
from .local import LocalExecutor
from .ray_executor import RayExecutor

EXECUTORS = ("local", "ray")

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


def make_executor(
    kind: str = "local",
    *,
    address: str | None = None,
    cpus_per_job: float | None = None,
    gpus_per_job: float | None = None,
    max_retries: int | None = None,
    workers: int | None = None,
) -> LocalExecutor | RayExecutor:
    """An executor by name; Ray options given with ``local`` are an error rather than silently ignored.
    Ray defaults: 1 CPU and 0 GPUs per job, 2 retries, as many workers as the cluster holds."""
    if kind not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    ray_opts = {
        "--ray-address": address,
        "--cpus-per-job": cpus_per_job,
        "--gpus-per-job": gpus_per_job,
        "--max-retries": max_retries,
        "--workers": workers,
    }
    if kind == "local":
        given = [k for k, v in ray_opts.items() if v is not None]
        if given:
            raise UserError(f"{', '.join(given)} only apply with --executor ray")
        return LocalExecutor()
    return RayExecutor(
        address,
        cpus_per_job=1.0 if cpus_per_job is None else cpus_per_job,
        gpus_per_job=0.0 if gpus_per_job is None else gpus_per_job,
        max_retries=2 if max_retries is None else max_retries,
        workers=workers,
    )


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor local|ray`` and the Ray options (run options: they do not change any result)."""
    g = p.add_argument_group("where the jobs run (run options; results do not depend on them)")
    g.add_argument(
        "--executor", choices=EXECUTORS, default="local", help="local (default, in this process) or ray"
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="auto (the cluster this machine joined with `ray start`) or ray://host:10001; default: a local Ray",
    )
    g.add_argument(
        "--gpus-per-job", type=float, default=None, metavar="N", help="GPUs per Ray worker (default 0)"
    )
    g.add_argument(
        "--cpus-per-job", type=float, default=None, metavar="N", help="CPUs per Ray worker (default 1)"
    )
    g.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="N",
        help="retries of a job whose Ray worker dies (default 2)",
    )
    g.add_argument("--workers", type=int, default=None, metavar="N", help="Ray workers (default: what fits)")


def executor_from_args(args: argparse.Namespace) -> LocalExecutor | RayExecutor:
    return make_executor(
        args.executor,
        address=args.ray_address,
        cpus_per_job=args.cpus_per_job,
        gpus_per_job=args.gpus_per_job,
        max_retries=args.max_retries,
        workers=args.workers,
    )
