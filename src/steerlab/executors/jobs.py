"""A sweep is a list of independent jobs; a job is a picklable callable that runs in any process.

Each job writes its own resumable run directory (``steerlab.stages``), so an executor only has to call it
somewhere with a model holder and collect what it returns: a job that raises becomes a failed ``JobResult``
naming its parameters, never an exception that stops the other jobs.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, UserError
from ..stages import ModelHolder, Runner

Report = Callable[[str], None]


@dataclass
class JobContext:
    """What a job sees where it runs: the worker's models (loaded once per worker), whether to show its own
    progress bars, and ``report(text)`` to say which stage it is in."""

    models: ModelHolder
    progress: bool = False
    report: Report = lambda text: None  # noqa: E731


@dataclass
class Job:
    """One independent unit of a sweep: ``task(ctx)`` computes it; ``params`` name it in reports and failures;
    ``model`` (its model spec) lets an executor give jobs of one model to the worker that has it loaded."""

    name: str
    params: dict
    task: Callable[[JobContext], Any]
    model: str | None = None


@dataclass
class JobResult:
    """What became of a job: its return value, or the error (with its parameters and traceback)."""

    name: str
    params: dict
    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    worker: str = ""
    attempts: int = 1

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name} ({params}): {self.error}"


class SweepError(RuntimeError):
    """Some jobs of a sweep failed (the others finished and are kept; rerunning resumes them)."""

    def __init__(self, failures: Sequence[JobResult], what: str = "sweep") -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  - {f.describe()}" for f in self.failures)
        super().__init__(
            f"{len(self.failures)} job(s) of the {what} failed; the others finished and are kept, and running the "
            f"same command again resumes (finished stages are not recomputed):\n{lines}"
        )


def worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


def run_job(job: Job, ctx: JobContext) -> JobResult:
    """Run ``job`` here; any exception becomes a failed result that names the job's parameters."""
    t0 = time.perf_counter()
    try:
        value = job.task(ctx)
    except Exception as err:  # noqa: BLE001 - a job's failure is data for the sweep, not a crash
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return JobResult(
            job.name,
            job.params,
            ok=False,
            error=f"{type(err).__name__}: {msg}" if msg else type(err).__name__,
            traceback=traceback.format_exc(),
            seconds=time.perf_counter() - t0,
            worker=worker_name(),
        )
    return JobResult(
        job.name, job.params, ok=True, value=value, seconds=time.perf_counter() - t0, worker=worker_name()
    )


@dataclass
class RunnerJob:
    """Reach stage ``until`` of a stage runner built by ``make_runner(config, root, progress=, models=)``.

    Returns ``{"ran": [stages computed], "results": {stage: result}}`` for ``until`` and the stages in ``also``,
    plus ``"model"`` (name, fingerprint, device) when ``model_info`` is set. The run directory's lock is held for
    the whole job; stages already done with the same key are skipped.
    """

    make_runner: Callable[..., Runner]
    config: Config
    root: str
    until: str
    also: tuple[str, ...] = ()
    model_info: bool = False
    kwargs: dict = field(default_factory=dict)

    def runner(self, ctx: JobContext) -> Runner:
        return self.make_runner(
            self.config, Path(self.root), progress=ctx.progress, models=ctx.models, **self.kwargs
        )

    def prepare(self, r: Runner, ctx: JobContext) -> None:
        """Called with the run directory's lock held, before any stage runs (nothing by default)."""

    def __call__(self, ctx: JobContext) -> dict:
        r = self.runner(ctx)
        with r.locked():
            self.prepare(r, ctx)
            for name in [*r.upstream(self.until), self.until]:
                if not r.is_done(name):
                    ctx.report(name)
                    r.run(name)
            out: dict = {
                "ran": list(r.ran),
                "results": {s: r.result(s) for s in (*self.also, self.until)},
            }
        if self.model_info:
            lm = r.model()
            out["model"] = {"name": lm.name, "fingerprint": lm.fingerprint, "device": str(lm.device)}
        return out


def check_ok(results: Sequence[JobResult], what: str = "sweep") -> None:
    """Raise ``SweepError`` naming every failed job (after all of them ran)."""
    failed = [r for r in results if not r.ok]
    if failed:
        raise SweepError(failed, what)


def check_visible(path: str | Path) -> None:
    """A worker on another machine must see the run directories at the same path (a shared filesystem)."""
    if not Path(path).exists():
        raise UserError(
            f"{path} is not visible on worker {worker_name()}: every node of the cluster must see the output "
            "directory at the same path (a shared filesystem such as NFS)"
        )
