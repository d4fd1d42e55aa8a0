"""The default executor: every job in this process, one after the other, sharing one model holder."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from ..stages import ModelHolder
from .jobs import Job, JobContext, JobResult, run_job

OnResult = Callable[[JobResult], None]


class LocalExecutor:
    """Runs jobs serially in-process (the model stays loaded from one job to the next).

    ``in_process`` tells a sweep that jobs run here, one at a time, so they may share run directories.
    """

    in_process = True
    name = "local"

    def __init__(self, models: ModelHolder | None = None) -> None:
        self.models = models or ModelHolder()

    def close(self) -> None:
        """Nothing to stop (same interface as ``RayExecutor``)."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self, jobs: Sequence[Job], *, progress: bool = True, on_result: OnResult | None = None
    ) -> list[JobResult]:
        """Every job, in order; a failing job is recorded and the next one runs."""
        out = []
        bar = tqdm(total=len(jobs), desc="jobs", unit="job", disable=not progress or len(jobs) < 2)
        for job in jobs:

            def report(stage: str, job: Job = job) -> None:
                bar.set_postfix_str(f"{job.name}: {stage}", refresh=True)

            res = run_job(job, JobContext(self.models, progress=progress, report=report))
            res.worker = "local"
            out.append(res)
            if on_result is not None:
                on_result(res)
            bar.update(1)
        bar.close()
        return out
